"""Real sweep processes signalled and raced: SIGKILL of the driver, SIGTERM, two sweeps started
at once on one results folder, two processes racing for the same run locks. The trainers are the
slow stand-ins of sweep_fakes (tests/sweep_process.py); everything else is the real sweep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_fakes import HOLD_FILE, calls_of, process_is_running, status_of, tasks_of

from benchmark.sweeps.grids import SweepOptions, expand_grid
from benchmark.sweeps.locks import LOCK_FILE

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve().parent / "sweep_process.py"
ARGS = ("table1", "--schedule", "smoke", "--steps", "4", "--data", "mnist-dynamic",
        "--workers", "2")
WAIT_S = 300.0  # a limit for a stuck process only: a loaded machine needs far less
pytestmark = pytest.mark.slow


def plan(results: Path):
    return expand_grid("table1", SweepOptions(schedule="smoke", steps=4, data=("mnist-dynamic",)),
                       results)


def start_sweep(results: Path, data_dir: Path, log: Path) -> subprocess.Popen:
    """A sweep process; its output goes to `log` (a pipe nobody reads would fill up with its
    progress bars and stop it)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, str(SCRIPT), *ARGS, "--results", str(results),
                                 "--data-dir", str(data_dir)], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT)


def worker_pids(results: Path, at_least: int) -> set[int]:
    """The pids training runs once `at_least` runs are in flight."""
    deadline = time.monotonic() + WAIT_S
    while True:
        written = [text for p in results.glob("table1/*/worker.pid") if (text := p.read_text())]
        if len(written) >= at_least:  # a file caught half-written counts once it holds its pid
            return {int(text) for text in written}
        assert time.monotonic() < deadline, "the sweep never started training"
        time.sleep(0.05)


def children_of(pid: int) -> set[int]:
    """The live child processes of pid (its workers, the progress queue's manager, ...)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return {child for child in children if process_is_running(child)}


def wait_until_gone(pids: set[int], seconds: float) -> set[int]:
    """The pids still running after `seconds`."""
    deadline = time.monotonic() + seconds
    while (alive := {pid for pid in pids if process_is_running(pid)}) and (
            time.monotonic() < deadline):
        time.sleep(0.1)
    return alive


def overlaps(results: Path) -> list[str]:
    return [f"{log.parent.name}: {line}" for log in results.glob("table1/*/training.log")
            for line in log.read_text().splitlines() if line.startswith("OVERLAP")]


@pytest.fixture
def leftovers():
    """Pids to SIGKILL at the end of a test whatever happened (orphans of a broken fix)."""
    pids: set[int] = set()
    yield pids
    for pid in pids:
        if process_is_running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_sigkilled_sweep_leaves_nothing_training_and_the_next_trains_each_run_once(
        tmp_path, leftovers):
    results = tmp_path / "results"
    results.mkdir()
    (results / HOLD_FILE).touch()
    first = start_sweep(results, tmp_path, tmp_path / "first.log")
    pids = worker_pids(results, at_least=4)  # two groups of two in flight on two workers
    children = children_of(first.pid)
    leftovers.update(pids | children)
    assert len(pids) == 2 and pids <= children
    first.kill()  # SIGKILL: the driver gets no chance to stop its pool
    first.wait()
    assert wait_until_gone(pids, seconds=20) == set(), "workers went on training as orphans"
    assert wait_until_gone(children, seconds=20) == set(), "the driver's processes outlived it"
    in_flight = [run for run in plan(results) if (run.run_dir / "worker.pid").exists()]

    (results / HOLD_FILE).unlink()
    second = subprocess.run([sys.executable, str(SCRIPT), *ARGS, "--results", str(results),
                             "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=WAIT_S)
    assert second.returncode == 0, second.stderr
    assert all(status_of(run.run_dir) == "complete" for run in plan(results))
    assert overlaps(results) == []
    for run in in_flight:  # started by the first sweep, resumed (not restarted) by the second
        assert calls_of(run.run_dir) == ["fresh", "resume"]
    assert not list(results.rglob(LOCK_FILE))


def test_sigterm_stops_the_sweep_releases_its_locks_and_keeps_runs_resumable(tmp_path,
                                                                             leftovers):
    results = tmp_path / "results"
    results.mkdir()
    (results / HOLD_FILE).touch()
    first = start_sweep(results, tmp_path, tmp_path / "first.log")
    pids = worker_pids(results, at_least=4)
    leftovers.update(pids)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=WAIT_S)
    stderr = (tmp_path / "first.log").read_text()
    assert first.returncode == 130, stderr
    assert "interrupted; partial work is kept and resumes on the next call" in stderr
    assert "Traceback" not in stderr
    assert wait_until_gone(pids, seconds=20) == set()
    assert not list(results.rglob(LOCK_FILE))
    in_flight = [run for run in plan(results) if (run.run_dir / "worker.pid").exists()]
    assert len(in_flight) == 4 and all(status_of(r.run_dir) == "running" for r in in_flight)

    (results / HOLD_FILE).unlink()
    second = subprocess.run([sys.executable, str(SCRIPT), *ARGS, "--results", str(results),
                             "--data-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=WAIT_S)
    assert second.returncode == 0, second.stderr
    for run in in_flight:
        assert calls_of(run.run_dir) == ["fresh", "resume"]
    assert all(status_of(run.run_dir) == "complete" for run in plan(results))


def test_two_sweeps_started_at_once_train_every_run_once(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    logs = [tmp_path / f"sweep{i}.log" for i in range(2)]
    sweeps = [start_sweep(results, tmp_path, log) for log in logs]
    outcomes = [(proc.wait(timeout=WAIT_S), log.read_text())
                for proc, log in zip(sweeps, logs, strict=True)]
    runs = plan(results)
    assert all(status_of(run.run_dir) == "complete" for run in runs)
    assert all(len(tasks_of(run.run_dir)) == 1 for run in runs)  # each trained by one sweep
    assert overlaps(results) == []
    assert not list(results.rglob(LOCK_FILE))
    # The sweep that ends last finds every run complete, those of the other sweep included;
    # one that ends first may see the other's runs still in flight, and says so.
    assert 0 in [code for code, _ in outcomes], outcomes
    for code, stderr in outcomes:
        assert code == 0 or "locked by another sweep" in stderr.strip().splitlines()[-1], stderr


RACE_FOR_LOCKS = """
import sys, time
from pathlib import Path
from benchmark.sweeps.locks import RunDirLock
start_at, dirs = float(sys.argv[1]), [Path(d) for d in sys.argv[2:]]
locks = [RunDirLock(d) for d in dirs]
time.sleep(max(0.0, start_at - time.time()))
print(" ".join(str(i) for i, lock in enumerate(locks) if lock.acquire()), flush=True)
sys.stdin.readline()  # hold them until the test has looked
"""


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale-locks"])
def test_two_processes_racing_for_the_same_locks_get_disjoint_runs(tmp_path, stale):
    from test_sweep import dead_pid, write_lock

    dirs = [tmp_path / f"run{i}" for i in range(40)]
    for run_dir in dirs:
        run_dir.mkdir()
        if stale:  # both race through the take-over of a dead sweep's lock
            write_lock(run_dir, dead_pid())
    start_at = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", RACE_FOR_LOCKS, str(start_at),
                               *map(str, dirs)], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    won = [set(map(int, proc.stdout.readline().split())) for proc in procs]
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=WAIT_S)
    assert won[0].isdisjoint(won[1])
    assert won[0] | won[1] == set(range(len(dirs)))
