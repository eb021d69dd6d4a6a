"""The stage schedule: 8 stages of 3^i epochs at the code's rounded learning rates."""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.config import BATCH_SIZE, CONTINUATION_EPOCHS, SMOKE_STEPS, RunConfig

N_STAGES = 8
QUICK_STAGES = 4
CONTINUATION_LR = 1e-4


def stage_epochs(stage: int) -> int:
    return 3**stage


def stage_learning_rate(stage: int) -> float:
    """1e-4 * round(10^(1 - i/7), 1): 1.0e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4,
    1.0e-4 (the authors' code rounds; the paper's formula 1e-3 * 10^(-i/7) does not)."""
    return 1e-4 * round(10 ** (1 - stage / 7), 1)


@dataclass(frozen=True)
class Stage:
    index: int
    lr: float
    first_step: int  # global step index of the stage's first minibatch
    steps: int

    @property
    def end_step(self) -> int:
        return self.first_step + self.steps


@dataclass(frozen=True)
class Plan:
    """Where a run goes: its stages, and the global step where it stops."""

    steps_per_epoch: int
    stages: tuple[Stage, ...]
    planned_steps: int
    epochs_total: int  # the protocol's length, never shortened by cuts

    @property
    def planned_epochs(self) -> float:
        return self.planned_steps / self.steps_per_epoch

    def stage_at(self, step: int) -> Stage:
        for stage in self.stages:
            if step < stage.end_step:
                return stage
        return self.stages[-1]

    def stage_ends(self) -> list[int]:
        return [s.end_step for s in self.stages if s.end_step <= self.planned_steps]


def steps_per_epoch(n_train: int) -> int:
    """floor(N/20): a last partial minibatch is dropped, as in the authors' train.py."""
    return n_train // BATCH_SIZE


def protocol_stages(per_epoch: int, continuation: bool) -> list[Stage]:
    if continuation:  # paper Section 5.2: 3^7 more epochs at 1e-4
        return [Stage(0, CONTINUATION_LR, 0, CONTINUATION_EPOCHS * per_epoch)]
    stages, first = [], 0
    for i in range(N_STAGES):
        n = stage_epochs(i) * per_epoch
        stages.append(Stage(i, stage_learning_rate(i), first, n))
        first += n
    return stages


def make_plan(config: RunConfig, n_train: int) -> Plan:
    per_epoch = steps_per_epoch(n_train)
    if per_epoch == 0:
        raise ValueError(f"a training set of {n_train} examples is smaller than one minibatch")
    continuation = config.init_from is not None
    stages = protocol_stages(per_epoch, continuation)
    full = stages[-1].end_step
    limits = [full]
    if config.schedule == "quick":
        limits.append(stages[min(QUICK_STAGES, len(stages)) - 1].end_step)
    elif config.schedule == "smoke":
        limits.append(SMOKE_STEPS)
    if config.stages is not None:
        limits.append(stages[min(config.stages, len(stages)) - 1].end_step)
    if config.epochs is not None:
        limits.append(max(1, math.floor(config.epochs * per_epoch)))
    if config.steps is not None:
        limits.append(config.steps)
    epochs_total = full // per_epoch
    return Plan(per_epoch, tuple(stages), min(limits), epochs_total)
