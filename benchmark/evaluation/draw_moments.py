"""The moments of many gradient draws: what an SNR study (snr.py) keeps of them, what the test
of whether two estimators share their mean (gradient_agreement.py) reads, and the one formula
both take them from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GroupSums:
    """Per network, the sums and sums of squares of each jackknife group's draws (G, coordinates),
    and how many draws each group holds (G,)."""

    sums: dict[str, np.ndarray]
    squares: dict[str, np.ndarray]
    counts: np.ndarray


@dataclass(frozen=True)
class Moments:
    """Per network, the mean and standard deviation of every gradient coordinate; the same
    without each jackknife group of draws in turn (empty when the draws are too few); and the
    groups' own sums (None when there are no groups)."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    draws: int
    leave_one_out: tuple[Moments, ...] = ()
    groups: GroupSums | None = None


def mean_and_variance(sums: np.ndarray, squares: np.ndarray, draws: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, the mean and the unbiased variance of `draws` draws from their sum and
    their sum of squares (a variance that rounding pushed below 0 is 0)."""
    mean = sums / draws
    return mean, np.maximum(squares - draws * mean ** 2, 0.0) / (draws - 1)
