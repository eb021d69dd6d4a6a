"""The state of a group of runs trained together: one stacked model and optimizer, and per member
everything a single run owns (its configuration, plan, run directory, random generators, data
order, position, learning curve).

A member is exactly a single run: it is initialised as `train_run` would initialise it alone, it
draws its noise and binarizations from its own generators, and its checkpoints are single-run
checkpoints (the slices of the stacked tensors, in the single-run formats). A group of one is the
single run itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import Binarizer, Dataset, decoder_bias_mean, make_binarizer
from benchmark.evaluation import EvaluationInputs
from benchmark.models import IWAEModel
from benchmark.records import CurveRow
from benchmark.seeding import derive_seed, torch_generator
from benchmark.training.schedule import Plan
from benchmark.training.stacked_adam import MemberAdam


@dataclass
class Member:
    """One run of a group: what it is, where it stands, and its own random streams."""

    config: RunConfig
    run_dir: Path
    plan: Plan
    dataset: Dataset
    source: Any  # benchmark.training.loop.MinibatchSource
    inputs: EvaluationInputs
    inputs_key: tuple  # members with equal keys are evaluated on the same examples
    curve_x: torch.Tensor  # (n, 784) on the device: the learning-curve subset
    common: dict[str, Any]  # run_id, sweep, env, n_train: the fixed parts of its record
    noise: torch.Generator
    binarizer: Binarizer
    log_points: frozenset[int] = frozenset()  # steps with a learning-curve row (and the end)
    stage_end_points: frozenset[int] = frozenset()
    step: int = 0
    train_seconds: float = 0.0
    curve: list[CurveRow] = field(default_factory=list)
    bound_sum: float = 0.0  # the training bounds since the last curve row, summed
    bound_count: int = 0
    last_checkpoint: float = 0.0
    numerics_segments: list[dict[str, Any]] | None = None  # execution.numerics_segments
    threads: int | None = None  # torch threads, fixed for the run's life (None: not started)
    resumed_from: list[int] = field(default_factory=list)  # the checkpoint steps resumed from
    step_paths: list[dict[str, Any]] = field(default_factory=list)  # step_check.record_step_path
    record: dict[str, Any] | None = None  # the final record once the member has left

    @property
    def done(self) -> bool:
        return self.step >= self.plan.planned_steps


def member_generators(config: RunConfig, dynamic: bool, device: torch.device
                      ) -> tuple[torch.Generator, Binarizer]:
    """A run's noise generator and binarizer, seeded from its seed alone."""
    noise = torch_generator(derive_seed(config.seed, "noise"), device)
    binarizer = make_binarizer(dynamic, derive_seed(config.seed, "binarize"), device)
    return noise, binarizer


def initial_member_model(config: RunConfig, dataset: Dataset) -> IWAEModel:
    """The model a single run starts from (before any checkpoint is loaded), on the CPU."""
    model = IWAEModel(config.layers, members=1)
    bias = decoder_bias_mean(dataset.train)
    if config.fidelity == "code":
        model.init_authors(bias)
    else:
        model.init_glorot([torch_generator(derive_seed(config.seed, "init"))], bias)
    return model


class StackedState:
    """The group's stacked model and optimizer, and the moves between members and the stack."""

    def __init__(self, model: IWAEModel, optimizer: MemberAdam) -> None:
        self.model = model
        self.optimizer = optimizer

    @classmethod
    def fresh(cls, members: Sequence[Member], device: torch.device, fused: bool,
              compile_cpu: bool = True) -> StackedState:
        configs = [m.config for m in members]
        layers, fidelity = configs[0].layers, configs[0].fidelity
        model = IWAEModel(layers, members=len(members))
        with torch.no_grad():
            for i, member in enumerate(members):
                alone = initial_member_model(member.config, member.dataset)
                for mine, theirs in zip(model.parameters(), alone.parameters(), strict=True):
                    mine[i].copy_(theirs[0])
        model.to(device)
        lrs = [m.plan.stage_at(m.step).lr for m in members]
        return cls(model, MemberAdam(list(model.parameters()), len(members), fidelity, lrs,
                                     fused=fused, compile_cpu=compile_cpu))

    # --- single-run checkpoints in and out ------------------------------------------------------
    def member_model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Member i's parameters as an IWAEModel(members=1) state_dict."""
        return {name: p[i:i + 1].detach().clone() for name, p in self.model.named_parameters()}

    def payload(self, i: int, member: Member) -> dict[str, Any]:
        """Member i's checkpoint: exactly what a single run at this point would save."""
        return {
            "config": member.config.to_dict(),
            "step": member.step,
            "model": self.member_model_state(i),
            "optimizer": self.optimizer.member_state_dict(i),
            "rng": {
                "noise": member.noise.get_state(),
                "binarizer": member.binarizer.state_dict(),
                "torch_cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
            },
            "train_seconds": member.train_seconds,
            "curve": [row.as_dict() for row in member.curve],
            "bound_sum": member.bound_sum,
            "bound_count": member.bound_count,
            "numerics_segments": member.numerics_segments,
            "threads": member.threads,
            "resumed_from": list(member.resumed_from),
            "step_paths": member.step_paths,
        }

    @torch.no_grad()
    def restore(self, i: int, member: Member, payload: dict[str, Any], *, position: bool = True,
                global_rng: bool = False) -> None:
        """Load a single-run checkpoint into member i; with position, also where it stood.

        global_rng restores torch's and numpy's global generators too, as a single run does
        (nothing in training draws from them; a group of several skips it, since its members'
        saved global states would overwrite each other)."""
        state = payload["model"]
        for name, p in self.model.named_parameters():
            p[i].copy_(state[name][0])
        self.optimizer.load_member_state_dict(i, payload["optimizer"])
        rng = payload["rng"]
        noise = rng["noise"]
        member.noise.set_state(noise.cpu() if hasattr(noise, "cpu") else noise)
        member.binarizer.load_state_dict(rng["binarizer"])
        if global_rng:
            torch.set_rng_state(rng["torch_cpu"])
            if rng.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])
            np.random.set_state(rng["numpy"])
        if position:  # (.get: checkpoints written before these keys existed lack them)
            member.step = int(payload["step"])
            member.train_seconds = float(payload["train_seconds"])
            member.curve = [CurveRow(**row) for row in payload["curve"]]
            member.bound_sum = float(payload.get("bound_sum", 0.0))
            member.bound_count = int(payload.get("bound_count", 0))
            member.numerics_segments = payload.get("numerics_segments")
            member.threads = payload.get("threads")
            member.resumed_from = [*payload.get("resumed_from", []), member.step]
            member.step_paths = [dict(e) for e in payload.get("step_paths") or []]

    def nonfinite_parameter(self, i: int) -> str | None:
        """The name of a parameter of member i holding a NaN or an infinity, or None: one host
        sync for all of them, so it can run before every checkpoint."""
        params = list(self.model.named_parameters())
        with torch.no_grad():
            finite = torch.stack([torch.isfinite(p[i]).all() for _, p in params])
            if bool(finite.all()):
                return None
        return params[int((~finite).nonzero()[0])][0]

    # --- members leaving ------------------------------------------------------------------------
    @torch.no_grad()
    def subset_model(self, keep: Sequence[int]) -> IWAEModel:
        """A model of the members `keep` only (copies; the stack is untouched)."""
        if list(keep) == list(range(self.model.members)):
            return self.model
        device = next(self.model.parameters()).device
        model = IWAEModel(self.model.n_layers, members=len(keep), arch=self.model.arch)
        model.to(device)
        index = torch.tensor(list(keep), device=device)
        for mine, theirs in zip(model.parameters(), self.model.parameters(), strict=True):
            mine.copy_(theirs.index_select(0, index))
        return model

    def select(self, keep: Sequence[int]) -> StackedState:
        """The state of the group made of the members `keep`."""
        model = self.subset_model(keep)
        if model is self.model:
            return self
        return StackedState(model, self.optimizer.select(keep, list(model.parameters())))
