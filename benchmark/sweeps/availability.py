"""Which data conditions a sweep can train: each is checked once, and the runs of a condition
whose files are missing or unverified are recorded as unavailable, with the reason."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from benchmark.errors import UserError
from benchmark.sweeps.grids import PlannedRun, SweepOptions, expand_grid
from benchmark.sweeps.run_state import is_complete, record_unavailable

DataCheck = Callable[[str, Path], str | None]


def check_data_available(name: str, data_dir: Path) -> str | None:
    """None when the data condition loads; otherwise why not (and how to fetch it)."""
    from benchmark.data import load_dataset

    try:
        load_dataset(name, data_dir)
    except UserError as err:  # DataUnavailable, or a corrupt file: either way, not usable
        return str(err)
    return None


def split_unavailable(runs: list[PlannedRun], data_dir: Path, check_data: DataCheck,
                      say: Callable[[str], None]) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """Check each data condition once; record its runs as unavailable when it cannot load.
    Returns (the usable runs, the unavailable ones), each in plan order."""
    usable = []
    for name in dict.fromkeys(run.config.data for run in runs):
        of_data = [run for run in runs if run.config.data == name]
        reason = check_data(name, data_dir)
        if reason is None:
            usable.extend(of_data)
            continue
        say(f"skipping {name}: {len(of_data)} run(s) recorded as unavailable: {reason}")
        record_unavailable(of_data, reason)
    return [run for run in runs if run in usable], [run for run in runs if run not in usable]


def record_unselected_unavailable(grid: str, options: SweepOptions, plan: list[PlannedRun],
                                  results: Path, data_dir: Path,
                                  check_data: DataCheck = check_data_available) -> None:
    """With --data, the grid's other data conditions are not trained; those whose files are
    missing are still recorded as unavailable, so a report of the grid says why they are absent
    rather than just "not run". Conditions whose data is present are left alone."""
    if options.data is None:
        return
    planned = {run.run_dir for run in plan}
    others = [run for run in expand_grid(grid, replace(options, data=None), results)
              if run.run_dir not in planned and not is_complete(run)]
    for name in dict.fromkeys(run.config.data for run in others):
        reason = check_data(name, data_dir)
        if reason is not None:
            of_data = [run for run in others if run.config.data == name]
            print(f"not selected, and unavailable: {name} ({len(of_data)} run(s) recorded as "
                  f"unavailable): {reason}", file=sys.stderr, flush=True)
            try:
                record_unavailable(of_data, reason)
            except OSError as err:  # only a note for the report: never a reason to stop
                print(f"warning: could not record them ({err.strerror}: {err.filename}); the "
                      "report will show them as not run", file=sys.stderr, flush=True)
