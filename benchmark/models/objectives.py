"""Training objectives on log-weights (M, k, B): the VAE-k, IWAE-k, MIWAE(M, K) and CIWAE(beta)
bounds per example. Gradient estimators other than autograd through these bounds are in
benchmark.models.estimators."""

from __future__ import annotations

import math

import torch
from torch import Tensor

OBJECTIVES = ("vae", "iwae")


def vae_bound(log_w: Tensor) -> Tensor:
    """The k-sample Monte-Carlo ELBO: the mean of the k log-weights (every term sampled, no
    analytic KL, as the authors did). (M, k, B) -> (M, B)."""
    return log_w.mean(dim=1)


def iwae_bound(log_w: Tensor) -> Tensor:
    """L_k = log (1/k) sum_i w_i, with the max shift of logsumexp. (M, k, B) -> (M, B).

    Its gradient is sum_i w~_i grad log w_i with normalised weights w~ (paper eq. 14)."""
    return torch.logsumexp(log_w, dim=1) - math.log(log_w.shape[1])


def miwae_bound(log_w: Tensor, m: int) -> Tensor:
    """MIWAE(M, K) (Rainforth et al. 2018): the mean of M independent IWAE-K bounds, on M x K
    log-weights per example. Sample s belongs to bound s // K, i.e. the M x K samples are M
    consecutive blocks of K. (M_members, M K, B) -> (M_members, B)."""
    members, samples, batch = log_w.shape
    if samples % m:
        raise ValueError(f"{samples} samples do not split into {m} bounds")
    blocks = log_w.view(members, m, samples // m, batch)  # (members, M, K, B)
    return (torch.logsumexp(blocks, dim=2) - math.log(samples // m)).mean(dim=1)


def ciwae_bound(log_w: Tensor, beta: float) -> Tensor:
    """CIWAE(beta) (Rainforth et al. 2018): beta ELBO + (1 - beta) IWAE on the same k samples.
    (M, k, B) -> (M, B)."""
    return beta * vae_bound(log_w) + (1.0 - beta) * iwae_bound(log_w)


def bound(model: str, log_w: Tensor) -> Tensor:
    if model == "vae":
        return vae_bound(log_w)
    if model == "iwae":
        return iwae_bound(log_w)
    raise ValueError(f"unknown objective {model!r}; expected one of {OBJECTIVES}")


def training_loss(per_example_bound: Tensor, reduction: str) -> Tensor:
    """The scalar to minimise. `sum`: gradients summed over the minibatch, as the authors' code;
    `mean`: averaged, as torch convention and the paper's text suggest. Members are summed: their
    parameters are disjoint, so each member receives exactly its own gradient."""
    if reduction == "sum":
        return -per_example_bound.sum()
    if reduction == "mean":
        return -per_example_bound.mean(dim=-1).sum()
    raise ValueError(f"unknown reduction {reduction!r}")
