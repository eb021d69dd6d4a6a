"""A plugin's objectives live in a process-wide registry: tests that load one restore the registry
afterwards, so that the built-in grids, flags and labels other tests check stay the suite's."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import benchmark.definitions as definitions
import benchmark.plugins as plugins

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "renyi_objective.py"


@contextmanager
def registry_restored() -> Iterator[None]:
    saved = (dict(definitions._OBJECTIVES), dict(definitions._ESTIMATORS),
             dict(plugins._LOADED))
    try:
        yield
    finally:
        for live, kept in zip((definitions._OBJECTIVES, definitions._ESTIMATORS, plugins._LOADED),
                              saved, strict=True):
            live.clear()
            live.update(kept)
