"""What a sweep hands to its workers: a task (one run, or a group of runs trained together), and
how a worker executes it. Tasks are picklable, so that a spawn pool or Ray can ship them; the
trainers are imported in the worker, so the driver never loads torch for them."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.config import RunConfig
from benchmark.plugins import Plugin, load_plugins, loaded_plugins
from benchmark.training import ExecutionOptions

ProgressItem = tuple[str, int, int]  # (run key, steps done, steps planned)
Runner = Callable[..., dict[str, Any]]  # the signature of benchmark.training.loop.train_run
GroupRunner = Callable[..., list[dict[str, Any]]]  # that of benchmark.training.loop.train_group


@dataclass(frozen=True)
class TaskOutcome:
    key: str
    records: list[dict[str, Any]] | None  # what the runner returned, one per run, in order
    error: str | None  # one line, when the runner raised
    details: str | None  # the traceback, for the log
    elapsed_s: float


@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to train one run; picklable (spawn, Ray)."""

    key: str
    runner: Runner
    config: dict[str, Any]
    run_dir: str
    data_dir: str
    run_id: str
    sweep: str
    threads: int
    progress: Any = None  # a queue with put(); None for no progress reports
    options: ExecutionOptions = ExecutionOptions()
    # The objective plugins the driver loaded, for the worker to load before it reads a config.
    plugins: tuple[Plugin, ...] = field(default_factory=loaded_plugins)

    def execute(self) -> TaskOutcome:
        return execute_run(self)


@dataclass(frozen=True)
class GroupMember:
    config: dict[str, Any]
    run_dir: str
    run_id: str
    key: str  # the run's progress key


@dataclass(frozen=True)
class GroupTask:
    """Everything a worker needs to train several runs as one group; picklable (spawn, Ray)."""

    key: str
    runner: GroupRunner
    members: tuple[GroupMember, ...]
    data_dir: str
    sweep: str
    threads: int
    progress: Any = None
    options: ExecutionOptions = ExecutionOptions()
    plugins: tuple[Plugin, ...] = field(default_factory=loaded_plugins)

    def execute(self) -> TaskOutcome:
        return execute_group(self)


Task = RunTask | GroupTask


def run_real_trainer(config: RunConfig, run_dir: Path, data_dir: Path, **kwargs: Any) -> dict:
    """benchmark.training.loop.train_run, imported in the worker so the driver never needs torch."""
    from benchmark.training import train_run

    return train_run(config, run_dir, data_dir, **kwargs)


def run_real_group_trainer(configs: list[RunConfig], run_dirs: list[Path], data_dir: Path,
                           **kwargs: Any) -> list[dict]:
    """benchmark.training.ensemble.train_group, imported in the worker (see run_real_trainer)."""
    from benchmark.training import train_group

    return train_group(configs, run_dirs, data_dir, **kwargs)


def set_torch_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # allowed once per process, before any parallel work; a reused worker did it already


def report_progress(channel: Any, key: str) -> Callable[[int, int], None]:
    def on_progress(done: int, planned: int) -> None:
        try:
            channel.put((key, int(done), int(planned)))
        except Exception:  # noqa: BLE001 - a lost progress message must never stop training
            pass

    return on_progress


def report_member_progress(channel: Any, keys: tuple[str, ...]) -> Callable[[int, int, int], None]:
    """train_group's on_progress(member index, done, planned), sent under each member's key."""
    by_member = [report_progress(channel, key) for key in keys]

    def on_progress(member: int, done: int, planned: int) -> None:
        by_member[member](done, planned)

    return on_progress


def guarded(key: str, threads: int, work: Callable[[], list[dict[str, Any]]],
            plugins: tuple[Plugin, ...] = ()) -> TaskOutcome:
    """Run `work` in the current process, the objective plugins loaded first; a failure of the
    runs becomes the outcome's error."""
    start = time.monotonic()
    try:
        load_plugins(plugins)
        set_torch_threads(threads)
        records = work()
        return TaskOutcome(key, records, None, None, time.monotonic() - start)
    except Exception as err:  # noqa: BLE001 - reported to the driver, which retries once
        error = f"{type(err).__name__}: {err}".splitlines()[0]
        return TaskOutcome(key, None, error, traceback.format_exc(), time.monotonic() - start)


def execute_run(task: RunTask) -> TaskOutcome:
    """Train one run in the current process; never raises for a failure of the run itself."""

    def work() -> list[dict[str, Any]]:
        on_progress = report_progress(task.progress, task.key) if task.progress else None
        return [task.runner(
            RunConfig.from_dict(task.config), Path(task.run_dir), Path(task.data_dir),
            run_id=task.run_id, sweep=task.sweep, show_progress=False, on_progress=on_progress,
            options=task.options,
        )]

    return guarded(task.key, task.threads, work, task.plugins)


def execute_group(task: GroupTask) -> TaskOutcome:
    """Train a group of runs together in the current process; never raises for their failure."""
    members = task.members

    def work() -> list[dict[str, Any]]:
        keys = tuple(m.key for m in members)
        on_progress = report_member_progress(task.progress, keys) if task.progress else None
        records = task.runner(
            [RunConfig.from_dict(m.config) for m in members], [Path(m.run_dir) for m in members],
            Path(task.data_dir), run_ids=[m.run_id for m in members], sweep=task.sweep,
            show_progress=False, on_progress=on_progress, options=task.options,
        )
        if len(records) != len(members):  # the driver pairs records with runs by position
            raise ValueError(f"the group runner returned {len(records)} records for "
                             f"{len(members)} runs")
        return list(records)

    return guarded(task.key, task.threads, work, task.plugins)


def execute_task(task: Task) -> TaskOutcome:
    """The one function the executors ship to their workers."""
    return task.execute()
