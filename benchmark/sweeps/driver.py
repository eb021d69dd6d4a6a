"""`python -m benchmark sweep {table1,table2,binarization,estimators}`: train and evaluate a
grid of runs.

A sweep is resumable and idempotent. Each run lives in <results>/<sweep>/<run-id> (see
benchmark.sweeps.grids for the grids and ids). On every call:
  - a complete run is skipped, unless its recorded configuration differs from the one asked for,
    which stops the sweep with a message before anything trains;
  - a partial run is handed to the trainer again, which resumes it from its newest checkpoint;
  - a run that fails (status "failed", or an exception) is retried once, alone, then reported,
    and the sweep goes on with the rest;
  - a run whose directory another live sweep has locked, or that a process is training, is
    skipped with a message (and counted complete at the end if that other sweep completed it);
  - a data condition whose files are missing or unverified is checked once, reported once, and
    each of its runs is recorded with status "unavailable" and the reason.
The exit status is 0 when every run ends complete or unavailable, 1 otherwise (one summary line).

Grouping (the default): the runs that are ready to train (not complete, data available, base run
complete) are partitioned into groups of compatible runs (benchmark.sweeps.grids.group_runs: same
layers, k, fidelity and device, sized so that every worker gets a group), and each group is one task
that trains its runs as one batched ensemble (benchmark.training.loop.train_group). Everything above
still holds per run: each member's lock is taken before its group is handed out, each member gets
its own record and finished line, and a member that fails (or every member of a group that crashed)
is retried alone. Runs that become ready later (table2's continuations, once their base is complete)
form later groups. `--no-group`: every run is its own task (train_run).

Executors (benchmark.sweeps.executors): `local` is a spawn process pool on this machine; `ray`
makes each task a Ray task (`--address` joins a cluster, `--gpus-per-run`, per task and so per group
when grouping, may be fractional to pack tasks onto one GPU). The driver holds the run locks and
writes the final result records; with Ray, <results> and the data folder must nevertheless be on
storage every node sees under the same path, because the tasks write checkpoints and read the
data where they run.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.records import load_result, write_result
from benchmark.sweeps.availability import DataCheck, check_data_available, split_unavailable
from benchmark.sweeps.calibration import Timer, run_real_timer
from benchmark.sweeps.executors import Executor, describe_executor
from benchmark.sweeps.grids import PlannedRun, group_runs
from benchmark.sweeps.locks import RunDirLock
from benchmark.sweeps.progress import SweepDisplay, finished_line
from benchmark.sweeps.projection import projected_eta
from benchmark.sweeps.run_state import (
    check_recorded_configs,
    is_complete,
    merged_record,
    recorded_threads,
    steps_done_before,
)
from benchmark.sweeps.tasks import (
    GroupMember,
    GroupRunner,
    GroupTask,
    Runner,
    RunTask,
    TaskOutcome,
    run_real_group_trainer,
    run_real_trainer,
)
from benchmark.training import ExecutionOptions

MAX_ATTEMPTS = 2  # a failed run is retried once (alone, when it failed in a group)
WAIT_S = 0.5  # how often the driver wakes up to refresh progress bars
ERROR_LOG = "sweep_error.log"

ExecutorFactory = Callable[[int], Executor]


@dataclass
class SweepReport:
    grid: str
    complete: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    locked: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)

    @property
    def none_could_start(self) -> bool:
        """Runs were selected, and not one is complete or could even start (every data
        condition missing, say): a target that produced nothing must not exit 0."""
        return not self.complete and not (self.failed or self.locked or self.blocked) and bool(
            self.unavailable)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.locked or self.blocked or self.none_could_start)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def summary_line(self) -> str:
        parts = [f"{len(self.complete)} complete"]
        if self.unavailable:
            parts.append(f"{len(self.unavailable)} unavailable")
        for name, runs in (("failed", self.failed), ("locked by another sweep", self.locked),
                           ("not started (base run missing)", self.blocked)):
            if runs:
                parts.append(f"{len(runs)} {name} ({', '.join(sorted(runs))})")
        line = f"sweep {self.grid}: " + ", ".join(parts)
        if self.none_could_start:
            line += ("; none of the selected runs could start (their data is missing: fetch it, "
                     "e.g. `python -m benchmark fetch all`, and run again)")
        return line


@dataclass
class Attempt:
    """One try at training one run; the run's lock is held from the first try to the last."""

    run: PlannedRun
    lock: RunDirLock
    number: int
    started: float

    @property
    def key(self) -> str:  # the run's key in progress reports and on the display
        return str(self.run.run_dir)


@dataclass(frozen=True)
class Runners:
    """What trains a task: `run` for one run (and every retry), `group` for a group of runs;
    `group` is None with --no-group, when every run is its own task."""

    run: Runner
    group: GroupRunner | None
    options: ExecutionOptions = ExecutionOptions()  # passed to every task


class SweepLoop:
    """Feeds tasks to an executor, dependencies first, and handles what comes back."""

    def __init__(self, runs: list[PlannedRun], executor: Executor, runners: Runners,
                 data_dir: Path, display: SweepDisplay, report: SweepReport,
                 state: dict[Path, str]) -> None:
        self.queue = deque(runs)  # not handed out yet, nor part of a formed group
        self.formed: deque[list[PlannedRun]] = deque()  # groups formed, not handed out yet
        self.retries: deque[Attempt] = deque()  # failed runs to try again alone (locks held)
        self.executor = executor
        self.runners = runners
        self.data_dir = data_dir
        self.display = display
        self.report = report
        self.state = state  # run_dir -> complete / failed / locked / unavailable / blocked
        self.in_flight: dict[str, list[Attempt]] = {}  # task key -> the runs it trains
        self.group_numbers = itertools.count(1)

    def run(self) -> None:
        try:
            while self.queue or self.formed or self.retries or self.in_flight:
                self.launch_ready()
                if not self.in_flight:
                    self.block_remaining("its base run did not complete")
                    break
                outcomes = self.executor.wait(WAIT_S)
                self.show_progress()
                for outcome in outcomes:
                    self.handle(outcome)
        finally:
            self.executor.close()
            for attempts in self.in_flight.values():
                for attempt in attempts:
                    attempt.lock.release()
            for attempt in self.retries:
                attempt.lock.release()

    def launch_ready(self) -> None:
        while len(self.in_flight) < self.executor.capacity:
            if self.retries:  # first, so that a retry's locks are not held longer than needed
                self.submit_run(self.retries.popleft())
                continue
            runs = self.next_task_runs()
            if runs is None:
                return
            attempts = self.take_locks(runs)
            if self.runners.group is None and attempts:
                self.submit_run(attempts[0])
            elif attempts:
                self.submit_group(attempts)

    def next_task_runs(self) -> list[PlannedRun] | None:
        """The runs of the next task: one ready run, or (grouping) the next group formed from
        every run ready now; None when nothing is ready."""
        if self.runners.group is None:
            return self.take_ready(limit=1) or None
        if not self.formed:
            ready = self.take_ready()
            if ready:
                self.formed.extend(self.form_groups(ready))
        return self.formed.popleft() if self.formed else None

    def form_groups(self, ready: list[PlannedRun]) -> list[list[PlannedRun]]:
        groups = group_runs(ready, self.executor.capacity, apart=recorded_threads)
        largest = max(len(group) for group in groups)
        self.display.line(f"{len(ready)} run(s) ready: {len(groups)} task(s) of up to {largest} "
                          f"compatible run(s) (same layers, samples per example, fidelity, "
                          f"device)", error=True)
        return groups

    def take_ready(self, limit: int | None = None) -> list[PlannedRun]:
        """Queued runs whose base run is complete, in plan order (at most `limit`); blocks the
        runs whose base can no longer complete."""
        ready: list[PlannedRun] = []
        for run in list(self.queue):
            if limit is not None and len(ready) >= limit:
                break
            base_state = self.state.get(run.depends_on) if run.depends_on else "complete"
            if base_state == "complete":
                self.queue.remove(run)
                ready.append(run)
            elif base_state is not None:  # failed, locked, unavailable, blocked: never complete
                self.queue.remove(run)
                self.block(run, f"base run {run.depends_on.name} is {base_state}")
        return ready

    def block(self, run: PlannedRun, reason: str) -> None:
        self.state[run.run_dir] = "blocked"
        self.report.blocked[run.label] = reason
        self.display.run_finished(str(run.run_dir), counts_as_done=False)
        self.display.line(f"{run.run_id}: not started: {reason}", error=True)

    def block_remaining(self, reason: str) -> None:
        while self.queue:
            self.block(self.queue.popleft(), reason)

    def take_locks(self, runs: list[PlannedRun]) -> list[Attempt]:
        """A first attempt for each run whose lock this sweep gets and that is still to train."""
        started = time.monotonic()
        attempts = []
        for run in runs:
            lock = RunDirLock(run.run_dir)
            if not lock.acquire():
                self.skip_locked(run, lock)
            elif is_complete(run):  # another sweep finished it since this one was planned
                lock.release()
                self.mark_complete(run)
                self.display.run_finished(str(run.run_dir))
            else:
                attempts.append(Attempt(run, lock, 1, started))
        return attempts

    def skip_locked(self, run: PlannedRun, lock: RunDirLock) -> None:
        self.state[run.run_dir] = "locked"
        self.report.locked[run.label] = lock.describe_holder()
        self.display.run_finished(str(run.run_dir), counts_as_done=False)
        self.display.line(f"{run.run_id}: skipped, {lock.describe_holder()}", error=True)

    def submit_run(self, attempt: Attempt) -> None:
        run = attempt.run
        self.start([attempt], attempt.key)
        self.executor.submit(RunTask(
            key=attempt.key, runner=self.runners.run, config=run.config.to_dict(),
            run_dir=str(run.run_dir), data_dir=str(self.data_dir), run_id=run.run_id,
            sweep=run.sweep, threads=self.executor.threads_per_task,
            progress=self.executor.progress_channel(), options=self.runners.options,
        ))

    def submit_group(self, attempts: list[Attempt]) -> None:
        assert self.runners.group is not None
        key = f"group-{next(self.group_numbers)}"  # never a run's key: those are paths
        self.start(attempts, key)
        members = tuple(GroupMember(config=a.run.config.to_dict(), run_dir=str(a.run.run_dir),
                                    run_id=a.run.run_id, key=a.key) for a in attempts)
        self.executor.submit(GroupTask(
            key=key, runner=self.runners.group, members=members, data_dir=str(self.data_dir),
            sweep=attempts[0].run.sweep,  # group_runs never mixes sweep directories
            threads=self.executor.threads_per_task, progress=self.executor.progress_channel(),
            options=self.runners.options,
        ))

    def start(self, attempts: list[Attempt], key: str) -> None:
        self.in_flight[key] = attempts
        for attempt in attempts:
            self.display.run_started(attempt.key, attempt.run.run_id)
        self.display.task_started(key, [attempt.key for attempt in attempts])

    def show_progress(self) -> None:
        for key, done, planned in self.executor.drain_progress():
            self.display.progress(key, done, planned)
        self.display.tick()

    def handle(self, outcome: TaskOutcome) -> None:
        attempts = self.in_flight.pop(outcome.key)
        partners = [a.run.run_id for a in attempts]
        for i, attempt in enumerate(attempts):
            if outcome.records is not None:
                self.settle(attempt, outcome.records[i], outcome, partners)
            elif is_complete(attempt.run):  # it finished before the rest of its group crashed
                self.finish(attempt, load_result(attempt.run.run_dir))
            else:
                self.settle(attempt, None, outcome, partners)
        self.display.task_ended(outcome.key)  # after its runs are settled (finished or not)

    def settle(self, attempt: Attempt, record: dict[str, Any] | None, outcome: TaskOutcome,
               partners: list[str]) -> None:
        """One run of a finished task: complete, to be retried alone, or failed for good."""
        run = attempt.run
        if record is not None and record.get("status") in ("complete", "failed"):
            write_result(run.run_dir, record)  # the driver's copy is the final word
        failure = outcome.error if record is None else failure_of(record)
        if failure is None:
            self.finish(attempt, record)
            return
        log = save_details(run, outcome, partners)
        if attempt.number < MAX_ATTEMPTS:
            # Alone: a crash of a group does not say which member caused it.
            alone = " alone" if len(partners) > 1 else ""
            self.display.line(f"{run.run_id}: failed ({failure}); retrying{alone}", error=True)
            self.retries.append(replace(attempt, number=attempt.number + 1))
            return
        self.give_up(attempt, failure, log)

    def finish(self, attempt: Attempt, record: dict[str, Any] | None) -> None:
        attempt.lock.release()
        self.mark_complete(attempt.run)
        self.display.run_finished(attempt.key)
        seconds = time.monotonic() - attempt.started
        self.display.line(finished_line(attempt.run.run_id, record, seconds))

    def mark_complete(self, run: PlannedRun) -> None:
        self.state[run.run_dir] = "complete"
        self.report.complete.append(run.label)

    def give_up(self, attempt: Attempt, failure: str, log: Path | None) -> None:
        run = attempt.run
        record = load_result(run.run_dir)
        if record is None or record.get("status") != "failed":
            write_result(run.run_dir, merged_record(run, "failed", failure))
        attempt.lock.release()
        self.state[run.run_dir] = "failed"
        self.report.failed[run.label] = failure
        self.display.run_finished(attempt.key)
        where = f"; details in {log}" if log else ""
        self.display.line(f"{run.run_id}: FAILED twice ({failure}){where}", error=True)


def failure_of(record: dict[str, Any]) -> str | None:
    """None for a complete run, otherwise a one-line reason."""
    status = record.get("status")
    if status == "complete":
        return None
    if status == "failed":
        detail = record.get("failure") or {}
        return str(detail.get("reason") or record.get("reason") or "training failed")
    return f"the trainer returned status {status!r}"


def save_details(run: PlannedRun, outcome: TaskOutcome, partners: list[str]) -> Path | None:
    """Keep the traceback of a crashed attempt next to the run, for the person debugging it."""
    if not outcome.details:
        return None
    others = [name for name in partners if name != run.run_id]
    group = f" (trained in a group with {', '.join(others)})" if others else ""
    path = run.run_dir / ERROR_LOG
    try:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {run.run_id}{group}\n"
                     f"{outcome.details}\n")
    except OSError:
        return None
    return path


def run_sweep(grid: str, plan: list[PlannedRun], *, data_dir: Path,
              executor_factory: ExecutorFactory, runner: Runner = run_real_trainer,
              group_runner: GroupRunner = run_real_group_trainer, group: bool = True,
              check_data: DataCheck = check_data_available,
              options: ExecutionOptions | None = None, timer: Timer | None = run_real_timer,
              stream: Any = None, out: Any = None) -> SweepReport:
    """Train every run of the plan that is not complete yet; the report says how each ended.

    group: train compatible runs together with group_runner (retries use runner); False: every
    run alone with runner (--no-group). options: how every task executes (--numerics, ...).
    timer: times the group kinds on the executor's workers for the projection printed before
    training and for the ETA (benchmark.sweeps.calibration); None: no projection, and the ETA
    extrapolates the measured step rate."""
    stream = stream or sys.stderr
    report = SweepReport(grid)

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    check_recorded_configs(plan)
    load_s: dict[str, float] = {}  # how long each data condition took to load (cost model)

    def timed_check(name: str, directory: Path) -> str | None:
        started = time.monotonic()
        try:
            return check_data(name, directory)
        finally:
            load_s[name] = time.monotonic() - started

    done = [run for run in plan if is_complete(run)]
    report.complete.extend(run.label for run in done)
    state: dict[Path, str] = {run.run_dir: "complete" for run in done}
    todo, unavailable = split_unavailable([run for run in plan if run not in done],
                                          Path(data_dir), timed_check, say)
    report.unavailable.extend(run.label for run in unavailable)
    for run in plan:
        if run.label in report.unavailable:
            state[run.run_dir] = "unavailable"
    if not todo:
        return report
    executor = executor_factory(len(todo))
    how = "compatible runs grouped" if group else "every run alone (--no-group)"
    say(f"sweep {grid}: {len(plan)} runs, {len(done)} complete, {len(todo)} to train; "
        f"{describe_executor(executor)}; {how}")
    options = options or ExecutionOptions()
    try:
        eta = projected_eta(grid, todo, executor, options, timer, group, say, load_s)
        display = SweepDisplay(grid, total=len(done) + len(todo), already_done=len(done),
                               stream=stream, out=out, eta=eta)
    except BaseException:
        executor.close()
        raise
    for run in todo:
        display.eta.expect(str(run.run_dir), steps_done_before(run))
    try:
        runners = Runners(run=runner, group=group_runner if group else None, options=options)
        SweepLoop(todo, executor, runners, Path(data_dir), display, report, state).run()
    finally:
        display.close()
    count_runs_finished_elsewhere(todo, state, report)
    return report


def count_runs_finished_elsewhere(runs: list[PlannedRun], state: dict[Path, str],
                                  report: SweepReport) -> None:
    """A run skipped as locked that another sweep has completed meanwhile is complete."""
    for run in runs:
        if state.get(run.run_dir) == "locked" and is_complete(run):
            state[run.run_dir] = "complete"
            report.locked.pop(run.label, None)
            report.complete.append(run.label)
