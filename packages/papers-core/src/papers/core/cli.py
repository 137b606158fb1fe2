"""The ``papers`` command: list, show, run, resume and report experiments of every installed domain.

Problems with the input (unknown id or preset, a bad ``--set``, an unwritable folder, a non-finite
loss) are reported as one line on stderr with a non-zero exit; ``--traceback`` shows the details.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from .errors import PapersError


def _console():
    from rich.console import Console

    return Console(highlight=False)


def cmd_list(args) -> None:
    """One line per experiment: id, domain, paper; ``papers show ID`` has the claim and the config."""
    import shutil

    from .registry import experiment_domain, experiment_ids, get_experiment, installed_domains

    domains = installed_domains()
    print(f"installed domains: {', '.join(domains) if domains else 'none'}")
    ids = [i for i in experiment_ids() if not args.domain or experiment_domain(i) == args.domain]
    width = shutil.get_terminal_size().columns
    id_width = max(map(len, ids), default=2)
    print(f"{'id':<{id_width}}  {'domain':<8}  paper")
    for experiment_id in ids:
        try:
            exp = get_experiment(experiment_id)
            about = f"{exp.papers[0].title} ({exp.papers[0].year})"
        except Exception as exc:  # a broken package must not hide the others
            about = f"cannot load: {exc}"
        line = f"{experiment_id:<{id_width}}  {experiment_domain(experiment_id):<8}  {about}"
        print(line if len(line) <= width else line[: max(width - 1, id_width)] + "…")


def cmd_show(args) -> None:
    from .io import read_json
    from .registry import get_experiment

    exp = get_experiment(args.id)
    console = _console()
    console.print(f"[bold]{exp.id}[/bold]  (papers-{exp.domain})")
    console.print(f"claim: {exp.claim}")
    if exp.summary:
        console.print(exp.summary)
    for paper in exp.papers:
        console.print(f"  - {paper.citation()}  catalogue: {', '.join(paper.catalog_ids) or '-'}")
    console.print("config (default value; presets override):")
    hints = typing.get_type_hints(exp.config)
    for f in dataclasses.fields(exp.config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = {p: v[f.name] for p, v in exp.presets.items() if f.name in v}
        extra = "  " + "  ".join(f"{p}={v!r}" for p, v in shown.items()) if shown else ""
        type_name = getattr(hints[f.name], "__name__", str(hints[f.name]))
        console.print(f"  {f.name}: {type_name} = {default!r}{extra}")
    ledger = Path(args.results) / f"{exp.id}.json"
    if ledger.is_file():
        record = read_json(ledger)
        console.print(
            f"recorded result ({record['date']}): {record['verdict']}, {record['wall_time_s']:.0f} s"
        )


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise PapersError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        overrides[key.strip()] = value.strip()
    return overrides


def _print_result(result, run_dir: Path) -> None:
    from rich.table import Table

    console = _console()
    metrics = Table("metric", "value", title=f"{result.experiment} ({result.preset}, seed {result.seed})")
    for key, value in result.metrics.items():
        if isinstance(value, (int, float, str, bool)):
            metrics.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(metrics)
    checks = Table("claim check", "measured", "vs", "reference", "verdict")
    for c in result.checks:
        verdict = "[green]holds[/green]" if c.passed else "[red]does not hold[/red]"
        checks.add_row(
            c.name, f"{c.measured:.4g}", c.comparison, f"{c.reference:.4g} {c.reference_label}", verdict
        )
    console.print(checks)
    console.print(
        f"verdict: [bold]{result.verdict}[/bold]   wall time {result.wall_time_s:.1f} s   run: {run_dir}"
    )


def cmd_run(args) -> None:
    from .registry import get_experiment
    from .report import record
    from .runner import run_experiment

    experiment = get_experiment(args.id)
    if args.record and args.preset != "default":
        raise PapersError("--record keeps default-preset runs only; drop --preset or --record")
    result, run_dir = run_experiment(
        experiment,
        preset=args.preset,
        seed=args.seed,
        device=args.device,
        overrides=_parse_overrides(args.set),
        out=args.out,
        progress=False if args.no_progress else None,
        threads=args.threads,
    )
    _print_result(result, run_dir)
    if args.record:
        path = record(run_dir, Path(args.results))
        _console().print(f"recorded {path}")


def cmd_resume(args) -> None:
    from .runner import resume_run

    result, run_dir = resume_run(args.run_dir, progress=False if args.no_progress else None)
    _print_result(result, run_dir)


def cmd_report(args) -> None:
    from .report import write_report

    out, count = write_report(Path(args.results), Path(args.out))
    _console().print(f"wrote {out} from {count} results")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--traceback",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors",
    )
    parser = argparse.ArgumentParser(
        prog="papers", description="Reproduce machine-learning papers.", parents=[common]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", parents=[common], help="list installed experiments")
    p.add_argument("--domain", help="only this domain (theory, vision, language, rl, chem)")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="paper, claim, config and presets of an experiment")
    p.add_argument("id")
    p.add_argument("--results", default="results", help="results ledger folder")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("run", parents=[common], help="run an experiment")
    p.add_argument("id")
    p.add_argument("--preset", default="default", help="smoke, default or full")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--out", default="runs", help="folder for run directories")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--record", action="store_true", help="write the result into the results ledger")
    p.add_argument("--results", default="results", help="results ledger folder (with --record)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", parents=[common], help="continue an interrupted run from its folder")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("report", parents=[common], help="render docs/RESULTS.md from the results ledger")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="docs/RESULTS.md")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_traceback = getattr(args, "traceback", False)
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("papers: interrupted", file=sys.stderr)
        return 130
    except PapersError as exc:
        if show_traceback:
            raise
        print(f"papers: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a failure inside an experiment: one line unless asked for more
        if show_traceback:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(
            f"papers: error: {type(exc).__name__}: {message} (rerun with --traceback for details)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
