"""Gradient signal-to-noise ratios of the estimators (Rainforth et al. 2018, Tucker et al. 2018).

At fixed parameters and a fixed minibatch, many independent gradient estimates are drawn; per
parameter coordinate, SNR = |mean| / standard deviation over the draws. They are summarised
per network, the encoder (inference network, q) and the decoder (generative network, p), by
the median and the quartiles over the network's coordinates. Rainforth et al. 2018 show that
for IWAE-K the encoder's SNR falls like K^-1/2 while the decoder's rises like K^1/2; Tucker et
al. 2018's DReG estimator keeps the encoder's from falling.

Draws are batched: the model is replicated as members of one IWAEModel, each member drawing
its own noise, so one backward pass yields one independent estimate per member (members share
no parameters). Sums and sums of squares accumulate in float64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from benchmark.models import GroupObjectives, IWAEModel, Objective, estimator_backward
from benchmark.models import training_loss as to_loss
from benchmark.seeding import derive_seed, torch_generator

# Which estimator of the IWAE-K gradient (or of the ELBO's, "vae") each name means.
SNR_ESTIMATORS = ("iwae", "stl", "dreg", "rws", "vae")
DEFAULT_ESTIMATORS = ("iwae", "stl", "dreg")
DEFAULT_KS = (1, 10, 100)
DEFAULT_DRAWS = 400
ROWS_PER_PASS = 1 << 15  # members x samples x examples in one batched pass
# Coordinates excluded from a network's summary: those whose gradient is (numerically)
# constant over the draws. Their SNR is 0/0; an example is a first-layer encoder weight of a
# pixel that is 0 in every image of the minibatch, whose gradient is exactly 0 in every draw.
NEGLIGIBLE_STD = 1e-6
EXCLUSION_RULE = (f"a coordinate is excluded when its standard deviation over the draws is at "
                  f"most {NEGLIGIBLE_STD:g} times the median standard deviation of its "
                  f"network's coordinates (a gradient constant over the draws, e.g. exactly 0 "
                  f"for a weight of a pixel that is 0 in every image of the minibatch)")
NETWORKS = ("encoder", "decoder")


def snr_objective(estimator: str, k: int) -> Objective:
    if estimator == "vae":
        return Objective("vae", k)
    if estimator == "rws":
        return Objective("rws", k)
    if estimator == "iwae":
        return Objective("iwae", k)
    return Objective("iwae", k, estimator=estimator)


@dataclass(frozen=True)
class Moments:
    """Per network, the mean and standard deviation of every gradient coordinate."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    draws: int


@dataclass(frozen=True)
class SnrSummary:
    estimator: str
    k: int
    network: str
    median: float
    q1: float
    q3: float
    coordinates: int
    excluded: int

    def as_dict(self) -> dict:
        return {"estimator": self.estimator, "k": self.k, "network": self.network,
                "median": self.median, "q1": self.q1, "q3": self.q3,
                "coordinates": self.coordinates, "excluded": self.excluded}


def replicate(model: IWAEModel, members: int) -> IWAEModel:
    """`members` copies of member 0 of `model`, on its device and dtype."""
    first = next(model.parameters())
    copies = IWAEModel(model.n_layers, members=members, arch=model.arch).to(first.device,
                                                                            first.dtype)
    with torch.no_grad():
        for mine, theirs in zip(copies.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs[:1].expand_as(mine))
    return copies


def gradient_moments(model: IWAEModel, x: torch.Tensor, objective: Objective, draws: int,
                     generator: torch.Generator, show_progress: bool = False,
                     rows_per_pass: int = ROWS_PER_PASS) -> Moments:
    """Mean and standard deviation per coordinate of `draws` independent gradient estimates of
    `objective` (its ascent direction, summed over the minibatch x (B, 784)) at member 0's
    parameters."""
    if draws < 2:
        raise ValueError("at least two draws are needed for a standard deviation")
    per_pass = max(1, min(draws, rows_per_pass // (objective.samples * x.shape[0])))
    sums = {n: 0.0 for n in NETWORKS}
    squares = {n: 0.0 for n in NETWORKS}
    done = 0
    copies = replicate(model, per_pass)
    with tqdm(total=draws, unit="draw", leave=False, disable=not show_progress,
              desc=f"{objective.model}{'-' + objective.estimator if objective.estimator else ''}"
                   f" k={objective.k}") as bar:
        while done < draws:
            members = min(per_pass, draws - done)
            if members != copies.members:
                copies = replicate(model, members)
            grads = _one_pass(copies, x, objective, generator)
            for network, g in grads.items():
                g64 = g.to(torch.float64)
                sums[network] = sums[network] + g64.sum(0)
                squares[network] = squares[network] + g64.square().sum(0)
            done += members
            bar.update(members)
    mean, std = {}, {}
    for network in NETWORKS:
        m = sums[network] / draws
        var = (squares[network] - draws * m.square()) / (draws - 1)
        mean[network] = m.cpu().numpy()
        std[network] = var.clamp_min(0.0).sqrt().cpu().numpy()
    return Moments(mean, std, draws)


def _one_pass(copies: IWAEModel, x: torch.Tensor, objective: Objective,
              generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One gradient estimate per member: (members, coordinates) per network."""
    members = copies.members
    xs = x.to(next(copies.parameters()).device).unsqueeze(0).expand(members, -1, -1)
    eps = copies.draw_noise(members, objective.samples, x.shape[0], generator, xs.device,
                            xs.dtype)
    for p in copies.parameters():
        p.grad = None
    estimate = GroupObjectives([objective] * members, xs.device).estimate(copies, xs, eps)
    # minus the loss's gradient: the estimator's ascent direction (SNR ignores the sign)
    estimator_backward(copies, estimate, lambda s: to_loss(s, "sum"))
    flat = {"encoder": copies.encoder_parameters(), "decoder": copies.decoder_parameters()}
    return {network: -torch.cat([p.grad.reshape(members, -1) for p in params], dim=1)
            for network, params in flat.items()}


def summarise(moments: Moments, estimator: str, k: int) -> list[SnrSummary]:
    """Median and quartiles of SNR = |mean| / std over each network's included coordinates."""
    out = []
    for network in NETWORKS:
        mean, std = moments.mean[network], moments.std[network]
        keep = std > NEGLIGIBLE_STD * np.median(std)
        snr = np.abs(mean[keep]) / std[keep]
        q1, median, q3 = (float(v) for v in np.quantile(snr, [0.25, 0.5, 0.75]))
        out.append(SnrSummary(estimator, k, network, median, q1, q3, int(keep.sum()),
                              int((~keep).sum())))
    return out


def slopes(summaries: Sequence[SnrSummary]) -> list[dict]:
    """Least-squares slope of log median SNR against log K, per estimator and network (the
    exponent a of SNR ~ K^a; Rainforth et al. predict -1/2 for IWAE's encoder, +1/2 for its
    decoder)."""
    out = []
    keys = dict.fromkeys((s.estimator, s.network) for s in summaries)
    for estimator, network in keys:
        points = sorted((s.k, s.median) for s in summaries
                        if (s.estimator, s.network) == (estimator, network) and s.median > 0)
        if len({k for k, _ in points}) < 2:
            continue
        log_k = np.log([k for k, _ in points])
        log_snr = np.log([v for _, v in points])
        slope = float(np.polyfit(log_k, log_snr, 1)[0])
        out.append({"estimator": estimator, "network": network, "slope": slope,
                    "ks": [k for k, _ in points]})
    return out


def snr_study(model: IWAEModel, x: torch.Tensor, ks: Sequence[int],
              estimators: Sequence[str], draws: int, seed: int, show_progress: bool = False,
              rows_per_pass: int = ROWS_PER_PASS) -> tuple[list[SnrSummary], list[dict]]:
    """Every estimator at every K on the same minibatch: the summaries and the slopes. Each
    (estimator, K) draws from its own generator seeded from `seed`, so adding one to the study
    leaves the others' numbers unchanged."""
    summaries = []
    device = next(model.parameters()).device
    for estimator in estimators:
        for k in ks:
            stream = derive_seed(seed, "snr", SNR_ESTIMATORS.index(estimator), int(k))
            generator = torch_generator(stream, device)
            moments = gradient_moments(model, x, snr_objective(estimator, k), draws,
                                       generator, show_progress, rows_per_pass)
            summaries += summarise(moments, estimator, k)
    return summaries, slopes(summaries)


def relative_standard_error(draws: int) -> float:
    """The standard deviation of one coordinate is estimated from `draws` draws with a relative
    standard error of about 1 / sqrt(2 (draws - 1)) (Gaussian draws): the SNR inherits it."""
    return 1.0 / math.sqrt(2.0 * (draws - 1))
