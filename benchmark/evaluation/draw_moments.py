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
    """Per network, the mean and standard deviation of every gradient coordinate, and the
    jackknife groups' own sums (None when the draws are too few for groups)."""

    mean: dict[str, np.ndarray]
    std: dict[str, np.ndarray]
    draws: int
    groups: GroupSums | None = None

    @property
    def leave_one_out(self) -> tuple[Moments, ...]:
        """The moments without each group of draws in turn, from the groups' sums (computed on
        each call; empty without groups)."""
        groups = self.groups
        if groups is None:
            return ()
        total = {n: s.sum(0) for n, s in groups.sums.items()}
        total_squares = {n: s.sum(0) for n, s in groups.squares.items()}
        return tuple(
            moments_from({n: total[n] - groups.sums[n][g] for n in total},
                         {n: total_squares[n] - groups.squares[n][g] for n in total},
                         self.draws - int(groups.counts[g]))
            for g in range(len(groups.counts)))


def moments_from(sums: dict[str, np.ndarray], squares: dict[str, np.ndarray], draws: int,
                 groups: GroupSums | None = None) -> Moments:
    """Per network, the mean and standard deviation of `draws` draws from their sums and sums
    of squares."""
    mean, std = {}, {}
    for network in sums:
        mean[network], var = mean_and_variance(sums[network], squares[network], draws)
        std[network] = np.sqrt(var)
    return Moments(mean, std, draws, groups)


def mean_and_variance(sums: np.ndarray, squares: np.ndarray, draws: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per coordinate, the mean and the unbiased variance of `draws` draws from their sum and
    their sum of squares (a variance that rounding pushed below 0 is 0)."""
    mean = sums / draws
    return mean, np.maximum(squares - draws * mean ** 2, 0.0) / (draws - 1)


def varying(spread: np.ndarray, negligible: float) -> np.ndarray:
    """Which coordinates vary over the draws: those whose spread (a standard deviation or a
    standard error) is more than `negligible` times the median one. The others are constant
    over the draws (a gradient exactly 0 in every draw, say): they have no SNR and carry no
    comparison."""
    return spread > negligible * np.median(spread)
