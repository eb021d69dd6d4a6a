"""Whether two gradient estimators of an SNR study share their expectation, at its checkpoint.

A slope that breaks a prediction could come from the estimator's noise, which is what the SNR
measures, or from an estimator that is wrong. The second is checked on the same draws, against
IWAE-K's draws at the same K, in two ways:

- A test. The draws of each estimator are in jackknife groups (benchmark.evaluation.snr). The
  even groups fix a direction: per coordinate, the difference of the two means divided by its
  squared standard error (Welch's weighting). Each odd group then gives one number, its own
  difference of means projected on that direction. Those numbers are independent of the
  direction, so where the two estimators share their mean they average 0, and where they do
  not they average the (positive) projection of the bias. A one-sided t-test on them (df: the
  odd groups less one) gives a p-value that holds whatever the coordinates' correlations.
- A description: per coordinate, Welch's z on all draws, and the share of coordinates where
  |z| passes the two-sided 5% point. About 5% where the means agree; but coordinates are
  correlated, so that share strays from 5% far more than a binomial would, and it is not the
  test.

What the literature says of each comparison (Tucker et al. 2018, arXiv 1810.04152):
- DReG is an unbiased estimator of the IWAE-K gradient: its encoder's mean is IWAE's.
- STL is unbiased at K = 1 and biased for K > 1 (its dropped score term no longer averages to 0).
- The decoder's gradient of STL, DReG and RWS is IWAE's own estimator: those rows compare two
  independent draws of one estimator, a control of the test inside every study.
RWS's encoder update and the VAE's gradient estimate other quantities and are not compared.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import stats

from benchmark.definitions import SAME as SAME_MEAN
from benchmark.definitions import SAME_AT_K1, snr_names, snr_roles
from benchmark.evaluation.draw_moments import GroupSums, Moments, mean_and_variance, varying

SIGNIFICANCE = 0.05  # two-sided level of each coordinate's z in the descriptive share
# One-sided level of the test: a study compares up to a dozen pairs, most of which share their
# mean, so a spurious "differs" must be rare in the whole study (about 1% for ten pairs).
TEST_LEVEL = 0.001
REFERENCE = "iwae"
SOURCE = "Tucker et al. 2018"
SAME, BIASED = "same mean as IWAE's", "biased: mean differs from IWAE's"
AGREEMENT_RULE = (
    "against IWAE's draws at the same K: the even jackknife groups fix a direction (difference "
    "of means over its squared standard error, per coordinate), each odd group's difference of "
    "means is projected on it, and a one-sided t-test on those projections says whether the "
    f"means differ (p < {TEST_LEVEL:g}). Share: the fraction of coordinates whose Welch z on all "
    f"draws passes the two-sided {SIGNIFICANCE:.0%} point (descriptive: about "
    f"{SIGNIFICANCE:.0%} when the means agree, strays more where coordinates are correlated). "
    "Decoder rows compare two independent draws of IWAE's own decoder estimator: controls")


def expected_relation(estimator: str, network: str, k: int) -> str | None:
    """What the literature says of this estimator's mean against IWAE-K's, or None (no claim)."""
    role = snr_roles().get(estimator)
    expected = role.means.get(network) if role is not None else None
    if expected == SAME_MEAN or (expected == SAME_AT_K1 and k == 1):
        return SAME
    return BIASED if expected == SAME_AT_K1 else None


def welch_share(other: Moments, reference: Moments, network: str, negligible: float) -> dict:
    """The share of coordinates whose means differ at SIGNIFICANCE (Welch's z against the normal
    point, the draws being hundreds), and the mean of z^2 (about 1 when the means agree).
    Coordinates whose standard error is at most `negligible` times the median one are left out:
    constant over the draws of both, they carry no comparison."""
    se = np.sqrt(other.std[network] ** 2 / other.draws
                 + reference.std[network] ** 2 / reference.draws)
    keep = varying(se, negligible)
    z = (other.mean[network][keep] - reference.mean[network][keep]) / se[keep]
    critical = float(stats.norm.ppf(1 - SIGNIFICANCE / 2))
    return {"share": float(np.mean(np.abs(z) > critical)), "mean_z2": float(np.mean(z ** 2)),
            "coordinates": int(keep.sum())}


def _pooled(groups: GroupSums, network: str, chosen: np.ndarray) -> tuple[np.ndarray, ...]:
    """Mean and variance per coordinate of the draws of the chosen groups, and their number."""
    n = int(groups.counts[chosen].sum())
    mean, var = mean_and_variance(groups.sums[network][chosen].sum(0),
                                  groups.squares[network][chosen].sum(0), n)
    return mean, var, n


def split_test(other: Moments, reference: Moments, network: str, negligible: float
               ) -> dict | None:
    """The cross-fitted test of the module's docstring: t, its degrees of freedom and the
    one-sided p-value; None with fewer than four groups (two a side). Projections that do not
    vary (the two estimators' draws identical, say) give t = None and p = 1 unless they are
    positive, p = 0 then."""
    if other.groups is None or reference.groups is None:
        return None
    count = min(len(other.groups.counts), len(reference.groups.counts))
    if count < 4:
        return None
    fit, test = np.arange(0, count, 2), np.arange(1, count, 2)
    mean_o, var_o, n_o = _pooled(other.groups, network, fit)
    mean_r, var_r, n_r = _pooled(reference.groups, network, fit)
    se2 = var_o / n_o + var_r / n_r
    keep = varying(np.sqrt(se2), negligible)
    direction = np.where(keep, (mean_o - mean_r) / np.where(keep, se2, 1.0), 0.0)
    projections = np.array([
        direction @ (other.groups.sums[network][g] / other.groups.counts[g]
                     - reference.groups.sums[network][g] / reference.groups.counts[g])
        for g in test])
    spread = float(np.std(projections, ddof=1))
    centre = float(np.mean(projections))
    df = len(projections) - 1
    if spread == 0.0:  # no t to speak of (and a record holds no infinity)
        return {"t": None, "df": df, "p": 0.0 if centre > 0 else 1.0}
    t = centre / (spread / math.sqrt(len(projections)))
    return {"t": t, "df": df, "p": float(stats.t.sf(t, df))}


def agreement_rows(at_k: Mapping[str, Moments], k: int, negligible: float) -> list[dict]:
    """One row per estimator and network at this K that the literature makes a claim of, when
    IWAE-K's draws are among `at_k` (estimator -> its Moments at K, with their groups)."""
    reference = at_k.get(REFERENCE)
    if reference is None:
        return []
    rows = []
    for estimator, other in at_k.items():
        for network in ("encoder", "decoder"):
            expected = expected_relation(estimator, network, k)
            if estimator == REFERENCE or expected is None:
                continue
            test = split_test(other, reference, network, negligible)
            row = {"estimator": estimator, "k": k, "network": network, "expected": expected,
                   "source": SOURCE, **welch_share(other, reference, network, negligible),
                   "test": test}
            if test is None:
                row["reading"], row["as_expected"] = None, None
            else:
                row["reading"] = "differs" if test["p"] < TEST_LEVEL else "no difference found"
                row["as_expected"] = (row["reading"] == "differs") == (expected == BIASED)
            rows.append({**row, "summary": agreement_line(row)})
    return rows


def agreement_line(row: dict) -> str:
    """One line, printed by diagnose and kept in the record."""
    name = snr_names()[row["estimator"]]
    line = (f"{name} {row['network']} mean at K={row['k']} against IWAE's: "
            f"{row['share']:.1%} of {row['coordinates']} coordinates differ at "
            f"{SIGNIFICANCE:.0%} (mean z^2 {row['mean_z2']:.2f})")
    test = row["test"]
    if test is None:
        return f"{line}; too few draws for the test"
    if row["as_expected"]:
        verdict = "as expected"
    elif row["expected"] == BIASED:  # a small bias can hide in the noise of a few draws
        verdict = "bias not detected at these draws"
    else:
        verdict = "NOT as expected"
    t = "undefined" if test["t"] is None else f"{test['t']:.2f}"
    return (f"{line}; test t({test['df']}) = {t}, p = {test['p']:.2g}: "
            f"{row['reading']}; {row['source']}: {row['expected']}: {verdict}")
