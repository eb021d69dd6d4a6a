"""Calibrating the cost model on this machine: short timings of the group kinds a sweep is about
to train, run where its tasks will run, and kept for a day.

The timings are tasks of the sweep's own executor (a CalibrationTask, executed like a training
task), so they measure the workers that will train: their thread count and device, a Ray node
rather than the driver's machine, and with several workers, while the others time too, as they
will train side by side. Each kind is timed with one member and with the largest group it will
form (benchmark.sweeps.cost_model interpolates between them), for at most SWEEP_TIMING_S seconds
and never for more steps than the sweep will train of that kind; each (layers, eval_k) of the
evaluations likewise. The result is kept in <results>/.cost_model.json under a fingerprint of the
machine and the execution options, and reused for CACHE_MAX_AGE_S; a kind missing from it is
timed alone.
"""

from __future__ import annotations

import importlib.metadata
import platform
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.records import atomic_write_json, read_json
from benchmark.sweeps.cost_model import CostModel, KindKey, TaskCost, kind_name
from benchmark.sweeps.executors import Executor, available_cores, describe_executor
from benchmark.sweeps.tasks import TaskOutcome, guarded
from benchmark.training import ExecutionOptions

CACHE_FILE = ".cost_model.json"
CACHE_MAX_AGE_S = 24 * 3600.0
SWEEP_TIMING_S = 1.0  # timed seconds per kind and member count before a sweep
EVAL_TIMING_S = 0.5
CURVE_K = 50  # the learning curve's k (benchmark.training.loop.CURVE_SUBSET_K)
WAIT_S = 0.5


@dataclass(frozen=True)
class StepRequest:
    layers: int
    k: int
    fidelity: str
    members: int
    data: tuple[str, ...]
    device: str
    max_steps: int | None  # never time more steps than the sweep will train

    @property
    def kind(self) -> KindKey:
        return (self.layers, self.k, self.fidelity)


@dataclass(frozen=True)
class EvalRequest:
    layers: int
    eval_k: int
    device: str
    max_rows: int | None = None  # never time more rows than the sweep will score


Timer = Callable[[list[StepRequest], list[EvalRequest], ExecutionOptions, float, float],
                 dict[str, Any]]


def run_real_timer(steps: list[StepRequest], evals: list[EvalRequest],
                   options: ExecutionOptions, step_seconds: float, eval_seconds: float
                   ) -> dict[str, Any]:
    """Times the requests with the real trainer (benchmark.training.timing), in the worker."""
    from benchmark.training import group_configs, time_evaluation_row, time_group_step

    model = CostModel()
    for request in steps:
        configs = group_configs(request.layers, request.k, request.members,
                                request.fidelity, request.data, request.device)
        timing = time_group_step(configs, options, step_seconds, request.max_steps)
        name = kind_name(request.kind)
        model.step_s.setdefault(name, {})[request.members] = timing.step_s
        model.one_off_s[name] = max(model.one_off_s.get(name, 0.0), timing.one_off_s)
        model.paths[name] = f"{timing.path} ({timing.path_reason})"
        model.device = timing.device
        if not timing.finite:
            model.not_finite.append(name)
    for request in evals:
        model.eval_row_s[f"L{request.layers}-k{request.eval_k}"] = time_evaluation_row(
            request.layers, request.eval_k, options, request.device, eval_seconds,
            request.max_rows)
    return model.to_dict()


@dataclass(frozen=True)
class CalibrationTask:
    """Timings executed by a worker like a training task (picklable: spawn, Ray)."""

    key: str
    timer: Timer
    steps: tuple[StepRequest, ...]
    evals: tuple[EvalRequest, ...]
    options: ExecutionOptions
    threads: int
    step_seconds: float = SWEEP_TIMING_S
    eval_seconds: float = EVAL_TIMING_S

    def execute(self) -> TaskOutcome:
        return guarded(self.key, self.threads, lambda: [self.timer(
            list(self.steps), list(self.evals), self.options, self.step_seconds,
            self.eval_seconds)])


def requests_for(tasks: list[TaskCost], known: CostModel | None = None
                 ) -> tuple[list[StepRequest], list[EvalRequest]]:
    """What to time for these tasks that `known` does not already hold."""
    sizes: dict[KindKey, set[int]] = {}
    steps: dict[KindKey, int] = {}
    data: dict[KindKey, list[str]] = {}
    device: dict[KindKey, str] = {}
    evals: dict[tuple[int, int, str], int] = {}  # -> most rows of one run
    for task in tasks:
        sizes.setdefault(task.kind, {1}).add(len(task.members))
        for member in task.members:
            steps[task.kind] = max(steps.get(task.kind, 0), member.steps_left)
            names = data.setdefault(task.kind, [])
            if member.config.data not in names:
                names.append(member.config.data)
            device[task.kind] = member.config.device
            config, work = member.config, member.workload
            for key, rows in (((config.layers, work.eval_k, config.device), work.eval_rows),
                              ((config.layers, CURVE_K, config.device), work.curve_rows)):
                evals[key] = max(evals.get(key, 0), rows)
    step_requests = [StepRequest(*kind, members=m, data=tuple(data[kind]), device=device[kind],
                                 max_steps=max(1, steps[kind]))
                     for kind, counts in sizes.items() for m in sorted(counts)
                     if known is None or not known.has(kind, m)]
    eval_requests = [EvalRequest(layers, k, dev, max(1, rows))
                     for (layers, k, dev), rows in sorted(evals.items())
                     if known is None or f"L{layers}-k{k}" not in known.eval_row_s]
    return step_requests, eval_requests


def fingerprint(executor: Executor, options: ExecutionOptions, device: str) -> dict[str, Any]:
    """What the timings depend on; a cached model is used only for an equal fingerprint."""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = None
    return {"host": socket.gethostname(),
            "cpu": platform.processor() or platform.machine(), "cores": available_cores(),
            "torch": torch_version, "executor": describe_executor(executor), "device": device,
            "numerics": options.numerics, "cuda_graphs": options.cuda_graphs,
            "tf32": options.allow_tf32, "compile": options.compile_cpu,
            "flush_denormal": options.flush_denormal}


def load_cached(results: Path, print_: dict[str, Any], now: float) -> CostModel | None:
    try:
        cache = read_json(results / CACHE_FILE)
    except (OSError, ValueError):
        return None
    if not isinstance(cache, dict):
        return None
    for entry in cache.get("entries", []):
        if not isinstance(entry, dict) or entry.get("fingerprint") != print_:
            continue
        age = now - float(entry.get("timed_at", 0))
        if 0 <= age <= CACHE_MAX_AGE_S:
            try:
                return CostModel.from_dict(entry["model"], source=f"timed {_ago(age)} ago")
            except (KeyError, TypeError, ValueError):
                return None
    return None


def save_cached(results: Path, print_: dict[str, Any], model: CostModel, now: float) -> None:
    """Best effort: a results folder that cannot be written loses the cache, nothing else."""
    path = results / CACHE_FILE
    try:
        cache = read_json(path) if path.exists() else {}
    except (OSError, ValueError):
        cache = {}
    entries = [e for e in (cache.get("entries", []) if isinstance(cache, dict) else [])
               if isinstance(e, dict) and e.get("fingerprint") != print_]
    entries.append({"fingerprint": print_, "timed_at": now, "model": model.to_dict()})
    try:
        results.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"version": 1, "entries": entries})
    except OSError:
        pass


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def calibrate(executor: Executor, tasks: list[TaskCost], options: ExecutionOptions,
              timer: Timer, results: Path | None, device: str,
              clock: Callable[[], float] = time.time, step_seconds: float = SWEEP_TIMING_S,
              eval_seconds: float = EVAL_TIMING_S) -> tuple[CostModel | None, str | None]:
    """The cost model for these tasks: cached in `results` (None: no cache), or timed now on
    the executor's workers for about step_seconds per kind and member count.
    Returns (model, None), or (None, why not) when a timing failed."""
    print_ = fingerprint(executor, options, device)
    cached = load_cached(results, print_, clock()) if results is not None else None
    steps, evals = requests_for(tasks, cached)
    if not steps and not evals and cached is not None:
        return cached, None
    outcomes = _time_on_workers(executor, steps, evals, options, timer, step_seconds,
                                eval_seconds)
    model = CostModel(source="timed now")
    for outcome in outcomes:
        if outcome.records is None:
            return None, outcome.error or "the timing task failed"
        model = model.merged(CostModel.from_dict(outcome.records[0], source="timed now"))
    if cached is not None:
        model = cached.merged(model)
        model.source = "timed now" if steps else cached.source
    if results is not None:
        save_cached(results, print_, model, clock())
    return model, None


def _time_on_workers(executor: Executor, steps: list[StepRequest], evals: list[EvalRequest],
                     options: ExecutionOptions, timer: Timer, step_seconds: float,
                     eval_seconds: float) -> list[TaskOutcome]:
    """The requests dealt round-robin to up to executor.capacity tasks, run side by side."""
    n = max(1, min(executor.capacity, len(steps) + len(evals)))
    shares: list[tuple[list[StepRequest], list[EvalRequest]]] = [([], []) for _ in range(n)]
    # the slowest first, so that the shares come out even
    for i, request in enumerate(sorted(steps, key=lambda r: -r.k * r.layers * r.members)):
        shares[i % n][0].append(request)
    for i, request in enumerate(evals):
        shares[(len(steps) + i) % n][1].append(request)
    keys = []
    for i, (mine, my_evals) in enumerate(shares):
        key = f"calibration-{i}"
        keys.append(key)
        executor.submit(CalibrationTask(key, timer, tuple(mine), tuple(my_evals), options,
                                        executor.threads_per_task, step_seconds, eval_seconds))
    outcomes: dict[str, TaskOutcome] = {}
    while len(outcomes) < len(keys):
        for outcome in executor.wait(WAIT_S):
            outcomes[outcome.key] = outcome
        executor.drain_progress()
    return [outcomes[key] for key in keys]
