"""Public names of a package imported on first use (PEP 562), so importing the package stays cheap.

    # papers/theory/neural_ode/__init__.py
    __getattr__, __all__ = lazy_exports(__name__, {"odeint": "solver", "ODENet": "model"})

``from papers.theory.neural_ode import ODENet`` then imports ``.model`` (and torch) only at that line;
``papers list`` reads the package's ``EXPERIMENT`` without importing either.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """A module ``__getattr__`` that imports ``package.<exports[name]>`` for ``name``, and ``__all__``."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__, sorted(exports)
