"""The suite's side of the lockstep: its own training step, recorded.

SuiteRun sets a run up exactly as `train` does (benchmark.training.run_setup.new_member, the
stacked state, the EagerStep of the exact numerics, flush-to-zero on the CPU) and steps it,
setting each step's learning rate from the run's plan as the training loop does. Every draw it
makes is recorded (benchmark.oracle.capture) and laid out for the authors' graph; parameters
and both Adam moments can be read at any step under the authors' names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.models import bound
from benchmark.oracle.capture import DrawRecorder
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

    def __init__(self, config: RunConfig, data: DataCache) -> None:
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

    @property
    def step(self) -> int:
        return self.member.step

    def continue_from(self, payload: dict[str, Any]) -> None:
        """--init-from: the parent's parameters, optimizer state and generators, not its
        position (what benchmark.training.run_setup.resume_member does for a continuation)."""
        self.state.restore(0, self.member, payload, position=False, global_rng=True)

    def payload(self) -> dict[str, Any]:
        return self.state.payload(0, self.member)

    def train(self, steps: int, on_step: StepCallback) -> None:
        """`steps` more steps; on_step(step, draws in the authors' slots) after each."""
        current_lr = None
        with flush_denormals(True):
            for _ in range(steps):
                lr = self.member.plan.stage_at(self.member.step).lr
                if lr != current_lr:
                    self.state.optimizer.set_learning_rates([lr])
                    current_lr = lr
                with DrawRecorder() as recorder:
                    bounds = self._step([self.member.step])
                self.member.step += 1
                self.last_bounds = bounds[0].numpy().astype(np.float64)
                on_step(self.member.step,
                        step_slots(recorder.draws, self.dynamic, self.config.layers))

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
