"""The error the CLI reports as one line: bad ids, presets, config values, output folders."""


class PapersError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""
