"""The L_k log-likelihood estimator (k = 5000), per-example values, active units and pruning.

All estimates are on binary data. For dynamically binarized datasets the test set (and any
training subset used for evaluation) is binarized once with TEST_BINARIZATION_SEED, so every
model of a sweep is scored on the same binary images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from benchmark.model import IWAEModel

ACTIVE_UNIT_THRESHOLD = 1e-2  # the paper's 10^-2 on the variance of the q-mean
ACTIVE_UNIT_EXAMPLES = 500  # the first 500 training examples, as the authors' code
EVAL_SUBSET_SEED = 20151  # chooses the random --eval-n test subset: the same for every run
TRAIN_SUBSET_SEED = 20152  # chooses the training subset scored when a run is not `full`
EVAL_NOISE_SEED = 5000  # the importance samples of every evaluation
DEFAULT_ROWS_PER_CHUNK = 16384  # samples x examples per forward pass: bounds memory


def random_subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset (all indices when n is None or >= n_total).

    Never a prefix: the Larochelle-Murray test file is sorted by digit class."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.sort(rng.choice(n_total, size=n, replace=False))


@torch.no_grad()
def log_likelihood_estimates(
    model: IWAEModel,
    x: Tensor,
    k: int,
    generator: torch.Generator | None = None,
    rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
    unit_masks: list[Tensor] | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """L_k = log (1/k) sum_i w_i for every example, in float64. x: (M, N, 784) -> (M, N).

    Examples go through in batches and samples in chunks so that a forward pass holds at most
    about rows_per_chunk (sample, example) rows, whatever k is."""
    M, N, _ = x.shape
    out = np.empty((M, N), dtype=np.float64)
    batch = max(1, rows_per_chunk // k)
    k_chunk = min(k, max(1, rows_per_chunk // batch))
    for start in tqdm(range(0, N, batch), desc=f"L_{k}", unit="batch", leave=False,
                      disable=not show_progress, mininterval=2.0):
        xb = x[:, start:start + batch]
        pieces = []
        for k_start in range(0, k, k_chunk):
            kk = min(k_chunk, k - k_start)
            pieces.append(model.log_weights(xb, kk, generator, unit_masks).double())
        log_w = torch.cat(pieces, dim=1)  # (M, k, b)
        est = torch.logsumexp(log_w, dim=1) - math.log(k)
        out[:, start:start + xb.shape[1]] = est.cpu().numpy()
    return out


@dataclass(frozen=True)
class NLLEstimate:
    nll: float  # mean over examples of -L_k, positive nats
    se: float  # standard error of that mean over examples
    n: int


def summarise_nll(log_likelihoods: np.ndarray) -> NLLEstimate:
    values = -np.asarray(log_likelihoods, dtype=np.float64)
    n = values.size
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return NLLEstimate(float(values.mean()), se, n)


@torch.no_grad()
def unit_variances(model: IWAEModel, x: Tensor, generator: torch.Generator | None = None
                   ) -> list[np.ndarray]:
    """Per stochastic layer (bottom first), the population variance over the examples of the
    posterior mean of each unit: A_u = Cov_x(E_q[u]). Layer 2 at one sampled h1. x: (M, N, 784);
    each result (M, d)."""
    means = model.posterior_means(x, generator)
    return [m.double().var(dim=1, unbiased=False).cpu().numpy() for m in means]


def count_active_units(variances: list[np.ndarray], threshold: float = ACTIVE_UNIT_THRESHOLD
                       ) -> list[np.ndarray]:
    """Active if the variance is at least the threshold (the authors counted var < 0.01 as
    inactive). Each (M,) int."""
    return [(v >= threshold).sum(axis=-1) for v in variances]


def active_unit_masks(variances: list[np.ndarray], threshold: float = ACTIVE_UNIT_THRESHOLD
                      ) -> list[Tensor]:
    """Boolean keep-masks, (M, d) per layer, that prune every member's inactive units."""
    return [torch.from_numpy(v >= threshold) for v in variances]
