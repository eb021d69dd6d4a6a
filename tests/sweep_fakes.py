"""Stand-ins for benchmark.training.loop.train_run and train_group, for the sweep tests.

They keep the trainers' contract (write result.json themselves, status "running" then "complete",
report progress, return the records) and take their instructions from files in each run
directory, so that they behave the same in this process, a spawned worker or a Ray task:
  calls.txt        one line per call: "resume" when a checkpoint was there, else "fresh"
  tasks.txt        one line per call: "run <run id>" (fake_train_run) or "group <run ids>"
                   (fake_train_group; every member's run id, in the order given)
  checkpoint       written by every call (a later call then resumes)
  fail_raise       N: raise on the first N calls (in a group: the whole group call raises)
  fail_status      N: return a "failed" record (non-finite loss) on the first N calls (in a
                   group: for that member only)
fake_timer stands in for the cost model's timings (benchmark.sweeps.calibration.run_real_timer):
the fake trainers take no time worth timing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig
from benchmark.records.results import load_result, write_result

FAKE_STEPS = 60
FAKE_STEP_S = 0.01  # per member
FAKE_ROW_S = 1e-6


def calls_of(run_dir: Path) -> list[str]:
    path = Path(run_dir) / "calls.txt"
    return path.read_text().split() if path.exists() else []


def tasks_of(run_dir: Path) -> list[str]:
    path = Path(run_dir) / "tasks.txt"
    return path.read_text().splitlines() if path.exists() else []


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


def begin(config: RunConfig, run_dir: Path, run_id: str | None, sweep: str | None,
          task: str) -> None:
    """What a trainer does before its first step: note the call, checkpoint, record "running"."""
    run_dir.mkdir(parents=True, exist_ok=True)
    resumed = (run_dir / "checkpoint").exists()
    with open(run_dir / "calls.txt", "a") as fh:
        fh.write("resume\n" if resumed else "fresh\n")
    with open(run_dir / "tasks.txt", "a") as fh:
        fh.write(task + "\n")
    (run_dir / "checkpoint").write_text("state")
    write_result(run_dir, fake_record(config, run_id, sweep, "running", 0))


def train_and_record(config: RunConfig, run_dir: Path, run_id: str | None, sweep: str | None,
                     on_progress: Callable[[int, int], None] | None) -> dict[str, Any]:
    """Report progress, then write and return the final record (failed when told to)."""
    planned = config.steps or FAKE_STEPS
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


def fake_train_run(config: RunConfig, run_dir: Path, data_dir: Path, *, run_id: str | None = None,
                   sweep: str | None = None, show_progress: bool = True,
                   on_progress: Callable[[int, int], None] | None = None,
                   options: Any = None) -> dict[str, Any]:
    run_dir = Path(run_dir)
    begin(config, run_dir, run_id, sweep, f"run {run_id}")
    if should_fail(run_dir, "fail_raise"):
        raise RuntimeError("simulated crash")
    return train_and_record(config, run_dir, run_id, sweep, on_progress)


def fake_train_group(configs: Sequence[RunConfig], run_dirs: Sequence[Path], data_dir: Path, *,
                     run_ids: Sequence[str | None] | None = None, sweep: str | None = None,
                     show_progress: bool = True,
                     on_progress: Callable[[int, int, int], None] | None = None,
                     options: Any = None) -> list[dict[str, Any]]:
    dirs = [Path(d) for d in run_dirs]
    ids = list(run_ids) if run_ids is not None else [None] * len(configs)
    task = "group " + " ".join(str(i) for i in ids)
    for config, run_dir, run_id in zip(configs, dirs, ids, strict=True):
        begin(config, run_dir, run_id, sweep, task)
    if any(should_fail(run_dir, "fail_raise") for run_dir in dirs):
        raise RuntimeError("simulated crash")
    return [train_and_record(config, run_dir, run_id, sweep, member_progress(on_progress, i))
            for i, (config, run_dir, run_id) in enumerate(zip(configs, dirs, ids, strict=True))]


def member_progress(on_progress: Callable[[int, int, int], None] | None, member: int
                    ) -> Callable[[int, int], None] | None:
    if on_progress is None:
        return None
    return lambda done, planned: on_progress(member, done, planned)


def write_complete_record(run_dir: Path, config: RunConfig, run_id: str, sweep: str) -> None:
    write_result(run_dir, fake_record(config, run_id, sweep, "complete", FAKE_STEPS))


def status_of(run_dir: Path) -> str | None:
    record = load_result(run_dir)
    return record.get("status") if record else None


# --- slow stand-ins, for tests that signal a real sweep process (tests/sweep_process.py) ---------
# They train as the real trainers do in the one respect those tests look at: each holds its run
# directory's training lock while it "trains". While the file <results>/hold exists they wait,
# so that a test can signal the sweep while they are in flight. Each run directory gets:
#   worker.pid    the pid of the process training it
#   training.log  "start PID", "end PID", and "OVERLAP PID" when a process that started
#                 training the run earlier and never ended is still alive at a start
HOLD_FILE = "hold"
HOLD_LIMIT_S = 120.0
SLOW_STEP_S = 0.3


def process_is_running(pid: int) -> bool:
    """Alive and not a zombie (an orphan whose new parent does not reap it is one)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def _unfinished_starters(log: Path) -> set[int]:
    started: set[int] = set()
    if log.exists():
        for line in log.read_text().splitlines():
            word, pid = line.split()
            if word == "start":
                started.add(int(pid))
            elif word == "end":
                started.discard(int(pid))
    return started


def _slow_begin(run_dir: Path) -> Any:
    from benchmark.records import TrainingLock

    lock = TrainingLock(run_dir)
    if not lock.acquire():
        raise RuntimeError(f"{run_dir} is being trained by process {lock.holder_pid()}")
    log = run_dir / "training.log"
    overlapping = [pid for pid in _unfinished_starters(log) if process_is_running(pid)]
    with open(log, "a") as fh:
        fh.writelines(f"OVERLAP {pid}\n" for pid in overlapping)
        fh.write(f"start {os.getpid()}\n")
    return lock


def _mark_in_flight(run_dir: Path) -> None:
    """worker.pid comes last, once the run's "running" record is on disk: a test that signals
    the sweep as soon as it sees the file then finds every such run resumable."""
    (run_dir / "worker.pid").write_text(str(os.getpid()))


def _slow_wait(run_dirs: Sequence[Path]) -> None:
    hold = run_dirs[0].parent.parent / HOLD_FILE
    deadline = time.monotonic() + HOLD_LIMIT_S
    time.sleep(SLOW_STEP_S)
    while hold.exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def _slow_end(run_dir: Path, lock: Any) -> None:
    with open(run_dir / "training.log", "a") as fh:
        fh.write(f"end {os.getpid()}\n")
    lock.release()


def slow_train_run(config: RunConfig, run_dir: Path, data_dir: Path, *,
                   run_id: str | None = None, sweep: str | None = None,
                   on_progress: Callable[[int, int], None] | None = None, **kwargs: Any
                   ) -> dict[str, Any]:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = _slow_begin(run_dir)
    begin(config, run_dir, run_id, sweep, f"run {run_id}")
    _mark_in_flight(run_dir)
    _slow_wait([run_dir])
    record = train_and_record(config, run_dir, run_id, sweep, on_progress)
    _slow_end(run_dir, lock)
    return record


def slow_train_group(configs: Sequence[RunConfig], run_dirs: Sequence[Path], data_dir: Path, *,
                     run_ids: Sequence[str | None] | None = None, sweep: str | None = None,
                     on_progress: Callable[[int, int, int], None] | None = None, **kwargs: Any
                     ) -> list[dict[str, Any]]:
    dirs = [Path(d) for d in run_dirs]
    ids = list(run_ids) if run_ids is not None else [None] * len(configs)
    locks = []
    for config, run_dir, run_id in zip(configs, dirs, ids, strict=True):
        run_dir.mkdir(parents=True, exist_ok=True)
        locks.append(_slow_begin(run_dir))
        begin(config, run_dir, run_id, sweep, "group " + " ".join(str(i) for i in ids))
        _mark_in_flight(run_dir)
    _slow_wait(dirs)
    records = [train_and_record(config, run_dir, run_id, sweep, member_progress(on_progress, i))
               for i, (config, run_dir, run_id) in enumerate(zip(configs, dirs, ids,
                                                                 strict=True))]
    for run_dir, lock in zip(dirs, locks, strict=True):
        _slow_end(run_dir, lock)
    return records
def fake_timer(steps: list[Any], evals: list[Any], options: Any, step_seconds: float,
               eval_seconds: float) -> dict[str, Any]:
    """Timings of the fake trainers: FAKE_STEP_S a step per member, FAKE_ROW_S an evaluated row."""
    step_s: dict[str, dict[str, float]] = {}
    for request in steps:
        name = f"L{request.layers}-k{request.k}-{request.fidelity}"
        step_s.setdefault(name, {})[str(request.members)] = FAKE_STEP_S * request.members
    return {"step_s": step_s, "one_off_s": {}, "device": "cpu",
            "eval_row_s": {f"L{r.layers}-k{r.eval_k}": FAKE_ROW_S for r in evals}}
