"""Models whose log p(x) is known exactly, for the AIS and BDMC tests.

- LinearGaussian: p(h) = N(0, I_d), p(x|h) = N(W h + b, sigma^2 I_D); log p(x) is
  log N(x; b, W W^T + sigma^2 I) in closed form, and (h, x) can be drawn jointly.
- tiny_bernoulli_model: the package's own IWAEModel with a 1-dimensional latent (or 1 + 1 for two
  stochastic layers) and 6 pixels, float64; log p(x) by the trapezoid rule on a fine grid.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from benchmark.models.network import Architecture, BlockSpec, IWAEModel

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
PIXELS = 6
TINY = {
    1: Architecture(encoder=(BlockSpec(PIXELS, (8,), 1),), decoder=(BlockSpec(1, (8,), PIXELS),)),
    2: Architecture(encoder=(BlockSpec(PIXELS, (8,), 1), BlockSpec(1, (4,), 1)),
                    decoder=(BlockSpec(1, (8,), PIXELS), BlockSpec(1, (4,), 1))),
}


@dataclass
class LinearGaussian:
    W: Tensor  # (D, d)
    b: Tensor  # (D,)
    sigma: float

    @classmethod
    def random(cls, D: int, d: int, sigma: float, seed: int) -> LinearGaussian:
        gen = torch.Generator().manual_seed(seed)
        return cls(torch.randn(D, d, generator=gen, dtype=torch.float64) / math.sqrt(d),
                   torch.randn(D, generator=gen, dtype=torch.float64), sigma)

    def simulate(self, n: int, seed: int) -> tuple[Tensor, Tensor]:
        """n joint draws: x (n, D) and its exact posterior draw h (n, d)."""
        gen = torch.Generator().manual_seed(seed)
        h = torch.randn(n, self.W.shape[1], generator=gen, dtype=torch.float64)
        noise = torch.randn(n, self.W.shape[0], generator=gen, dtype=torch.float64)
        return h @ self.W.T + self.b + self.sigma * noise, h

    def exact_log_px(self, x: Tensor) -> Tensor:
        cov = self.W @ self.W.T + self.sigma**2 * torch.eye(self.W.shape[0], dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)

    def path(self, x: Tensor, chains: int) -> LinearGaussianPath:
        return LinearGaussianPath(self, x, chains)


@dataclass
class LinearGaussianPath:
    """The prior-to-posterior AIS path of the linear-Gaussian model, one member: (1, C, B, d)."""

    model: LinearGaussian
    x: Tensor  # (B, D)
    chains: int

    def sample_base(self, generator) -> Tensor:
        gen = generator[0] if isinstance(generator, list) else generator
        shape = (1, self.chains, self.x.shape[0], self.model.W.shape[1])
        return torch.randn(shape, generator=gen, dtype=torch.float64)

    def log_terms(self, h: Tensor) -> tuple[Tensor, Tensor]:
        log_prior = -(0.5 * h.square() + HALF_LOG_2PI).sum(-1)
        z = (self.x - (h @ self.model.W.T + self.model.b)) / self.model.sigma
        log_lik = -(0.5 * z.square() + math.log(self.model.sigma) + HALF_LOG_2PI).sum(-1)
        return log_prior, log_lik


def tiny_bernoulli_model(layers: int, seed: int = 0, scale: float = 1.0, members: int = 1
                         ) -> IWAEModel:
    """Random parameters ~ N(0, (0.5 scale)^2); larger scales give sharper posteriors."""
    model = IWAEModel(layers, members=members, arch=TINY[layers]).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5 * scale)
    return model


def all_binary_images() -> Tensor:
    return torch.tensor(list(np.ndindex(*(2,) * PIXELS)), dtype=torch.float64)  # (64, 6)


def _log_normal(h: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    return -0.5 * ((h - mean) / torch.exp(log_sigma)) ** 2 - log_sigma - HALF_LOG_2PI


def _log_bernoulli(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x | logits) for every (example, grid point): x (N, D), logits (G, D) -> (N, G)."""
    return (x[:, None, :] * logits - torch.nn.functional.softplus(logits)).sum(-1)


@torch.no_grad()
def quadrature_log_px(model: IWAEModel, x: Tensor, member: int = 0) -> Tensor:
    """log p(x) of member `member` by the trapezoid rule on [-12, 12] (a square for two layers,
    where p(h1 | h2) can be wide). The integrands are smooth; where they also vanish at the
    ends, the error is far below 1e-6 nats, which tests check by summing p(x) over all images."""
    grid = torch.linspace(-12, 12, 1201, dtype=torch.float64)
    dh = grid[1] - grid[0]
    points = grid.view(1, -1, 1).expand(model.members, -1, -1).contiguous()
    log_px_given_h1 = _log_bernoulli(model.likelihood(points)[member], x)  # (N, G)
    log_standard = -0.5 * grid**2 - HALF_LOG_2PI
    if model.n_layers == 1:
        return torch.logsumexp(log_px_given_h1 + log_standard, dim=1) + torch.log(dh)
    mean, log_sigma = model.prior_blocks[0](points)  # p(h1 | h2) at every h2 of the grid
    log_h1_given_h2 = _log_normal(grid.view(1, -1), mean[member], log_sigma[member])  # (h2, h1)
    prior = log_h1_given_h2 + log_standard[:, None]  # log p(h2, h1)
    # sum over h1 and h2 of p(h2, h1) p(x | h1) as one matrix product of max-shifted exps;
    # terms that underflow are below e^-700 of their row's largest and cannot matter
    shift_prior = prior.max(dim=1, keepdim=True).values  # (h2, 1)
    shift_x = log_px_given_h1.max(dim=1, keepdim=True).values  # (N, 1)
    inner = torch.exp(log_px_given_h1 - shift_x) @ torch.exp(prior - shift_prior).T  # (N, h2)
    log_inner = torch.log(inner) + shift_x + shift_prior.T
    return torch.logsumexp(log_inner, dim=1) + 2 * torch.log(dh)


@functools.cache
def fitted_tiny_bernoulli_model(layers: int, seed: int = 0) -> IWAEModel:
    """A tiny model whose encoder has been fitted (IWAE, k = 20, 200 Adam steps) to the 64
    images, so that q(h|x) is close to the posterior, as a trained encoder is. Cached: callers
    only read it (its parameters need no gradient)."""
    from benchmark.models.objectives import iwae_bound, training_loss

    model = tiny_bernoulli_model(layers, seed)
    x = all_binary_images()[None]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(seed + 100)
    for _ in range(200):
        opt.zero_grad()
        training_loss(iwae_bound(model.log_weights(x, 20, gen)), "mean").backward()
        opt.step()
    return model.requires_grad_(False)
