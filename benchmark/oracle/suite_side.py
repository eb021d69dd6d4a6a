"""The suite's side of the lockstep: its own training step, recorded.

SuiteRun sets a run up exactly as `train` does (benchmark.training.run_setup.new_member, the
stacked state, the EagerStep of the exact numerics, flush-to-zero on the CPU) and steps it,
setting each step's learning rate from the run's plan as the training loop does. Every draw it
makes is recorded (benchmark.oracle.capture) and laid out for the authors' graph; parameters
and both Adam moments can be read at any step under the authors' names.

A float64 twin (SuiteRun(..., float64=True), stepped by the float32 run's train(twin=...)) runs
the same code on the same draws with its parameters, optimizer state and inputs in float64:
how far the suite's float32 result is from it is what rounding makes of the suite's side, as
the authors' float64 run measures it for theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.models import bound
from benchmark.oracle.capture import Draw, DrawRecorder, DrawReplay
from benchmark.oracle.layout import authors_name, step_slots
from benchmark.training import (
    DataCache,
    EagerStep,
    ExecutionOptions,
    StackedState,
    StepSpec,
    flush_denormals,
    loss_reduction,
    new_member,
)

StepCallback = Callable[[int, dict[str, np.ndarray]], None]  # (step done, its draws)


class SuiteRun:
    """One run of the suite on the CPU, exact numerics, stepped one step at a time."""

    def __init__(self, config: RunConfig, data: DataCache, float64: bool = False) -> None:
        device = torch.device("cpu")
        options = ExecutionOptions()
        self.config = config
        self.member = new_member(config, Path("."), None, None, data, device, options, 1)
        self.state = StackedState.fresh([self.member], device, fused=False)
        spec = StepSpec(k=config.k, reduction=loss_reduction(config.fidelity),
                        objectives=(config.model,))
        self._step = EagerStep(self.state, [self.member], spec, bound)
        self.dynamic = self.member.dataset.dynamic
        self.last_bounds: np.ndarray | None = None
        self._current_lr: float | None = None
        self.float_type = torch.float64 if float64 else torch.float32
        if float64:
            self._to_float64()

    def _to_float64(self) -> None:
        """Parameters, Adam's moments and the training set in float64 (the initial values are the
        float32 run's, exactly); replay() makes the rest of each step float64."""
        self.state.model.double()  # in place: the optimizer keeps the same Parameter objects
        optimizer = self.state.optimizer
        optimizer.m = [m.double() for m in optimizer.m]
        optimizer.v = [v.double() for v in optimizer.v]
        self.member.source.data = self.member.source.data.double()

    def adopt_state(self, other: SuiteRun) -> None:
        """Take another run's parameters, moments and timestep (a continuation's float64 twin
        starts where its parent's twin stopped)."""
        with torch.no_grad():
            mine, theirs = self.state, other.state
            for p, q in zip(mine.model.parameters(), theirs.model.parameters(), strict=True):
                p.copy_(q)
            for dst, src in ((mine.optimizer.m, theirs.optimizer.m),
                             (mine.optimizer.v, theirs.optimizer.v)):
                for d, s in zip(dst, src, strict=True):
                    d.copy_(s)
            mine.optimizer.taken = list(theirs.optimizer.taken)

    @property
    def step(self) -> int:
        return self.member.step

    def continue_from(self, payload: dict[str, Any]) -> None:
        """--init-from: the parent's parameters, optimizer state and generators, not its
        position (what benchmark.training.run_setup.resume_member does for a continuation)."""
        self.state.restore(0, self.member, payload, position=False, global_rng=True)

    def payload(self) -> dict[str, Any]:
        return self.state.payload(0, self.member)

    def train(self, steps: int, on_step: StepCallback, twin: SuiteRun | None = None) -> None:
        """`steps` more steps; on_step(step, draws in the authors' slots) after each, when the
        twin (if any) has taken the same step on the same draws."""
        for _ in range(steps):
            with DrawRecorder() as recorder:
                self._one_step()
            if twin is not None:
                twin.replay(recorder.draws)
            on_step(self.member.step,
                    step_slots(recorder.draws, self.dynamic, self.config.layers))

    def replay(self, draws: list[Draw]) -> None:
        """One step on another run's recorded draws instead of this run's own."""
        with DrawReplay(draws, promote_to=self.float_type):
            self._one_step()

    def _one_step(self) -> None:
        lr = self.member.plan.stage_at(self.member.step).lr
        if lr != self._current_lr:
            self.state.optimizer.set_learning_rates([lr])
            self._current_lr = lr
        with flush_denormals(True):
            bounds = self._step([self.member.step])
        self.member.step += 1
        self.last_bounds = bounds[0].numpy().astype(np.float64)

    def minibatch_rows(self, step: int) -> np.ndarray:
        return self.member.source.indices(step)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """param/<name>, m/<name>, v/<name> (authors' names, their shapes) and t, their
        timestep (it starts at 1 and counts the steps taken)."""
        out: dict[str, np.ndarray] = {}
        optimizer = self.state.optimizer
        named = list(self.state.model.named_parameters())
        for (name, p), m, v in zip(named, optimizer.m, optimizer.v, strict=True):
            theirs = authors_name(name, self.config.layers)
            out["param/" + theirs] = p.detach()[0].numpy().copy()
            out["m/" + theirs] = -m[0].numpy()  # their m averages the ascent direction
            out["v/" + theirs] = v[0].numpy().copy()
        out["t"] = np.asarray(optimizer.taken[0] + 1, dtype=np.float64)
        return out

    def gradients(self) -> dict[str, np.ndarray]:
        """grad/<name> of the objective to maximise (the authors' sign), from the last step."""
        return {"grad/" + authors_name(name, self.config.layers): -p.grad[0].numpy().copy()
                for name, p in self.state.model.named_parameters()}
