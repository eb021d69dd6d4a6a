"""Training objectives on log-weights (M, k, B): the VAE-k, IWAE-k, MIWAE(M, K) and CIWAE(beta)
bounds per example, and RWS's terms. Each is named by its definition (benchmark.
builtin_objectives), which says how runs, the command line and the report know it. Gradient
estimators other than autograd through these bounds are in benchmark.models.estimators."""

from __future__ import annotations

import importlib
import inspect
import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from benchmark.definitions import FunctionRef, find_objective, paper_objectives


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


def rws_terms(log_joint: Tensor, log_q: Tensor, log_w: Tensor) -> tuple[Tensor, Tensor, None]:
    """Reweighted wake-sleep (Bornschein & Bengio 2015), on terms computed with the samples
    stopped (so log_joint depends on theta only and log_q on phi only): the IWAE-k bound
    reported; the surrogate is IWAE's for the decoder plus the wake-phase update
    sum_i w~_i log q(h_i|x) for the encoder."""
    decoder = iwae_bound(log_joint - log_q.detach())
    wake = (torch.softmax(log_w.detach(), dim=1) * log_q).sum(dim=1)
    return iwae_bound(log_w).detach(), decoder + wake, None


# Each definition's function and the keywords it takes, worked out on first use: a plain dict
# rather than functools.cache, which torch.compile would trace through at every compiled step.
_RESOLVED: dict[FunctionRef, tuple[Callable[..., Any], frozenset[str] | None]] = {}


def resolve(ref: FunctionRef) -> tuple[Callable[..., Any], frozenset[str] | None]:
    """A definition's function (the callable itself, or "package.module:function" imported)
    and the keyword names it takes (None: any, it has **kwargs), once per function, not at
    every training step."""
    if ref not in _RESOLVED:
        _RESOLVED[ref] = _resolved(ref)
    return _RESOLVED[ref]


def _resolved(ref: FunctionRef) -> tuple[Callable[..., Any], frozenset[str] | None]:
    function = ref
    if not callable(ref):
        module, _, name = ref.partition(":")
        function = getattr(importlib.import_module(module), name)
    signature = inspect.signature(function).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature):
        return function, None
    return function, frozenset(p.name for p in signature)


def call(ref: FunctionRef, *tensors: Tensor, params: Mapping[str, Any]) -> Any:
    """A definition's function on the tensors, given the objective's parameters that it names
    (all of them when it takes **kwargs): PIWAE's decoder bound is IWAE's, which takes no M."""
    function, names = resolve(ref)
    accepted = params if names is None else {n: v for n, v in params.items() if n in names}
    return function(*tensors, **accepted)


def bound(model: str, log_w: Tensor, **params: Any) -> Tensor:
    """The bound per example of the objective `model` (its definition's function)."""
    definition = find_objective(model)
    if definition is None:
        raise ValueError(f"unknown objective {model!r}; expected one of {paper_objectives()}")
    return call(definition.bound, log_w, params=params)


def training_loss(per_example_bound: Tensor, reduction: str) -> Tensor:
    """The scalar to minimise. `sum`: gradients summed over the minibatch, as the authors' code;
    `mean`: averaged, as torch convention and the paper's text suggest. Members are summed: their
    parameters are disjoint, so each member receives exactly its own gradient."""
    if reduction == "sum":
        return -per_example_bound.sum()
    if reduction == "mean":
        return -per_example_bound.mean(dim=-1).sum()
    raise ValueError(f"unknown reduction {reduction!r}")
