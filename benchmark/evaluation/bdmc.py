"""Bidirectional Monte Carlo (Grosse, Ghahramani and Adams 2015) on data simulated from the model.

For an exact joint draw (h, x) ~ p(h) p(x | h), h is an exact draw from the posterior p(h | x).
Forward AIS on x gives a stochastic lower bound on log p(x); reverse AIS started at h gives a
stochastic upper bound. Their gap bounds the error of forward AIS with that schedule on data
like the simulated data, so a user sees how many intermediate distributions the model needs
(Wu et al. 2017, Section 4.2). All C reverse chains of an example start from its one exact
posterior draw; each is an unbiased estimate of 1 / p(x), and so is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.evaluation.ais import (
    Progress,
    forward_estimate,
    reverse_estimate,
    run_ais,
    run_reverse_ais,
)
from benchmark.evaluation.annealing_path import ModelPath
from benchmark.evaluation.hmc import HMCSettings
from benchmark.models import Generators, IWAEModel, standard_normal


@torch.no_grad()
def simulate(model: IWAEModel, n: int, generator: Generators) -> tuple[Tensor, Tensor]:
    """n exact joint draws per member: binary x (M, n, 784) and h (M, n, d), the latent layers
    concatenated bottom first as the annealing path holds them."""
    bias = model.likelihood.logits.bias
    sizes = model.arch.latent_sizes
    layers = [standard_normal((model.members, n, sizes[-1]), generator, bias.device, bias.dtype)]
    for block in reversed(model.prior_blocks):
        mean, log_sigma = block(layers[0])
        noise = standard_normal(tuple(mean.shape), generator, bias.device, bias.dtype)
        layers.insert(0, mean + torch.exp(log_sigma) * noise)
    probabilities = torch.sigmoid(model.likelihood(layers[0]))
    x = _bernoulli(probabilities, generator)
    return x, torch.cat(layers, dim=-1)


def _bernoulli(probabilities: Tensor, generator: Generators) -> Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return torch.bernoulli(probabilities, generator=generator)
    return torch.stack([torch.bernoulli(p, generator=g)
                        for p, g in zip(probabilities, generator, strict=True)])


@dataclass(frozen=True)
class Sandwich:
    """Both bounds for every simulated example, and the chains' acceptance rates."""

    lower: Tensor  # (M, B) forward AIS estimate of log p(x)
    upper: Tensor  # (M, B) reverse AIS estimate of log p(x)
    forward_log_weights: Tensor  # (M, C, B)
    reverse_log_weights: Tensor  # (M, C, B)
    forward_acceptance: Tensor  # (M, C, B)
    reverse_acceptance: Tensor  # (M, C, B)


def bdmc(model: IWAEModel, x: Tensor, h: Tensor, steps: int, chains: int, settings: HMCSettings,
         generator: Generators, start: str = "prior", progress: Progress | None = None
         ) -> Sandwich:
    """Forward and reverse AIS with `steps` distributions on simulated x (M, B, 784) whose exact
    posterior draws are h (M, B, d)."""
    path = ModelPath(model, x, chains, start)
    forward = run_ais(path, steps, settings, generator, progress)
    exact = h.unsqueeze(1).expand(-1, chains, -1, -1).contiguous()  # (M, C, B, d)
    reverse = run_reverse_ais(path, steps, exact, settings, generator, progress)
    return Sandwich(lower=forward_estimate(forward.log_weights),
                    upper=reverse_estimate(reverse.log_weights),
                    forward_log_weights=forward.log_weights,
                    reverse_log_weights=reverse.log_weights,
                    forward_acceptance=forward.acceptance, reverse_acceptance=reverse.acceptance)
