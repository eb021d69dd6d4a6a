"""Differences between the suite and the authors' code, and the tolerance each must meet.

Tolerance: the suite and the authors' code both compute in float32, in different orders, so
they cannot agree bit for bit after the first rounding. How far float32 rounding alone carries
a quantity is measured, not assumed: the authors' code is run again with Theano's floatX=float64
on the same draws from the same (float32) initial parameters, and the distance d64 between its
float32 and float64 results is what rounding makes of that quantity at that step. Two float32
implementations of one function should each lie about d64 from the exact result, so the suite
may differ from the authors' float32 run by at most ROUNDING_FACTOR * d64 (never less than
FLOOR, for quantities float64 reproduces exactly). A modelling difference (another beta, a
missing term, a shifted draw) moves a quantity by orders of magnitude more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np

ROUNDING_FACTOR = 10.0
FLOOR = 2.0**-20  # relative, about 16 float32 ulps
BIAS_ULPS = 1  # the initial output bias: their float32 log is the platform's logf


@dataclass
class Quantity:
    case: str
    name: str
    measured: float
    tolerance: float
    detail: str = ""

    @property
    def holds(self) -> bool:
        return bool(np.isfinite(self.measured) and self.measured <= self.tolerance)

    @property
    def verdict(self) -> str:
        return "agrees" if self.holds else "DIFFERS"

    def as_dict(self) -> dict:
        return asdict(self) | {"verdict": self.verdict}


def relative(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the max-norm relative difference (elementwise ratios explode on
    the zeros that biases and first moments start from)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = np.max(np.abs(b)) if b.size else 0.0
    diff = np.max(np.abs(a - b)) if b.size else 0.0
    if scale > 0:
        return float(diff / scale)
    return 0.0 if diff == 0 else float("inf")  # 0 * inf would be NaN for two zero arrays


def worst(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], prefix: str
          ) -> tuple[float, str]:
    """The largest relative difference over the arrays named prefix*, and which one."""
    names = sorted(n for n in b if n.startswith(prefix))
    if not names or any(n not in a for n in names):
        return float("inf"), "arrays missing"
    values = [(relative(a[n], b[n]), n) for n in names]
    return max(values)


def tolerance(rounding: float) -> float:
    return max(ROUNDING_FACTOR * rounding, FLOOR)


def ulps_apart(a: np.ndarray, b: np.ndarray) -> int:
    """The largest distance in float32 units in the last place."""
    ia = np.asarray(a, dtype=np.float32).view(np.int32).astype(np.int64)
    ib = np.asarray(b, dtype=np.float32).view(np.int32).astype(np.int64)
    return int(np.max(np.abs(ia - ib))) if ia.size else 0
