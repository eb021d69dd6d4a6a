"""AIS of many examples and BDMC of many simulated ones, batch by batch and resumable.

Examples go in batches of `batch` (every chain of every example of a batch moves in one batched
computation, all members of a model at once); each batch draws its noise from generators seeded
by (seed, batch index) only, so a resumed evaluation gives exactly the numbers of an
uninterrupted one, and every member the numbers it would get alone. Finished batches are kept in
a BatchStore until the whole evaluation is done.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from benchmark.evaluation.ais import (
    SCHEDULE_RADIUS,
    Progress,
    forward_estimate,
    run_ais,
)
from benchmark.evaluation.annealing_path import ModelPath
from benchmark.evaluation.batch_store import BatchStore
from benchmark.evaluation.bdmc import bdmc, simulate
from benchmark.evaluation.hmc import HMCSettings
from benchmark.models import IWAEModel
from benchmark.seeding import derive_seed, torch_generator

AIS_NOISE_SEED = 2017  # the chains' noise of every AIS and BDMC evaluation
# Defaults as Wu et al. 2017 ran AIS (their code: 10,000 sigmoid-scheduled distributions,
# 16 chains, 10 leapfrog steps; 100 simulated examples for BDMC).
DEFAULT_STEPS = 10_000
DEFAULT_CHAINS = 16
DEFAULT_LEAPFROG = 10
DEFAULT_BATCH = 100
BDMC_DEFAULT_STEPS = (100, 1000, 10_000)
BDMC_DEFAULT_SIMULATED = 100


@dataclass(frozen=True)
class AISSettings:
    steps: int = DEFAULT_STEPS  # T, the number of intermediate distributions after the base
    chains: int = DEFAULT_CHAINS
    leapfrog: int = DEFAULT_LEAPFROG
    start: str = "prior"
    batch: int = DEFAULT_BATCH  # examples per batched computation (fixes the noise layout)
    seed: int = AIS_NOISE_SEED

    @property
    def hmc(self) -> HMCSettings:
        return HMCSettings(leapfrog=self.leapfrog)

    def to_dict(self) -> dict:
        hmc = asdict(self.hmc)
        return {"intermediate": self.steps, "chains": self.chains, "leapfrog": self.leapfrog,
                "start": self.start, "batch": self.batch, "seed": self.seed,
                "schedule": f"sigmoid, radius {SCHEDULE_RADIUS:g}",
                "hmc": {k: v for k, v in hmc.items() if k != "leapfrog"}}


def batch_generators(members: int, device: torch.device, seed: int, purpose: str,
                     *extra: int) -> list[torch.Generator]:
    """One generator per member, all seeded alike: a member's draws never depend on the others."""
    return [torch_generator(derive_seed(seed, purpose, *extra), device) for _ in range(members)]


def _batches(n: int, size: int) -> list[tuple[int, slice]]:
    return list(enumerate(slice(s, min(s + size, n)) for s in range(0, n, size)))


def _numpy(t: Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


@dataclass(frozen=True)
class AISOutcome:
    log_weights: np.ndarray  # (M, C, N) float64
    acceptance: np.ndarray  # (M, C, N) fraction of each chain's transitions accepted
    final_step: np.ndarray  # (M, C, N) each chain's step size at the end
    seconds: float  # compute time of all batches, those of earlier interrupted calls included
    resumed_batches: int

    @property
    def log_likelihood(self) -> np.ndarray:
        """(M, N): log mean_c w_c per example."""
        return _numpy(forward_estimate(torch.from_numpy(self.log_weights)))


@torch.no_grad()
def evaluate_ais(model: IWAEModel, x: Tensor, settings: AISSettings,
                 store: BatchStore | None = None, progress: Progress | None = None
                 ) -> AISOutcome:
    """Forward AIS of every example of x (M, N, 784) under every member of model."""
    members, n, _ = x.shape
    parts: list[dict[str, np.ndarray]] = []
    resumed = 0
    for index, rows in _batches(n, settings.batch):
        key = f"batch{index:05d}"
        saved = store.load(key) if store is not None else None
        if saved is None:
            started = time.perf_counter()
            path = ModelPath(model, x[:, rows].contiguous(), settings.chains, settings.start)
            gens = batch_generators(members, x.device, settings.seed, "ais", index)
            result = run_ais(path, settings.steps, settings.hmc, gens, progress)
            saved = {"log_weights": _numpy(result.log_weights),
                     "acceptance": _numpy(result.acceptance),
                     "final_step": _numpy(result.final_step),
                     "seconds": np.array(time.perf_counter() - started)}
            if store is not None:
                store.save(key, saved)
        else:
            resumed += 1
            if progress is not None:
                progress(settings.steps - 1)
        parts.append(saved)
    return AISOutcome(
        log_weights=np.concatenate([p["log_weights"] for p in parts], axis=2),
        acceptance=np.concatenate([p["acceptance"] for p in parts], axis=2),
        final_step=np.concatenate([p["final_step"] for p in parts], axis=2),
        seconds=float(sum(float(p["seconds"]) for p in parts)), resumed_batches=resumed)


@dataclass(frozen=True)
class BDMCRow:
    steps: int
    lower: np.ndarray  # (M, n) forward AIS log p(x) of each simulated example
    upper: np.ndarray  # (M, n) reverse AIS log p(x)
    forward_acceptance: np.ndarray  # (M, n) mean over chains
    reverse_acceptance: np.ndarray  # (M, n)
    seconds: float


@torch.no_grad()
def simulated_examples(model: IWAEModel, n: int, seed: int = AIS_NOISE_SEED
                       ) -> tuple[Tensor, Tensor]:
    """The simulated data of BDMC: the same n exact joint draws for every T."""
    device = model.likelihood.logits.bias.device
    return simulate(model, n, batch_generators(model.members, device, seed, "bdmc"))


@torch.no_grad()
def evaluate_bdmc(model: IWAEModel, n: int, steps: Sequence[int], settings: AISSettings,
                  store: BatchStore | None = None, progress: Progress | None = None
                  ) -> list[BDMCRow]:
    """Both BDMC bounds on n simulated examples, for every number of distributions in steps."""
    x, h = simulated_examples(model, n, settings.seed)
    rows = []
    for T in steps:
        parts = []
        for index, batch in _batches(n, settings.batch):
            key = f"T{T}_batch{index:05d}"
            saved = store.load(key) if store is not None else None
            if saved is None:
                started = time.perf_counter()
                gens = batch_generators(model.members, x.device, settings.seed, "bdmc", T, index)
                sandwich = bdmc(model, x[:, batch].contiguous(), h[:, batch].contiguous(), T,
                                settings.chains, settings.hmc, gens, settings.start, progress)
                saved = {"lower": _numpy(sandwich.lower), "upper": _numpy(sandwich.upper),
                         "forward_acceptance": _numpy(sandwich.forward_acceptance.mean(1)),
                         "reverse_acceptance": _numpy(sandwich.reverse_acceptance.mean(1)),
                         "seconds": np.array(time.perf_counter() - started)}
                if store is not None:
                    store.save(key, saved)
            elif progress is not None:
                progress(2 * (T - 1))
            parts.append(saved)
        rows.append(BDMCRow(
            steps=T, **{name: np.concatenate([p[name] for p in parts], axis=1)
                        for name in ("lower", "upper", "forward_acceptance",
                                     "reverse_acceptance")},
            seconds=float(sum(float(p["seconds"]) for p in parts))))
    return rows
