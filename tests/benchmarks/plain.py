"""The plain eager baseline: one model per step, written the way a first PyTorch port of the
authors' Theano code would be. nn.Linear layers, x repeated k times through the encoder (as the
authors' code did), binary_cross_entropy_with_logits, logsumexp, torch.optim.Adam with torch's
defaults, torch's default floating-point mode (no flush-to-zero), and for L_5000 minibatches of
20 test points x 5000 samples as the authors evaluated. It starts from the authors'
initialisation, so that it sees the same log-weight spread (and denormals) as the suite's model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmark.models.network import ARCHITECTURES, BlockSpec, authors_weight

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def authors_layers(widths: tuple[int, ...]) -> nn.ModuleList:
    return nn.ModuleList(authors_linear(a, b)
                         for a, b in zip(widths[:-1], widths[1:], strict=True))


def authors_linear(n_in: int, n_out: int) -> nn.Linear:
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(authors_weight(n_in, n_out)).T)
        layer.bias.zero_()
    return layer


class PlainGaussian(nn.Module):
    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        widths = (spec.n_in, *spec.hidden)
        self.trunk = authors_layers(widths)
        self.mean = authors_linear(spec.hidden[-1], spec.n_out)
        self.log_sigma = authors_linear(spec.hidden[-1], spec.n_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.trunk:
            x = torch.tanh(layer(x))
        return self.mean(x), self.log_sigma(x)


class PlainIWAE(nn.Module):
    """The paper's model for one set of parameters; log_weights repeats x k times."""

    def __init__(self, layers: int, mean_pixel: np.ndarray) -> None:
        super().__init__()
        arch = ARCHITECTURES[layers]
        self.encoder = nn.ModuleList(PlainGaussian(s) for s in arch.encoder)
        self.priors = nn.ModuleList(PlainGaussian(s) for s in arch.decoder[1:])
        out = arch.decoder[0]
        widths = (out.n_in, *out.hidden)
        self.decoder = authors_layers(widths)
        self.logits = authors_linear(out.hidden[-1], out.n_out)
        p = torch.from_numpy(np.asarray(mean_pixel, dtype=np.float64))
        with torch.no_grad():
            self.logits.bias.copy_((torch.log(p) - torch.log1p(-p)).float())

    def log_weights(self, x: Tensor, k: int, generator: torch.Generator) -> Tensor:
        """x (B, 784) -> (k, B)."""
        xs = x.repeat(k, 1)  # (k B, 784): every sample re-encodes its example
        log_q = torch.zeros(xs.shape[0])
        samples, h = [], xs
        for block in self.encoder:
            mean, log_sigma = block(h)
            eps = torch.randn(mean.shape, generator=generator)
            h = mean + torch.exp(log_sigma) * eps
            log_q = log_q - (0.5 * eps**2 + log_sigma + HALF_LOG_2PI).sum(-1)
            samples.append(h)
        log_p, log_px = self.log_prior_and_likelihood(xs, samples)
        return (log_p + log_px - log_q).view(k, -1)

    def log_prior_and_likelihood(self, x: Tensor, samples: list[Tensor]
                                 ) -> tuple[Tensor, Tensor]:
        """log p(h) and log p(x|h) of the latent samples h1..hL (x broadcast to their rows)."""
        log_p = -(0.5 * samples[-1] ** 2 + HALF_LOG_2PI).sum(-1)
        for i, block in enumerate(self.priors, start=1):
            mean, log_sigma = block(samples[i])
            z = (samples[i - 1] - mean) * torch.exp(-log_sigma)
            log_p = log_p - (0.5 * z**2 + log_sigma + HALF_LOG_2PI).sum(-1)
        h = samples[0]
        for layer in self.decoder:
            h = torch.tanh(layer(h))
        logits = self.logits(h)
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits),
                                                     reduction="none").sum(-1)
        return log_p, log_px


class PlainRun:
    """One model, its Adam and its random streams, stepping through a training set."""

    def __init__(self, layers: int, k: int, objective: str, train: np.ndarray, seed: int
                 ) -> None:
        self.k, self.objective = k, objective
        self.model = PlainIWAE(layers, np.clip(train.mean(axis=0), 0.001, 0.999))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999),
                                          eps=1e-4)
        self.train = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
        self.generator = torch.Generator().manual_seed(seed)
        self.position = 0

    def step(self) -> None:
        batch = self.train[self.position:self.position + 20]
        self.position = (self.position + 20) % (self.train.shape[0] - 19)
        x = (torch.rand(batch.shape, generator=self.generator) < batch).float()
        log_w = self.model.log_weights(x, self.k, self.generator)
        if self.objective == "iwae":
            bound = torch.logsumexp(log_w, dim=0) - math.log(self.k)
        else:
            bound = log_w.mean(dim=0)
        self.optimizer.zero_grad()
        (-bound.sum()).backward()
        self.optimizer.step()


@torch.no_grad()
def plain_log_likelihood(model: PlainIWAE, x: Tensor, k: int, generator: torch.Generator
                         ) -> Tensor:
    """L_k in minibatches of 20 test points x k samples, as the authors' evaluation. x (N, 784)."""
    out = []
    for start in range(0, x.shape[0], 20):
        log_w = model.log_weights(x[start:start + 20], k, generator).double()
        out.append(torch.logsumexp(log_w, dim=0) - math.log(k))
    return torch.cat(out)
