"""Gradient signal-to-noise ratios of the estimators (Rainforth et al. 2018, Tucker et al. 2018).

At fixed parameters and a fixed minibatch, many independent gradient estimates are drawn; per
parameter coordinate, SNR = |mean| / standard deviation over the draws. They are summarised
per network, the encoder (inference network, q) and the decoder (generative network, p), by
the median and the quartiles over the network's coordinates. Rainforth et al. 2018 show that
for IWAE-K the encoder's SNR falls like K^-1/2 while the decoder's rises like K^1/2; Tucker et
al. 2018's DReG estimator keeps the encoder's from falling.

Those predictions are large-K results: they hold once K is large against the mismatch between q
and the posterior, where the effective sample size of K weights, ESS = (sum w)^2 / sum w^2,
grows in proportion to K. Where a few weights dominate, ESS grows far more slowly and the
slopes need not take their limiting values; weight_regime measures which regime a study is in.

Draws are batched: the model is replicated as members of one IWAEModel, each member drawing
its own noise, so one backward pass yields one independent estimate per member (members share
no parameters). Sums and sums of squares accumulate in float64.

Each slope carries a confidence interval from a delete-a-group jackknife: the draws are split
into groups, the whole study is summarised again without each group in turn, and the spread of
those slopes gives the slope's standard error (Efron & Tibshirani 1993, ch. 11; deleting groups
rather than single draws keeps the jackknife valid for the median, Shao & Wu 1989). The same
groups test whether each estimator's mean is IWAE's where the literature says it is
(gradient_agreement.py): a slope against a prediction is then not taken for a wrong estimator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from scipy import stats
from tqdm import tqdm

from benchmark.definitions import find_estimator, snr_names, snr_roles
from benchmark.evaluation.draw_moments import GroupSums, Moments, moments_from, varying
from benchmark.evaluation.gradient_agreement import agreement_rows
from benchmark.models import GroupObjectives, IWAEModel, Objective, estimator_backward
from benchmark.models import training_loss as to_loss
from benchmark.seeding import derive_seed, torch_generator

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
ESS_DRAWS = 16  # independent sets of K weights per K behind each effective sample size
# ESS ~ K^a: a -> 1 as K grows past the mismatch (every added sample counts); a fitted exponent
# of at least this says the study's K are in that large-K regime.
LARGE_K_ESS_EXPONENT = 0.9
JACKKNIFE_GROUPS = 10  # the draws are split into this many groups for the slopes' intervals
CONFIDENCE = 0.95


def snr_estimators() -> tuple[str, ...]:
    """Which estimator of the IWAE-K gradient (or of the ELBO's, "vae") each name means: every
    objective and estimator whose definition gives it an SNR role, in stream order."""
    return tuple(snr_roles())


def predictions() -> list[tuple[str, str, str, str]]:
    """What the literature predicts of each slope, and who predicts it (the definitions)."""
    return [(name, network, trend, source) for name, role in snr_roles().items()
            for network, trend, source in role.predictions]


def snr_objective(estimator: str, k: int) -> Objective:
    chosen = find_estimator(estimator)
    if chosen is not None:
        return Objective(chosen.of, k, estimator=estimator)
    return Objective(estimator, k)


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
    median_replicates: tuple[float, ...] = ()  # the median without each jackknife group

    def as_dict(self) -> dict:
        return {"estimator": self.estimator, "k": self.k, "network": self.network,
                "median": self.median, "q1": self.q1, "q3": self.q3,
                "coordinates": self.coordinates, "excluded": self.excluded,
                "median_replicates": list(self.median_replicates)}


class SnrStudy(NamedTuple):
    summaries: list[SnrSummary]
    slopes: list[dict]
    agreement: list[dict]  # benchmark.evaluation.gradient_agreement.agreement_rows


def replicate(model: IWAEModel, members: int) -> IWAEModel:
    """`members` copies of member 0 of `model`, on its device and dtype."""
    first = next(model.parameters())
    copies = IWAEModel(model.n_layers, members=members, arch=model.arch).to(first.device,
                                                                            first.dtype)
    with torch.no_grad():
        for mine, theirs in zip(copies.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs[:1].expand_as(mine))
    return copies


def jackknife_groups(draws: int) -> int:
    """How many groups the draws are split into: JACKKNIFE_GROUPS, fewer where the draws are
    few (at least two draws a group), none (0) below four draws."""
    groups = min(JACKKNIFE_GROUPS, draws // 2)
    return groups if groups >= 2 else 0


def gradient_moments(model: IWAEModel, x: torch.Tensor, objective: Objective, draws: int,
                     generator: torch.Generator, show_progress: bool = False,
                     rows_per_pass: int = ROWS_PER_PASS) -> Moments:
    """Mean and standard deviation per coordinate of `draws` independent gradient estimates of
    `objective` (its ascent direction, summed over the minibatch x (B, 784)) at member 0's
    parameters, with the sums of each jackknife group (draw d is in group d * groups // draws:
    contiguous blocks), from which the moments without each group follow."""
    if draws < 2:
        raise ValueError("at least two draws are needed for a standard deviation")
    groups = jackknife_groups(draws)
    bins = max(groups, 1)  # sums are kept per group; one bin when there is no jackknife
    per_pass = max(1, min(draws, rows_per_pass // (objective.samples * x.shape[0])))
    sums: dict[str, torch.Tensor] = {}
    squares: dict[str, torch.Tensor] = {}
    counts = np.bincount(np.arange(draws) * bins // draws, minlength=bins)
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
                group = torch.arange(done, done + members, device=g64.device) * bins // draws
                if network not in sums:
                    sums[network] = g64.new_zeros(bins, g64.shape[1])
                    squares[network] = g64.new_zeros(bins, g64.shape[1])
                sums[network].index_add_(0, group, g64)
                squares[network].index_add_(0, group, g64.square())
            done += members
            bar.update(members)
    sums_of = {n: sums[n].cpu().numpy() for n in NETWORKS}
    squares_of = {n: squares[n].cpu().numpy() for n in NETWORKS}
    return moments_from({n: sums_of[n].sum(0) for n in NETWORKS},
                        {n: squares_of[n].sum(0) for n in NETWORKS}, draws,
                        GroupSums(sums_of, squares_of, counts) if groups else None)


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
    """Median and quartiles of SNR = |mean| / std over each network's included coordinates, and
    the median without each jackknife group (over the same coordinates)."""
    out = []
    parts = moments.leave_one_out
    for network in NETWORKS:
        mean, std = moments.mean[network], moments.std[network]
        keep = varying(std, NEGLIGIBLE_STD)
        snr = np.abs(mean[keep]) / std[keep]
        q1, median, q3 = (float(v) for v in np.quantile(snr, [0.25, 0.5, 0.75]))
        replicates = tuple(
            float(np.median(np.abs(part.mean[network][keep])
                            / np.maximum(part.std[network][keep], np.finfo(float).tiny)))
            for part in parts)
        out.append(SnrSummary(estimator, k, network, median, q1, q3, int(keep.sum()),
                              int((~keep).sum()), replicates))
    return out


def slopes(summaries: Sequence[SnrSummary]) -> list[dict]:
    """Least-squares slope of log median SNR against log K, per estimator and network (the
    exponent a of SNR ~ K^a; Rainforth et al. predict -1/2 for IWAE's encoder, +1/2 for its
    decoder), with its jackknife standard error and CONFIDENCE interval where the summaries
    carry jackknife replicates, and the trend that interval shows: falls, rises or flat."""
    out = []
    keys = dict.fromkeys((s.estimator, s.network) for s in summaries)
    for estimator, network in keys:
        points = sorted(((s.k, s.median, s.median_replicates) for s in summaries
                         if (s.estimator, s.network) == (estimator, network) and s.median > 0),
                        key=lambda p: p[0])
        ks = [k for k, _, _ in points]
        if len(set(ks)) < 2:
            continue
        slope = exponent_of(ks, [v for _, v, _ in points])
        entry = {"estimator": estimator, "network": network, "slope": slope, "ks": ks}
        replicates = [r for _, _, r in points]
        groups = len(replicates[0])
        if groups >= 2 and all(len(r) == groups and min(r) > 0 for r in replicates):
            entry.update(slope_interval(slope, [exponent_of(ks, [r[g] for r in replicates])
                                                for g in range(groups)]))
        out.append(entry)
    return out


def slope_interval(slope: float, replicate_slopes: Sequence[float]) -> dict:
    """The delete-a-group jackknife's standard error of a slope from its leave-one-group-out
    replicates, se^2 = (G - 1) / G * sum (a_g - mean a)^2, the CONFIDENCE interval
    slope +- t(G - 1) se, and the trend it shows."""
    groups = len(replicate_slopes)
    spread = np.asarray(replicate_slopes) - np.mean(replicate_slopes)
    se = float(math.sqrt((groups - 1) / groups * float(np.sum(spread ** 2))))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, groups - 1)) * se
    low, high = slope - half, slope + half
    trend = "falls" if high < 0 else "rises" if low > 0 else "flat"
    return {"slope_se": se, "interval": [low, high], "confidence": CONFIDENCE,
            "jackknife_groups": groups, "trend": trend}


def prediction_checks(slope_rows: Sequence[dict]) -> list[dict]:
    """Each prediction of predictions() whose slope was measured, against the trend the slope's
    interval shows: holds true or false, or None when the slope has no interval."""
    by_key = {(s["estimator"], s["network"]): s for s in slope_rows}
    checks = []
    for estimator, network, predicted, source in predictions():
        row = by_key.get((estimator, network))
        if row is None:
            continue
        trend = row.get("trend")
        holds = None if trend is None else (trend != "falls" if predicted == "does not fall"
                                            else trend == predicted)
        checks.append({"estimator": estimator, "network": network, "predicted": predicted,
                       "source": source, "slope": row["slope"],
                       "interval": row.get("interval"), "trend": trend, "holds": holds})
    return checks


def prediction_line(check: dict) -> str:
    """One line: what was predicted, what was measured, whether it holds."""
    name = snr_names()[check["estimator"]]
    what = f"{name} {check['network']} SNR {check['predicted']} with K"
    measured = f"slope {check['slope']:+.3f}"
    if check["interval"] is None:
        return f"{check['source']}: {what}; measured {measured}, no interval (too few draws)"
    low, high = check["interval"]
    verdict = "holds" if check["holds"] else "does not hold"
    return (f"{check['source']}: {what}; measured {measured} "
            f"[{low:+.3f}, {high:+.3f}]: {check['trend']}, {verdict}")


def exponent_of(ks: Sequence[int], values: Sequence[float]) -> float:
    """The least-squares exponent a of values ~ K^a: the slope of log value against log K."""
    return float(np.polyfit(np.log(ks), np.log(values), 1)[0])


def snr_study(model: IWAEModel, x: torch.Tensor, ks: Sequence[int],
              estimators: Sequence[str], draws: int, seed: int, show_progress: bool = False,
              rows_per_pass: int = ROWS_PER_PASS) -> SnrStudy:
    """Every estimator at every K on the same minibatch: the summaries, the slopes and whether
    each estimator's mean agrees with IWAE's where the literature says it should. Each
    (estimator, K) draws from its own generator seeded from `seed`, so adding one to the study
    leaves the others' numbers unchanged."""
    summaries, agreement = [], []
    device = next(model.parameters()).device
    for k in ks:  # K by K: one K's draws of every estimator are compared, then let go
        at_k = {}
        for estimator in estimators:
            stream = derive_seed(seed, "snr", snr_roles()[estimator].stream, int(k))
            generator = torch_generator(stream, device)
            moments = gradient_moments(model, x, snr_objective(estimator, k), draws,
                                       generator, show_progress, rows_per_pass)
            summaries += summarise(moments, estimator, k)
            at_k[estimator] = moments
        agreement += agreement_rows(at_k, int(k), NEGLIGIBLE_STD)
    summaries.sort(key=lambda s: estimators.index(s.estimator))  # estimator by estimator
    return SnrStudy(summaries, slopes(summaries), agreement)


def relative_standard_error(draws: int) -> float:
    """The standard deviation of one coordinate is estimated from `draws` draws with a relative
    standard error of about 1 / sqrt(2 (draws - 1)) (Gaussian draws): the SNR inherits it."""
    return 1.0 / math.sqrt(2.0 * (draws - 1))


def noise_floor(draws: int) -> float:
    """The median SNR estimate of a coordinate whose true mean is 0: |mean| / sd over `draws`
    draws is |t(draws - 1)| / sqrt(draws). Medians near it are mostly noise, and their slopes
    against K are pulled towards 0."""
    return float(stats.t.ppf(0.75, draws - 1)) / math.sqrt(draws)


def effective_sample_size(log_w: torch.Tensor) -> torch.Tensor:
    """Kish's effective sample size (sum w)^2 / sum w^2 of the weights along dim 0, computed
    from their logarithms: K for equal weights, 1 when one weight holds all the mass."""
    return torch.exp(2.0 * torch.logsumexp(log_w, dim=0) - torch.logsumexp(2.0 * log_w, dim=0))


def weight_regime(model: IWAEModel, x: torch.Tensor, ks: Sequence[int], seed: int,
                  draws: int = ESS_DRAWS, rows_per_pass: int = ROWS_PER_PASS) -> dict:
    """Which regime the study's K are in: per K, the median over the minibatch x (B, 784) of the
    mean effective sample size of K importance weights over `draws` draws at member 0's
    parameters, and the fitted exponent a of ESS ~ K^a (1 in the large-K regime)."""
    single = replicate(model, 1)
    device = next(single.parameters()).device
    xs = x.to(device).unsqueeze(0)  # (1, B, 784)
    piece = max(1, rows_per_pass // x.shape[0])
    rows = []
    with torch.no_grad():
        for k in ks:
            generator = torch_generator(derive_seed(seed, "snr_weights", int(k)), device)
            total = torch.zeros(x.shape[0], dtype=torch.float64, device=device)
            for _ in range(draws):
                log_w = torch.cat([single.log_weights(xs, min(piece, k - start), generator)[0]
                                   for start in range(0, k, piece)]).double()  # (k, B)
                total += effective_sample_size(log_w)
            ess = float(torch.median(total / draws))
            rows.append({"k": int(k), "ess": ess, "ess_fraction": ess / k})
    exponent = None
    if len({r["k"] for r in rows}) >= 2:
        exponent = exponent_of([r["k"] for r in rows], [r["ess"] for r in rows])
    large_k = exponent is not None and exponent >= LARGE_K_ESS_EXPONENT
    return {"draws": draws, "ess": rows, "ess_exponent": exponent, "large_k": large_k,
            "rule": f"ESS = (sum w)^2 / sum w^2 of K importance weights, averaged over {draws} "
                    f"draws, median over the minibatch; the study's K are in the large-K regime "
                    f"of the predicted slopes when ESS grows at least like "
                    f"K^{LARGE_K_ESS_EXPONENT:g} (fitted exponent of ESS against K)",
            "summary": regime_summary(rows, exponent, large_k)}


def regime_summary(rows: Sequence[dict], exponent: float | None, large_k: bool) -> str:
    """One line: the effective sample size at each K and what its growth says of the regime."""
    sizes = ", ".join(f"K={r['k']}: {r['ess']:.3g}" for r in rows)
    line = f"effective sample size of the weights (median over the minibatch): {sizes}"
    if exponent is None:
        return line
    verdict = ("the large-K regime of the predicted slopes" if large_k else
               "short of the large-K regime (a few weights dominate), so the predicted slopes "
               "need not hold at these K")
    return f"{line}; ESS grows like K^{exponent:.2f}: {verdict}"
