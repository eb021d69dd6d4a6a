"""A stand-in for benchmark.train.train_run, for the sweep tests.

It keeps the trainer's contract (writes result.json itself, status "running" then "complete",
reports progress, returns the record) and takes its instructions from files in the run
directory, so that it behaves the same in this process, a spawned worker or a Ray task:
  calls.txt        one line per call: "resume" when a checkpoint was there, else "fresh"
  checkpoint       written by every call (a later call then resumes)
  fail_raise       N: raise on the first N calls
  fail_status      N: return a "failed" record (non-finite loss) on the first N calls
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig
from benchmark.results import load_result, write_result

FAKE_STEPS = 60


def calls_of(run_dir: Path) -> list[str]:
    path = Path(run_dir) / "calls.txt"
    return path.read_text().split() if path.exists() else []


def should_fail(run_dir: Path, marker: str) -> bool:
    path = run_dir / marker
    return path.exists() and len(calls_of(run_dir)) <= int(path.read_text())


def fake_record(config: RunConfig, run_id: str | None, sweep: str | None, status: str,
                steps: int) -> dict[str, Any]:
    return {
        "run_id": run_id, "sweep": sweep, "config": config.to_dict(), "status": status,
        "progress": {"steps": steps, "steps_planned": config.steps or FAKE_STEPS},
        "metrics": {"test_nll": 80.0 + 1.0 / config.k, "active_units": [config.k % 30 + 1, 7]},
    }


def fake_train_run(config: RunConfig, run_dir: Path, data_dir: Path, *, run_id: str | None = None,
                   sweep: str | None = None, show_progress: bool = True,
                   on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resumed = (run_dir / "checkpoint").exists()
    with open(run_dir / "calls.txt", "a") as fh:
        fh.write("resume\n" if resumed else "fresh\n")
    (run_dir / "checkpoint").write_text("state")
    planned = config.steps or FAKE_STEPS
    write_result(run_dir, fake_record(config, run_id, sweep, "running", 0))
    if should_fail(run_dir, "fail_raise"):
        raise RuntimeError("simulated crash")
    if on_progress is not None:
        on_progress(planned // 2, planned)
        on_progress(planned, planned)
    if should_fail(run_dir, "fail_status"):
        record = fake_record(config, run_id, sweep, "failed", planned // 2)
        record["failure"] = {"step": planned // 2, "epoch": 0, "reason": "non-finite loss"}
    else:
        record = fake_record(config, run_id, sweep, "complete", planned)
    write_result(run_dir, record)
    return record


def write_complete_record(run_dir: Path, config: RunConfig, run_id: str, sweep: str) -> None:
    write_result(run_dir, fake_record(config, run_id, sweep, "complete", FAKE_STEPS))


def status_of(run_dir: Path) -> str | None:
    record = load_result(run_dir)
    return record.get("status") if record else None
