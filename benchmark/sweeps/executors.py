"""Where the tasks of a sweep execute: a local process pool, Ray, or (tests) this very process.

A task (benchmark.sweeps.tasks) is one run or a group of runs trained together as one batched
ensemble. Every executor runs `execute_task(task)` somewhere and hands its `TaskOutcome` (one record
per run) back to the driver, which alone writes result records, holds the run locks and retries
failures. Each run's progress (steps done / planned) travels back through a queue the executor
provides.

Ray: results/ (and the data folder) must be on storage that every node sees under the same path.
The driver writes the result records from what the tasks return, but the checkpoints, curves and
the trainer's own interim records are written by the tasks on whichever node runs them.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import queue
from multiprocessing.managers import SyncManager
from typing import Any, Protocol

from benchmark.errors import UserError
from benchmark.sweeps.orphans import die_with_parent
from benchmark.sweeps.tasks import ProgressItem, Task, TaskOutcome, execute_task

RAY_MISSING = "the ray executor needs Ray: pip install 'iwae-benchmark[ray]'"


class Executor(Protocol):
    capacity: int  # how many tasks may be in flight at once
    threads_per_task: int  # torch threads (and, with Ray, CPUs) each task uses

    def submit(self, task: Task) -> None: ...

    def wait(self, timeout: float) -> list[TaskOutcome]: ...

    def progress_channel(self) -> Any: ...

    def drain_progress(self) -> list[ProgressItem]: ...

    def close(self) -> None: ...


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_local_workers(workers: int | None, n_runs: int, cores: int, uses_gpu: bool = False
                       ) -> tuple[int, int]:
    """(workers, torch threads per worker) with workers * threads <= cores.

    Without --workers: one worker per core up to the number of runs (these models are small, so
    runs side by side use cores better than threads inside one run), and leftover cores go to
    the threads of each run. On a GPU, one worker: it trains the whole grid as batched groups,
    which is what keeps a GPU busy at a minibatch of 20 (many processes would each leave it idle).
    """
    cores = max(1, cores)
    if workers is None:
        workers = 1 if uses_gpu else max(1, min(cores, n_runs))
    return workers, max(1, cores // workers)


def drain_queue(channel: Any) -> list[ProgressItem]:
    items = []
    while True:
        try:
            items.append(channel.get_nowait())
        except (queue.Empty, EOFError, OSError):
            return items


class InlineExecutor:
    """Runs each task in this process when waited on: for tests and debugging, not for sweeps."""

    def __init__(self, threads_per_task: int = 1) -> None:
        self.capacity = 1
        self.threads_per_task = threads_per_task
        self._queue: queue.Queue = queue.Queue()
        self._pending: list[Task] = []

    def progress_channel(self) -> Any:
        return self._queue

    def submit(self, task: Task) -> None:
        self._pending.append(task)

    def wait(self, timeout: float) -> list[TaskOutcome]:
        done = [execute_task(task) for task in self._pending]
        self._pending.clear()
        return done

    def drain_progress(self) -> list[ProgressItem]:
        return drain_queue(self._queue)

    def close(self) -> None:
        self._pending.clear()


class LocalExecutor:
    """A process pool on this machine (spawn: torch and fork do not mix). Its processes (the
    workers and the progress queue's manager) die with the driver, however it ends
    (benchmark.sweeps.orphans): a SIGKILLed sweep leaves nothing training behind."""

    def __init__(self, workers: int, threads_per_task: int) -> None:
        self.capacity = workers
        self.threads_per_task = threads_per_task
        self._context = multiprocessing.get_context("spawn")
        self._manager = SyncManager(ctx=self._context)
        self._manager.start(die_with_parent, (os.getpid(),))
        self._queue = self._manager.Queue()
        self._pool: cf.ProcessPoolExecutor | None = None
        self._futures: dict[cf.Future, str] = {}

    def _ensure_pool(self) -> cf.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = cf.ProcessPoolExecutor(max_workers=self.capacity,
                                                mp_context=self._context,
                                                initializer=die_with_parent,
                                                initargs=(os.getpid(),))
        return self._pool

    def progress_channel(self) -> Any:
        return self._queue

    def submit(self, task: Task) -> None:
        self._futures[self._ensure_pool().submit(execute_task, task)] = task.key

    def wait(self, timeout: float) -> list[TaskOutcome]:
        if not self._futures:
            return []
        done, _ = cf.wait(self._futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
        outcomes = [self._outcome_of(future) for future in done]
        if any(o.error and "BrokenProcessPool" in o.error for o in outcomes):
            self._discard_broken_pool()
        return outcomes

    def _outcome_of(self, future: cf.Future) -> TaskOutcome:
        key = self._futures.pop(future)
        try:
            return future.result()
        except cf.process.BrokenProcessPool as err:
            # A worker was killed (out of memory, signal): every task in flight is lost with it.
            return TaskOutcome(key, None, f"BrokenProcessPool: worker process died ({err})",
                               None, 0.0)

    def _discard_broken_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None

    def drain_progress(self) -> list[ProgressItem]:
        return drain_queue(self._queue)

    def close(self) -> None:
        if self._pool is not None and self._futures:
            self._stop_runs_in_flight(self._pool)
        elif self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool = None
        self._futures.clear()
        self._manager.shutdown()

    @staticmethod
    def _stop_runs_in_flight(pool: cf.ProcessPoolExecutor) -> None:
        """Ctrl-C or an error in the driver: stop the workers rather than wait for hours.

        Their checkpoints are on disk and the next sweep resumes them. The pool has no public
        way to stop a running task before Python 3.14, hence its private process table.
        """
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            if process.is_alive():
                process.terminate()
        # With its workers gone the pool notices it is broken; waiting lets it free its queues.
        pool.shutdown(wait=True, cancel_futures=True)


def import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise UserError(RAY_MISSING) from err
    return ray


def check_gpus_per_run(gpus: float) -> None:
    if gpus < 0 or (gpus > 1 and not float(gpus).is_integer()):
        raise UserError("--gpus-per-run must be a fraction of one GPU (0 < g <= 1, e.g. 0.25 "
                        "packs four tasks on a GPU) or a whole number of GPUs")


class RayExecutor:
    """Each task (a run, or a group of runs) a Ray task: num_cpus = the threads it uses,
    num_gpus = --gpus-per-run, which therefore applies per group when the sweep groups runs."""

    def __init__(self, address: str | None, workers: int | None, gpus_per_run: float,
                 threads_per_task: int = 1, num_cpus: int | None = None) -> None:
        check_gpus_per_run(gpus_per_run)
        self._ray = import_ray()
        self.threads_per_task = threads_per_task
        self._gpus_per_run = gpus_per_run
        self._started_here = self._connect(address, num_cpus)
        from ray.util.queue import Queue

        # num_cpus=0: the queue actor must not take a slot that a run could use.
        self._queue = Queue(actor_options={"num_cpus": 0})
        self._remote = self._ray.remote(execute_task)
        self._refs: dict[Any, str] = {}
        self.capacity = workers or self._cluster_capacity()

    def _connect(self, address: str | None, num_cpus: int | None) -> bool:
        """Join the given cluster, reuse a connection made by the caller, or start a local one."""
        if self._ray.is_initialized():
            return False
        try:
            if address:
                self._ray.init(address=address, log_to_driver=False)
            else:
                self._ray.init(num_cpus=num_cpus or available_cores(), include_dashboard=False,
                               log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise UserError(f"cannot start or reach {where}: {err}") from err
        return True

    def _cluster_capacity(self) -> int:
        resources = self._ray.cluster_resources()
        slots = int(resources.get("CPU", 1) // self.threads_per_task)
        if self._gpus_per_run > 0:
            slots = min(slots, int(resources.get("GPU", 0) / self._gpus_per_run + 1e-9))
            if slots == 0:
                raise UserError(f"--gpus-per-run {self._gpus_per_run:g}: the Ray cluster has "
                                f"{resources.get('GPU', 0):g} GPUs")
        return max(1, slots)

    def progress_channel(self) -> Any:
        return self._queue

    def submit(self, task: Task) -> None:
        # max_retries=0: the driver retries a failed run itself, once, and reports it.
        remote = self._remote.options(num_cpus=self.threads_per_task, num_gpus=self._gpus_per_run,
                                      max_retries=0)
        self._refs[remote.remote(task)] = task.key

    def wait(self, timeout: float) -> list[TaskOutcome]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        return [self._outcome_of(ref) for ref in ready]

    def _outcome_of(self, ref: Any) -> TaskOutcome:
        key = self._refs.pop(ref)
        try:
            return self._ray.get(ref)
        except Exception as err:  # noqa: BLE001 - a crashed worker or node fails this task only
            message = f"{type(err).__name__}: {err}".splitlines()[0]
            return TaskOutcome(key, None, message, None, 0.0)

    def drain_progress(self) -> list[ProgressItem]:
        size = self._queue.size()
        return list(self._queue.get_nowait_batch(size)) if size else []

    def close(self) -> None:
        for ref in list(self._refs):
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        self._queue.shutdown()
        if self._started_here:
            self._ray.shutdown()


def make_executor(kind: str, *, n_runs: int, workers: int | None, address: str | None,
                  gpus_per_run: float, uses_gpu: bool = False) -> Executor:
    if kind == "local":
        if address or gpus_per_run:
            raise UserError("--address and --gpus-per-run need --executor ray")
        workers, threads = plan_local_workers(workers, n_runs, available_cores(), uses_gpu)
        return LocalExecutor(workers, threads)
    if kind == "ray":
        return RayExecutor(address, workers, gpus_per_run)
    raise UserError(f"unknown executor {kind!r}; choose local or ray")


def describe_executor(executor: Executor) -> str:
    name = type(executor).__name__.removesuffix("Executor").lower()
    return (f"{name} executor: {executor.capacity} task(s) at a time, "
            f"{executor.threads_per_task} thread(s) each")

