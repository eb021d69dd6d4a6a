"""Whether a measured number agrees with the published one, and the tolerance that decides it.

NLL: the published number is one training run of the authors' code, and a port cannot reproduce
it bit for bit, so the difference carries that run's noise (sigma_run, about 0.1 nat: the
paper's own k=1 VAE and IWAE runs, the same algorithm, differ by up to 0.02 nats in Table 1,
p. 7, and reimplementations report 0.06-0.10 nat between seeds; published.json "noise" holds the
figure and its reasons) plus the uncertainty of our own measurement u:

    |measured - published| <= COVERAGE * sqrt(sigma_run^2 + u^2)

with u = sd / sqrt(n) over n >= 2 seeds, or sqrt(sigma_run^2 + se^2) for a single seed (one run
is itself one draw of the run-to-run noise; se is the L_5000 estimator's standard error).
COVERAGE = 2 makes it a two-sided ~95% band for Gaussian noise.

Active units: each layer's count within +/-2 of the paper's (definition details and run noise
move counts by a unit or two; the paper's own k=1 twins on OMNIGLOT with two stochastic layers
differ by 2+1, Table 1, p. 7).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

COVERAGE = 2.0
AGREES = "agrees"
DIFFERS = "differs"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # AGREES or DIFFERS
    difference: float | tuple[float, ...]
    tolerance: float

    @property
    def agrees(self) -> bool:
        return self.outcome == AGREES


def measurement_uncertainty(sd: float | None, n: int, se: float | None, run_sd: float) -> float:
    """Standard uncertainty of a measured mean NLL as an estimate of the protocol's value."""
    if n >= 2 and sd is not None:
        return sd / math.sqrt(n)
    return math.sqrt(run_sd**2 + (se or 0.0) ** 2)


def nll_tolerance(sd: float | None, n: int, se: float | None, run_sd: float) -> float:
    u = measurement_uncertainty(sd, n, se, run_sd)
    return COVERAGE * math.sqrt(run_sd**2 + u**2)


def nll_verdict(measured: float, published: float, tolerance: float) -> Verdict:
    difference = measured - published
    outcome = AGREES if abs(difference) <= tolerance else DIFFERS
    return Verdict(outcome, difference, tolerance)


def active_units_verdict(measured: Sequence[float], published: Sequence[int],
                         per_layer: int) -> Verdict:
    """Agrees when every layer is within per_layer units; a layer-count mismatch differs."""
    if len(measured) != len(published):
        return Verdict(DIFFERS, (), float(per_layer))
    difference = tuple(m - p for m, p in zip(measured, published, strict=True))
    outcome = AGREES if all(abs(d) <= per_layer + 1e-9 for d in difference) else DIFFERS
    return Verdict(outcome, difference, float(per_layer))
