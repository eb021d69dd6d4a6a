"""What a results folder says about the runs a sweep plans: complete or not, how far they got,
whether a recorded configuration disagrees with the plan; and recording a status on a run
without losing what its record already holds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from benchmark.config import config_differences
from benchmark.errors import UserError
from benchmark.records import load_result, write_result
from benchmark.sweeps.grids import PlannedRun
from benchmark.sweeps.locks import RunDirLock


def check_recorded_configs(plan: Iterable[PlannedRun]) -> None:
    """Stop before training when a run directory holds a record of a different configuration."""
    mismatches = []
    for run in plan:
        record = load_result(run.run_dir)
        if record is None or not isinstance(record.get("config"), dict):
            continue
        diffs = config_differences(record["config"], run.config)
        if diffs:
            mismatches.append(f"{run.run_dir} ({'; '.join(diffs)})")
    if mismatches:
        more = f" and {len(mismatches) - 1} more" if len(mismatches) > 1 else ""
        raise UserError(f"a run directory holds a record of a different configuration: "
                        f"{mismatches[0]}{more}; move it away or choose another --results")


def is_complete(run: PlannedRun) -> bool:
    record = load_result(run.run_dir)
    return record is not None and record.get("status") == "complete"


def steps_done_before(run: PlannedRun) -> int:
    record = load_result(run.run_dir) or {}
    steps = (record.get("progress") or {}).get("steps")
    return int(steps) if isinstance(steps, int | float) else 0


def recorded_threads(run: PlannedRun) -> int | None:
    """The torch thread count a partial run was started with (its record's execution block),
    which the trainer keeps for the run's life; None for a run not started."""
    record = load_result(run.run_dir) or {}
    execution = (record.get("environment") or {}).get("execution") or {}
    threads = execution.get("threads") if isinstance(execution, dict) else None
    return threads if isinstance(threads, int) else None


def merged_record(run: PlannedRun, status: str, reason: str) -> dict[str, Any]:
    """The run's existing record (progress kept) with a new status and reason."""
    record = dict(load_result(run.run_dir) or {})
    record.update(run_id=run.run_id, sweep=run.sweep, status=status, reason=reason)
    record.setdefault("config", run.config.to_dict())
    return record


def record_unavailable(runs: list[PlannedRun], reason: str) -> None:
    for run in runs:
        record = load_result(run.run_dir) or {}
        if record.get("status") == "unavailable" and record.get("reason") == reason:
            continue  # already says so: a results folder that cannot be written stays usable
        with RunDirLock(run.run_dir) as lock:
            if lock.acquire():  # a live sweep training it elsewhere keeps its record
                write_result(run.run_dir, merged_record(run, "unavailable", reason))
