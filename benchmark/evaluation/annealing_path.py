"""The distributions AIS anneals through, for the paper's models and for any other target.

A path is f_beta(h) = base(h) * exp(beta * increment(h)) for beta from 0 to 1, where base is a
normalised density that can be sampled exactly (so Z_0 = 1) and f_1 is the unnormalised
posterior p(x, h), whose normaliser Z_1 is p(x). For the paper's models there are two (Wu et al.
2017, "On the quantitative analysis of decoder-based generative models", Section 4; their code
calls them the `normal` and `recog` priors):

    prior    base = p(h),      increment = log p(x | h1)
    encoder  base = q(h | x),  increment = log p(x, h) - log q(h | x)

All stochastic layers are annealed jointly: a state h is (h1, ..., hL) concatenated along the
last axis, bottom first. States are (M, C, B, d): members, chains, examples, latent units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from benchmark.models import (
    Generators,
    IWAEModel,
    bernoulli_log_likelihood,
    gaussian_log_density,
    standard_normal,
    standard_normal_log_density,
)

STARTS = ("prior", "encoder")


class AnnealingPath(Protocol):
    """What AIS needs from a target: exact draws from the base, and the two log terms."""

    def sample_base(self, generator: Generators) -> Tensor:
        """Exact draws from base: (M, C, B, d)."""
        ...

    def log_terms(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """(log base(h), increment(h)), each (M, C, B), differentiable in h."""
        ...


def _flat(t: Tensor) -> Tensor:
    """(M, C, B, d) -> (M, C*B, d): the rows a StackedLinear takes."""
    return t.reshape(t.shape[0], -1, t.shape[-1])


@dataclass
class ModelPath:
    """The AIS path of an IWAEModel (M members) for the examples x: (M, B, 784) binary."""

    model: IWAEModel
    x: Tensor
    chains: int
    start: str = "prior"

    def __post_init__(self) -> None:
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        self.sizes = self.model.arch.latent_sizes
        # q(h1 | x) depends on x only: computed once, shared by every chain and step (and
        # never differentiated: AIS differentiates in h, not in the parameters).
        with torch.no_grad():
            mean, log_sigma = self.model.encoder[0](self.x)
        self.q1 = mean.unsqueeze(1), log_sigma.unsqueeze(1)  # (M, 1, B, d1)

    @property
    def shape(self) -> tuple[int, int, int]:
        M, B, _ = self.x.shape
        return M, self.chains, B

    def split(self, h: Tensor) -> list[Tensor]:
        return list(torch.split(h, self.sizes, dim=-1))

    def sample_base(self, generator: Generators) -> Tensor:
        layers = (self.sample_prior(generator) if self.start == "prior"
                  else self.sample_encoder(generator))
        return torch.cat(layers, dim=-1)

    def sample_prior(self, generator: Generators) -> list[Tensor]:
        """Ancestral draws h_L ~ N(0, I), h_l ~ p(h_l | h_{l+1}); bottom first."""
        M, C, B = self.shape
        top = standard_normal((M, C, B, self.sizes[-1]), generator, self.x.device, self.x.dtype)
        layers = [top]
        for block in reversed(self.model.prior_blocks):
            mean, log_sigma = block(_flat(layers[0]))
            noise = standard_normal(tuple(mean.shape), generator, self.x.device, self.x.dtype)
            layers.insert(0, (mean + torch.exp(log_sigma) * noise).view(M, C, B, -1))
        return layers

    def sample_encoder(self, generator: Generators) -> list[Tensor]:
        """h1 ~ q(h1 | x), h_{l+1} ~ q(h_{l+1} | h_l); bottom first."""
        M, C, B = self.shape
        mean, log_sigma = self.q1
        noise = standard_normal((M, C, B, self.sizes[0]), generator, self.x.device, self.x.dtype)
        layers = [mean + torch.exp(log_sigma) * noise]
        for block in self.model.encoder[1:]:
            mean, log_sigma = block(_flat(layers[-1]))
            noise = standard_normal(tuple(mean.shape), generator, self.x.device, self.x.dtype)
            layers.append((mean + torch.exp(log_sigma) * noise).view(M, C, B, -1))
        return layers

    def log_terms(self, h: Tensor) -> tuple[Tensor, Tensor]:
        layers = self.split(h)
        log_prior = self.log_prior(layers)
        log_px_given_h = self.log_likelihood(layers[0])
        if self.start == "prior":
            return log_prior, log_px_given_h
        log_q = self.log_encoder(layers)
        return log_q, log_prior + log_px_given_h - log_q

    def log_prior(self, layers: Sequence[Tensor]) -> Tensor:
        """log p(h) = log N(h_L; 0, I) + sum_l log p(h_l | h_{l+1}): (M, C, B)."""
        M, C, B = self.shape
        total = standard_normal_log_density(layers[-1])
        for layer, block in enumerate(self.model.prior_blocks, start=1):
            mean, log_sigma = block(_flat(layers[layer]))
            total = total + gaussian_log_density(layers[layer - 1], mean.view(M, C, B, -1),
                                                 log_sigma.view(M, C, B, -1))
        return total

    def log_likelihood(self, h1: Tensor) -> Tensor:
        """log p(x | h1): (M, C, B)."""
        M, C, B = self.shape
        logits = self.model.likelihood(_flat(h1)).view(M, C, B, -1)
        return bernoulli_log_likelihood(logits, self.x.unsqueeze(1))

    def log_encoder(self, layers: Sequence[Tensor]) -> Tensor:
        """log q(h | x) = log q(h1 | x) + sum_l log q(h_{l+1} | h_l): (M, C, B)."""
        M, C, B = self.shape
        total = gaussian_log_density(layers[0], *self.q1)
        for layer, block in enumerate(self.model.encoder[1:], start=1):
            mean, log_sigma = block(_flat(layers[layer - 1]))
            total = total + gaussian_log_density(layers[layer], mean.view(M, C, B, -1),
                                                 log_sigma.view(M, C, B, -1))
        return total
