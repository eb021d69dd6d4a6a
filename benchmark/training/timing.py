"""How long one training step of a group, and one row of an evaluation, take on this machine.

The timings run the trainer's own step (the path benchmark.training.step_check chooses, so on a GPU
the CUDA-graph step after its self-check) on synthetic inputs of the real shapes: gray images of
784 pixels, mostly black like MNIST, so that no dataset is needed (`doctor` on a fresh clone) and
the cost of a step does not depend on what is in the data folder. Speed hardly depends on the
pixels; flush-to-zero is set exactly as train_group sets it. Nothing is written to disk.

A timing is the median of several timed chunks of steps (a shared machine has bursts of load;
the median is what a long run sees), after the warm-up steps, whose extra time (compilation on the
CPU with fast numerics, the graph capture on a GPU) is reported separately as a one-off cost.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import Dataset
from benchmark.definitions import paper_objectives
from benchmark.evaluation import log_likelihood_estimates
from benchmark.models import IWAEModel, bound
from benchmark.records import resolve_device
from benchmark.training.denormals import flush_denormals
from benchmark.training.ensemble import check_group
from benchmark.training.execution import ExecutionOptions
from benchmark.training.group import Member, StackedState
from benchmark.training.optim import loss_reduction, make_optimizer
from benchmark.training.run_setup import DataCache, new_member
from benchmark.training.step import EagerStep, StepSpec, matmul_precision
from benchmark.training.step_check import (
    StepFn,
    StepPath,
    choose_step,
    graph_step_factory,
    self_check,
)

SYNTHETIC_TRAIN, SYNTHETIC_TEST = 1000, 500  # rows: a step reads 20, the curve subset 200
BLACK_FRACTION = 0.8  # about the share of always-black pixels in MNIST
CHUNK_STEPS_MAX = 50
TIMED_CHUNKS_MIN = 3
EVAL_ROWS = 40_000  # samples x examples per evaluation timing
WARMUP_CUDA, WARMUP_CPU = 5, 2


class SyntheticData(DataCache):
    """A DataCache whose every data condition is synthetic images of the real shapes."""

    def __init__(self, device: torch.device, seed: int = 0) -> None:
        super().__init__(Path("."), device)
        self.seed = seed

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            rng = np.random.default_rng(self.seed)
            dynamic = name != "mnist-fixed"

            def images(n: int) -> np.ndarray:
                gray = rng.random((n, 784), dtype=np.float32)
                gray[rng.random((n, 784)) < BLACK_FRACTION] = 0.0
                return gray if dynamic else (gray > 0.5).astype(np.float32)

            self.datasets[name] = Dataset(name, images(SYNTHETIC_TRAIN), images(0),
                                          images(SYNTHETIC_TEST), dynamic, {}, "synthetic")
        return self.datasets[name]


def group_configs(layers: int, k: int, members: int, fidelity: str = "code",
                  data: Sequence[str] = ("mnist-dynamic",), device: str = "auto"
                  ) -> list[RunConfig]:
    """`members` runs of one group kind: VAE and IWAE in turn, seeds 0.., data conditions in turn
    (a Table 1 group mixes both objectives and, with OMNIGLOT, both datasets)."""
    models = paper_objectives()
    return [RunConfig(data=data[i % len(data)], model=models[i % len(models)], k=k,
                      layers=layers, seed=i, fidelity=fidelity, device=device)
            for i in range(members)]


def synthetic_group(configs: Sequence[RunConfig], options: ExecutionOptions
                    ) -> tuple[StackedState, list[Member]]:
    """The runs `configs` (one group) set up as train_group would, on synthetic data."""
    check_group(configs)
    device = resolve_device(configs[0].device)
    data = SyntheticData(device)
    members = [new_member(c, Path("."), None, None, data, device, options, len(configs))
               for c in configs]
    state = StackedState.fresh(members, device, fused=options.numerics == "fast",
                               compile_cpu=options.compile_cpu)
    return state, members


def group_step(state: StackedState, members: list[Member], options: ExecutionOptions
               ) -> tuple[StepFn, StepPath]:
    configs = [m.config for m in members]
    spec = StepSpec(k=configs[0].k, reduction=loss_reduction(configs[0].fidelity),
                    objectives=tuple(c.model for c in configs), numerics=options.numerics)
    return choose_step(state, members, spec, bound, options)


@dataclass(frozen=True)
class StepTiming:
    step_s: float  # median seconds per step, steady state
    one_off_s: float  # the group's set-up, and the extra time of its first steps (compilation,
    # graph capture)
    steps: int  # steps timed
    path: str  # which step ran (benchmark.training.step_check)
    path_reason: str
    device: str  # the device type it ran on
    finite: bool  # every bound of the last step was finite

    def as_dict(self) -> dict[str, Any]:
        return {"step_s": self.step_s, "one_off_s": self.one_off_s, "steps": self.steps,
                "path": self.path, "path_reason": self.path_reason, "device": self.device,
                "finite": self.finite}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_group_step(configs: Sequence[RunConfig], options: ExecutionOptions, seconds: float,
                    max_steps: int | None = None) -> StepTiming:
    """Steady-state seconds per step of the group `configs`, timed for about `seconds` (at most
    max_steps steps after the warm-up)."""
    # A process's first checkpoint imports torch._dynamo (torch.optim does, for the optimizer
    # state template): seconds, once per process. Paid here, untimed, as the training process
    # that runs on this worker would pay it once, not per group.
    make_optimizer(configs[0].fidelity, [torch.zeros(1)], 1e-3)
    started = time.perf_counter()
    state, members = synthetic_group(configs, options)
    device = next(state.model.parameters()).device
    setup = time.perf_counter() - started
    with ExitStack() as stack:
        stack.enter_context(flush_denormals(options.flush_denormal and device.type == "cpu"))
        stack.enter_context(matmul_precision(options.allow_tf32))
        step, path = group_step(state, members, options)
        counter = [0]
        last: list[torch.Tensor] = []

        def run(n: int) -> float:
            start = time.perf_counter()
            for _ in range(n):
                last[:] = [step([counter[0]] * len(members))]
                counter[0] += 1
            _sync(device)
            return time.perf_counter() - start

        # the graph path's warm-up, capture and first replay; on a CPU, any compilation
        warmup = WARMUP_CUDA if device.type == "cuda" else WARMUP_CPU
        if max_steps is not None:
            warmup = min(warmup, max(1, max_steps // 2))
        first = run(warmup)
        # chunks sized from the warm-up (an overestimate of a step), so that about
        # TIMED_CHUNKS_MIN of them fill `seconds`
        chunk = int(seconds / TIMED_CHUNKS_MIN / max(first / warmup, 1e-6))
        chunk = max(1, min(CHUNK_STEPS_MAX, chunk, max_steps or CHUNK_STEPS_MAX))
        per_step: list[float] = []
        spent, timed = 0.0, 0
        while (len(per_step) < TIMED_CHUNKS_MIN or spent < seconds) and (
                max_steps is None or timed < max_steps):
            n = chunk if max_steps is None else max(1, min(chunk, max_steps - timed))
            elapsed = run(n)
            per_step.append(elapsed / n)
            spent, timed = spent + elapsed, timed + n
    step_s = statistics.median(per_step)
    return StepTiming(step_s=step_s, one_off_s=setup + max(0.0, first - warmup * step_s),
                      steps=timed,
                      path=path.path, path_reason=path.reason, device=device.type,
                      finite=bool(torch.isfinite(last[0]).all()))


def time_evaluation_row(layers: int, k: int, options: ExecutionOptions, device: str = "auto",
                        seconds: float = 1.0, max_rows: int | None = None) -> float:
    """Seconds per (example x importance sample) row of L_k for one model with `layers`
    stochastic layers (medians of repeated passes over about EVAL_ROWS rows, or max_rows: never
    more than the evaluations to be priced hold)."""
    torch_device = resolve_device(device)
    model = IWAEModel(layers, members=1).to(torch_device)
    n = max(1, min(EVAL_ROWS, max_rows or EVAL_ROWS) // k)
    x = (torch.rand(1, n, 784, generator=torch.Generator().manual_seed(0)) < 0.2).float()
    x = x.to(torch_device)
    fast = options.numerics == "fast"

    def once() -> float:
        start = time.perf_counter()
        log_likelihood_estimates(model, x, k, torch.Generator(torch_device).manual_seed(1),
                                 fast=fast, compile_forward=False)
        _sync(torch_device)
        return time.perf_counter() - start

    with flush_denormals(options.flush_denormal and torch_device.type == "cpu"):
        once()  # warm-up
        times, spent = [], 0.0
        while len(times) < TIMED_CHUNKS_MIN or spent < seconds:
            times.append(once())
            spent += times[-1]
    return statistics.median(times) / (n * k)


def synthetic_self_check(numerics: str, device: str = "cuda", layers: int = 2, k: int = 5
                         ) -> dict[str, Any]:
    """The CUDA-graph step's self-check (benchmark.training.step_check) on a synthetic group of
    both objectives and a dynamic and a fixed data condition: what `doctor` runs on a GPU."""
    configs = [RunConfig(data=d, model=m, k=k, layers=layers, seed=s, device=device)
               for d, m, s in (("mnist-dynamic", "iwae", 0), ("mnist-fixed", "vae", 1))]
    options = ExecutionOptions(numerics=numerics)
    state, members = synthetic_group(configs, options)
    factory, why_not = graph_step_factory(next(state.model.parameters()).device)
    if factory is None:
        return {"matches": False, "mismatch": why_not}
    spec = StepSpec(k=k, reduction=loss_reduction("code"), objectives=("iwae", "vae"),
                    numerics=numerics)
    with matmul_precision(options.allow_tf32):
        return self_check(state, members, spec, bound, EagerStep, factory)
