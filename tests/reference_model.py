"""An independent float64 NumPy transcription of the paper's log-weights, for checking
benchmark.models.network against: written from the model's definition (Burda et al. 2015,
Section 5.1 and Appendix C), not from the package's code.

  log w = log p(h_L) + sum_l log p(h_l | h_{l+1}) + log p(x | h_1) - sum_l log q(h_l | h_{l-1}),
  h_l = mu_l + sigma_l * eps_l  (sigma = exp of the log-sigma head), p(h_L) = N(0, I),
  p(x | h_1) = prod_j Bernoulli(x_j; sigmoid(l_j)),  log Bernoulli = x l - log(1 + e^l).

Also: small architectures with several latent units per layer (so that units can be pruned), and
a random float64 model of them.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from benchmark.models.network import Architecture, BlockSpec, IWAEModel

X_DIM = 6
SMALL = {
    1: Architecture(encoder=(BlockSpec(X_DIM, (8,), 3),), decoder=(BlockSpec(3, (8,), X_DIM),)),
    2: Architecture(encoder=(BlockSpec(X_DIM, (8,), 3), BlockSpec(3, (5,), 2)),
                    decoder=(BlockSpec(3, (8,), X_DIM), BlockSpec(2, (5,), 3))),
}
LOG_2PI = math.log(2 * math.pi)


def small_model(layers: int, members: int = 1, seed: int = 0, scale: float = 0.5,
                arch: Architecture | None = None) -> IWAEModel:
    """Every parameter N(0, scale^2), float64."""
    model = IWAEModel(layers, members=members, arch=arch or SMALL[layers]).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale)
    return model


def all_binary_images() -> torch.Tensor:
    """The 64 binary images of X_DIM pixels, (64, 6) float64."""
    return torch.tensor(list(np.ndindex(*(2,) * X_DIM)), dtype=torch.float64)


def numpy_params(model: IWAEModel, member: int = 0) -> dict[str, np.ndarray]:
    return {name: p[member].detach().numpy().copy() for name, p in model.named_parameters()}


def trunk(params: dict[str, np.ndarray], prefix: str, h: np.ndarray) -> np.ndarray:
    i = 0
    while f"{prefix}.trunk.layers.{i}.weight" in params:
        h = np.tanh(h @ params[f"{prefix}.trunk.layers.{i}.weight"]
                    + params[f"{prefix}.trunk.layers.{i}.bias"][0])
        i += 1
    return h


def gaussian(params: dict[str, np.ndarray], prefix: str, h: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
    """(mean, log sigma) of a Gaussian block at its input h."""
    a = trunk(params, prefix, h)
    return (a @ params[f"{prefix}.mean.weight"] + params[f"{prefix}.mean.bias"][0],
            a @ params[f"{prefix}.log_sigma.weight"] + params[f"{prefix}.log_sigma.bias"][0])


def log_normal(h: np.ndarray, mean: np.ndarray, log_sigma: np.ndarray) -> np.ndarray:
    z = (h - mean) / np.exp(log_sigma)
    return np.sum(-0.5 * z**2 - log_sigma - 0.5 * LOG_2PI, axis=-1)


def decoder_logits(params: dict[str, np.ndarray], h1: np.ndarray) -> np.ndarray:
    a = trunk(params, "likelihood", h1)
    return a @ params["likelihood.logits.weight"] + params["likelihood.logits.bias"][0]


def reference_log_weights(params: dict[str, np.ndarray], layers: int, x: np.ndarray,
                          eps: list[np.ndarray]) -> np.ndarray:
    """log w for images x (B, D) and noise eps[l] (k, B, d_l): (k, B)."""
    log_q = 0.0
    samples = []
    below = x[None]  # (1, B, D): every sample of an example reads the same x
    for layer in range(layers):
        mean, log_sigma = gaussian(params, f"encoder.{layer}", below)
        h = mean + np.exp(log_sigma) * eps[layer]
        log_q = log_q + log_normal(h, mean, log_sigma)
        samples.append(h)
        below = h
    log_p = log_normal(samples[-1], 0.0, 0.0)
    for layer in range(1, layers):  # p(h_layer | h_{layer+1}) is prior block layer - 1
        mean, log_sigma = gaussian(params, f"prior_blocks.{layer - 1}", samples[layer])
        log_p = log_p + log_normal(samples[layer - 1], mean, log_sigma)
    logits = decoder_logits(params, samples[0])
    log_px = np.sum(x[None] * logits - np.logaddexp(0.0, logits), axis=-1)
    return log_p + log_px - log_q


def fixed_noise(model: IWAEModel, k: int, batch: int, seed: int) -> list[torch.Tensor]:
    """float64 noise (M, k, B, d) per layer, drawn once."""
    return model.draw_noise(model.members, k, batch, torch.Generator().manual_seed(seed), "cpu",
                            torch.float64)
