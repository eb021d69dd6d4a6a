"""`python -m benchmark sweep {table1,table2,binarization}`: train and evaluate a grid of runs.

A sweep is resumable and idempotent. Each run lives in <results>/<sweep>/<run-id> (see
benchmark.sweeps.grids for the grids and ids). On every call:
  - a complete run is skipped, unless its recorded configuration differs from the one asked for,
    which stops the sweep with a message before anything trains;
  - a partial run is handed to the trainer again, which resumes it from its newest checkpoint;
  - a run that fails (status "failed", or an exception) is retried once, alone, then reported,
    and the sweep goes on with the rest;
  - a run whose directory another live sweep has locked is skipped with a message;
  - a data condition whose files are missing or unverified is checked once, reported once, and
    each of its runs is recorded with status "unavailable" and the reason.
The exit status is 0 when every run ends complete or unavailable, 1 otherwise (one summary line).

Grouping (the default): the runs that are ready to train (not complete, data available, base run
complete) are partitioned into groups of compatible runs (benchmark.sweeps.grids.group_runs: same
layers, k, fidelity and device, sized so that every worker gets a group), and each group is one
task that trains its runs as one batched ensemble (benchmark.training.ensemble.train_group). Everything
above still holds per run: each member's lock is taken before its group is handed out, each
member gets its own record and finished line, and a member that fails (or every member of a
group that crashed) is retried alone. Runs that become ready later (table2's continuations, once
their base is complete) form later groups. `--no-group`: every run is its own task (train_run).

Executors (benchmark.sweeps.executors): `local` is a spawn process pool on this machine; `ray` makes
each task a Ray task (`--address` joins a cluster, `--gpus-per-run`, per task and so per group
when grouping, may be fractional to pack tasks onto one GPU). The driver holds the run locks and
writes the final result records; with Ray, <results> and the data folder must nevertheless be on
storage every node sees under the same path, because the tasks write checkpoints and read the
data where they run.
"""

from __future__ import annotations

import argparse
import itertools
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmark.records.environment import resolve_device
from benchmark.errors import UserError
from benchmark.training.execution import ExecutionOptions, execution_from_args
from benchmark.sweeps.executors import (
    Executor,
    GroupMember,
    GroupRunner,
    GroupTask,
    Runner,
    RunTask,
    TaskOutcome,
    check_gpus_per_run,
    describe_executor,
    import_ray,
    make_executor,
    run_real_group_trainer,
    run_real_trainer,
)
from benchmark.sweeps.locks import RunDirLock
from benchmark.records.results import load_result, write_result
from benchmark.sweeps.grids import (
    GRIDS,
    PlannedRun,
    SweepOptions,
    config_differences,
    expand_grid,
    group_runs,
)
from benchmark.sweeps.progress import SweepDisplay, finished_line

MAX_ATTEMPTS = 2  # a failed run is retried once (alone, when it failed in a group)
WAIT_S = 0.5  # how often the driver wakes up to refresh progress bars
ERROR_LOG = "sweep_error.log"

DataCheck = Callable[[str, Path], str | None]
ExecutorFactory = Callable[[int], Executor]


def check_data_available(name: str, data_dir: Path) -> str | None:
    """None when the data condition loads; otherwise why not (and how to fetch it)."""
    from benchmark.data.splits import load_dataset

    try:
        load_dataset(name, data_dir)
    except UserError as err:  # DataUnavailable, or a corrupt file: either way, not usable
        return str(err)
    return None


@dataclass
class SweepReport:
    grid: str
    complete: list[str] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    locked: dict[str, str] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.failed or self.locked or self.blocked)

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
        return f"sweep {self.grid}: " + ", ".join(parts)


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


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        schedule=args.schedule, fidelity=args.fidelity,
        data=tuple(args.data) if args.data else None, seeds=args.seeds, device=args.device,
        stages=args.stages, epochs=args.epochs, steps=args.steps, eval_k=args.eval_k,
        eval_n=args.eval_n,
    )


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


def merged_record(run: PlannedRun, status: str, reason: str) -> dict[str, Any]:
    """The run's existing record (progress kept) with a new status and reason."""
    record = dict(load_result(run.run_dir) or {})
    record.update(run_id=run.run_id, sweep=run.sweep, status=status, reason=reason)
    record.setdefault("config", run.config.to_dict())
    return record


def record_unavailable(runs: list[PlannedRun], reason: str) -> None:
    for run in runs:
        with RunDirLock(run.run_dir) as lock:
            if lock.acquire():  # a live sweep training it elsewhere keeps its record
                write_result(run.run_dir, merged_record(run, "unavailable", reason))


def split_unavailable(runs: list[PlannedRun], data_dir: Path, check_data: DataCheck,
                      report: SweepReport, say: Callable[[str], None]) -> list[PlannedRun]:
    """Check each data condition once; record its runs as unavailable when it cannot load."""
    usable = []
    for name in dict.fromkeys(run.config.data for run in runs):
        of_data = [run for run in runs if run.config.data == name]
        reason = check_data(name, data_dir)
        if reason is None:
            usable.extend(of_data)
            continue
        say(f"skipping {name}: {len(of_data)} run(s) recorded as unavailable: {reason}")
        record_unavailable(of_data, reason)
        report.unavailable.extend(run.label for run in of_data)
    return [run for run in runs if run in usable]


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
            record_unavailable(of_data, reason)


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
        groups = group_runs(ready, self.executor.capacity)
        largest = max(len(group) for group in groups)
        self.display.line(f"{len(ready)} run(s) ready: {len(groups)} task(s) of up to {largest} "
                          f"compatible run(s) (same layers, k, fidelity, device)", error=True)
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

    def show_progress(self) -> None:
        for key, done, planned in self.executor.drain_progress():
            self.display.progress(key, done, planned)

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
              options: ExecutionOptions | None = None,
              stream: Any = None, out: Any = None) -> SweepReport:
    """Train every run of the plan that is not complete yet; the report says how each ended.

    group: train compatible runs together with group_runner (retries use runner); False: every
    run alone with runner (--no-group). options: how every task executes (--numerics, ...)."""
    stream = stream or sys.stderr
    report = SweepReport(grid)

    def say(text: str) -> None:
        print(text, file=stream, flush=True)

    check_recorded_configs(plan)
    done = [run for run in plan if is_complete(run)]
    report.complete.extend(run.label for run in done)
    state: dict[Path, str] = {run.run_dir: "complete" for run in done}
    todo = split_unavailable([run for run in plan if run not in done], Path(data_dir),
                             check_data, report, say)
    for run in plan:
        if run.label in report.unavailable:
            state[run.run_dir] = "unavailable"
    if not todo:
        return report
    executor = executor_factory(len(todo))
    how = "compatible runs grouped" if group else "every run alone (--no-group)"
    say(f"sweep {grid}: {len(plan)} runs, {len(done)} complete, {len(todo)} to train; "
        f"{describe_executor(executor)}; {how}")
    display = SweepDisplay(grid, total=len(done) + len(todo), already_done=len(done),
                           stream=stream, out=out)
    for run in todo:
        display.eta.expect(str(run.run_dir), steps_done_before(run))
    try:
        runners = Runners(run=runner, group=group_runner if group else None,
                          options=options or ExecutionOptions())
        SweepLoop(todo, executor, runners, Path(data_dir), display, report, state).run()
    finally:
        display.close()
    return report


@contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch scheduler, `kill`) ends the sweep as Ctrl-C does: workers are stopped and
    run locks released, instead of dying with the locks left for the next sweep to clear."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_executor_flags(args: argparse.Namespace) -> None:
    """Flag mistakes surface before any data is loaded or anything starts."""
    if args.executor == "local" and (args.address or args.gpus_per_run):
        raise UserError("--address and --gpus-per-run need --executor ray")
    if args.executor == "ray":
        check_gpus_per_run(args.gpus_per_run)
        import_ray()


def sweep_command(args: argparse.Namespace) -> int:
    """The `sweep` subcommand (see the module docstring); returns the exit status."""
    if args.grid not in GRIDS:
        raise UserError(f"unknown grid {args.grid!r}; choose one of {', '.join(GRIDS)}")
    options = options_from_args(args)
    plan = expand_grid(args.grid, options, args.results)

    uses_gpu = resolve_device(args.device).type == "cuda"

    def executor_factory(n_runs: int) -> Executor:
        return make_executor(args.executor, n_runs=n_runs, workers=args.workers,
                             address=args.address, gpus_per_run=args.gpus_per_run,
                             uses_gpu=uses_gpu)

    check_executor_flags(args)
    record_unselected_unavailable(args.grid, options, plan, args.results, Path(args.data_dir))
    with termination_as_interrupt():
        report = run_sweep(args.grid, plan, data_dir=Path(args.data_dir),
                           executor_factory=executor_factory, group=not args.no_group,
                           options=execution_from_args(args))
    print(report.summary_line(), file=sys.stdout if report.ok else sys.stderr)
    return report.exit_code
