"""Public names of a stage package, imported on first use.

Each stage's __init__ lists which of its modules defines each name it exports, and hands the
list to lazy_exports. Importing a light module of a stage (the sweep planner, the fetcher, the
execution options) therefore never loads torch or pandas through its package, and the list
doubles as the stage's table of contents.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level __getattr__ for `package` that resolves exports[name] on first use."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
