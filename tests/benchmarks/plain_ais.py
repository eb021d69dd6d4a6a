"""The plain AIS baseline: the reference algorithm written example by example, the way a direct
port of Wu et al.'s AIS code would run it. One example at a time (its C chains batched), the
energy -(log p(h) + beta log p(x|h)) and its gradient recomputed by autograd at every leapfrog
position (L + 1 evaluations per transition), one step size for all chains of the example adapted
on their mean acceptance, nn.Linear layers (PlainIWAE)."""

from __future__ import annotations

import math

import numpy as np
import torch
from plain import PlainIWAE
from torch import Tensor

from benchmark.evaluation.ais import sigmoid_schedule


def _log_prior_and_likelihood(model: PlainIWAE, x: Tensor, h: Tensor, sizes: list[int]
                              ) -> tuple[Tensor, Tensor]:
    """h holds all stochastic layers side by side (h1 first), as the AIS state does."""
    return model.log_prior_and_likelihood(x, list(torch.split(h, sizes, dim=-1)))


def _energy_and_grad(model: PlainIWAE, x: Tensor, h: Tensor, beta: float, sizes: list[int]
                     ) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        log_p, log_px = _log_prior_and_likelihood(model, x, h, sizes)
        energy = -(log_p + beta * log_px)
        (grad,) = torch.autograd.grad(energy.sum(), h)
    return energy.detach(), grad


@torch.no_grad()
def plain_ais(model: PlainIWAE, x: Tensor, steps: int, chains: int, leapfrog: int,
              generator: torch.Generator) -> np.ndarray:
    """log p(x) estimates of every example of x (N, 784), one example after the other."""
    sizes = [block.mean.out_features for block in model.encoder]
    betas = sigmoid_schedule(steps)
    estimates = []
    for row in x:
        h = torch.randn(chains, sum(sizes), generator=generator)
        log_w = torch.zeros(chains, dtype=torch.float64)
        step, recent = 0.01, 0.65
        for t in range(1, steps + 1):
            _, log_px = _log_prior_and_likelihood(model, row, h, sizes)
            log_w += (betas[t] - betas[t - 1]) * log_px.double()
            if t == steps:
                break
            beta = float(betas[t])
            energy0, grad = _energy_and_grad(model, row, h, beta, sizes)
            p0 = torch.randn(h.shape, generator=generator)
            p = p0 - 0.5 * step * grad
            new = h
            for i in range(leapfrog):
                new = new + step * p
                energy1, grad = _energy_and_grad(model, row, new, beta, sizes)
                p = p - (step if i < leapfrog - 1 else 0.5 * step) * grad
            log_accept = (energy0 + 0.5 * (p0**2).sum(-1)) - (energy1 + 0.5 * (p**2).sum(-1))
            accept = torch.rand(chains, generator=generator).log() < log_accept
            h = torch.where(accept[:, None], new, h)
            recent = 0.9 * recent + 0.1 * accept.float().mean().item()
            step = min(0.5, max(1e-4, step * (1.02 if recent > 0.65 else 0.98)))
        estimates.append((torch.logsumexp(log_w, 0) - math.log(chains)).item())
    return np.array(estimates)
