"""The moments of many gradient draws: what an SNR study (snr.py) keeps of them, and what the
test of whether two estimators share their mean (gradient_agreement.py) reads."""

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
