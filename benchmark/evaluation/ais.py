"""Annealed importance sampling (Neal 2001) of log p(x), forward and reverse.

Forward AIS starts from exact draws of the base f_0 and moves each chain through
f_{beta_1}, ..., f_{beta_T} = p(x, h), one HMC transition per intermediate distribution. Its
log-weight

    log w = sum_{t=1..T} log f_t(h_{t-1}) - log f_{t-1}(h_{t-1})
          = sum_{t=1..T} (beta_t - beta_{t-1}) increment(h_{t-1})

has E[w] = Z_T / Z_0 = p(x), so log mean_c w_c over C chains is a stochastic lower bound on
log p(x) (Jensen) that tightens as T and C grow. The transition after the last weight update
would not change w, so T distributions cost T - 1 transitions.

Reverse AIS (the upper half of BDMC, Grosse et al. 2015) runs the same schedule backwards from an
exact draw of f_T, the posterior; its weights have E[w] = Z_0 / Z_T = 1 / p(x), so
-log mean_c w_c is a stochastic upper bound. Exact posterior draws exist for data simulated
from the model itself (benchmark.evaluation.bdmc).

The schedule is the sigmoid schedule of Grosse et al. 2013 ("Annealing between distributions by
averaging moments", Section 6.2), which Wu et al. 2017 use: T + 1 evenly spaced points in
[-radius, radius] pushed through the logistic sigmoid and rescaled to [0, 1], so that more
distributions sit near beta = 0 and 1, where f_beta changes fastest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from benchmark.evaluation.annealing_path import AnnealingPath
from benchmark.evaluation.hmc import HMCSettings, hmc_transition, initial_state
from benchmark.models import Generators

SCHEDULE_RADIUS = 4.0


def sigmoid_schedule(steps: int, radius: float = SCHEDULE_RADIUS) -> np.ndarray:
    """beta_0 = 0 < beta_1 < ... < beta_T = 1 (T = steps), float64."""
    if steps < 1:
        raise ValueError("AIS needs at least one intermediate distribution")
    if steps == 1:
        return np.array([0.0, 1.0])
    s = 1.0 / (1.0 + np.exp(-np.linspace(-radius, radius, steps + 1)))
    betas = (s - s[0]) / (s[-1] - s[0])
    betas[0], betas[-1] = 0.0, 1.0  # exactly, whatever the rounding
    return betas


@dataclass(frozen=True)
class AnnealingResult:
    log_weights: Tensor  # (M, C, B) float64
    acceptance: Tensor  # (M, C, B) float64: fraction of each chain's transitions accepted
    final_step: Tensor  # (M, C, B): each chain's step size at the end
    final_h: Tensor  # (M, C, B, d)


Progress = Callable[[int], None]  # called with the number of transitions just made


def anneal(path: AnnealingPath, betas: np.ndarray, h: Tensor, settings: HMCSettings,
           generator: Generators, progress: Progress | None = None) -> AnnealingResult:
    """Move chains that start at exact draws h of f_{betas[0]} along betas (increasing:
    forward AIS; decreasing: reverse AIS), accumulating the log-weights in float64."""
    state = initial_state(path, h, settings)
    log_w = torch.zeros(state.log_base.shape, dtype=torch.float64, device=h.device)
    last = len(betas) - 1
    for t in range(1, last + 1):
        log_w += float(betas[t] - betas[t - 1]) * state.increment.double()
        if t < last:
            state = hmc_transition(path, state, float(betas[t]), settings, generator)
            if progress is not None:
                progress(1)
    return AnnealingResult(log_weights=log_w, acceptance=state.acceptance_rate(),
                           final_step=state.step.squeeze(-1), final_h=state.h)


def log_mean_exp(log_w: Tensor, dim: int) -> Tensor:
    return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])


def forward_estimate(log_weights: Tensor) -> Tensor:
    """log p(x) estimates from forward chains: (M, C, B) -> (M, B), a stochastic lower bound."""
    return log_mean_exp(log_weights, dim=1)


def reverse_estimate(log_weights: Tensor) -> Tensor:
    """log p(x) estimates from reverse chains: (M, C, B) -> (M, B), a stochastic upper bound."""
    return -log_mean_exp(log_weights, dim=1)


def chain_standard_error(log_weights: Tensor) -> Tensor:
    """Monte-Carlo standard error of log mean_c w_c over the C chains, per example: (M, B).

    Delta method: with r_c = w_c / mean(w), Var(log mean w) ~ Var(r) / C. It is itself an
    estimate from C chains, and understates the error when the weights are heavy-tailed."""
    C = log_weights.shape[1]
    if C < 2:
        return torch.full_like(log_weights[:, 0], float("nan"))
    r = torch.exp(log_weights - log_weights.logsumexp(dim=1, keepdim=True)) * C
    return torch.sqrt(r.var(dim=1) / C)


def run_ais(path: AnnealingPath, steps: int, settings: HMCSettings, generator: Generators,
            progress: Progress | None = None) -> AnnealingResult:
    """Forward AIS with T = steps sigmoid-scheduled distributions from exact base draws."""
    return anneal(path, sigmoid_schedule(steps), path.sample_base(generator), settings,
                  generator, progress)


def run_reverse_ais(path: AnnealingPath, steps: int, h_posterior: Tensor, settings: HMCSettings,
                    generator: Generators, progress: Progress | None = None) -> AnnealingResult:
    """Reverse AIS from exact posterior draws h_posterior (M, C, B, d) down to the base."""
    return anneal(path, sigmoid_schedule(steps)[::-1].copy(), h_posterior, settings, generator,
                  progress)
