"""Why fixed binarization scores worse: the gap taken apart, from per-image log-likelihoods.

Three training conditions share the same gray images: F trains on the Larochelle-Murray (LM)
file's one binarization of 50,000 images (mnist-fixed), D50 on fresh draws of the same 50,000
(mnist-dynamic-lm50k), D60 on fresh draws of the paper's 59,600 (mnist-dynamic). Each is scored
on the same test images under two binarizations: LM's test file (lm) and the suite's seed-123
draw (dynamic). With NLL(C, t) the test NLL of condition C on test binarization t, the gap that
the paper's Table 3 minus Table 1 measures, NLL(F, lm) - NLL(D60, dynamic), is exactly the sum

    resampling    NLL(F, lm)   - NLL(D50, lm)       one draw against fresh draws, same images
    more images   NLL(D50, lm) - NLL(D60, lm)       50,000 against 59,600 images, both dynamic
    test draw     NLL(D60, lm) - NLL(D60, dynamic)  LM's test draw against the suite's

image by image, so each term is a paired difference with a paired standard error. Positive
means the first condition scores worse (higher NLL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

FIXED, DYNAMIC_50K, DYNAMIC = "mnist-fixed", "mnist-dynamic-lm50k", "mnist-dynamic"
CONDITIONS = (FIXED, DYNAMIC_50K, DYNAMIC)
TESTS = ("test-lm", "test-dynamic")

# name -> ((condition, test) scored worse when positive, (condition, test) it is compared with)
EFFECTS = {
    "resampling": ((FIXED, "test-lm"), (DYNAMIC_50K, "test-lm")),
    "more images": ((DYNAMIC_50K, "test-lm"), (DYNAMIC, "test-lm")),
    "test draw": ((DYNAMIC, "test-lm"), (DYNAMIC, "test-dynamic")),
}
TOTAL = "total"  # fixed on its own test file against dynamic on its own: Table 3 - Table 1
TOTAL_TERMS = ((FIXED, "test-lm"), (DYNAMIC, "test-dynamic"))
# The resampling effect measured on the suite's draw instead: does it depend on the test draw?
RESAMPLING_ON_DYNAMIC = "resampling (dynamic test)"
EXTRA_EFFECTS = {RESAMPLING_ON_DYNAMIC: ((FIXED, "test-dynamic"), (DYNAMIC_50K, "test-dynamic"))}

Scores = Mapping[tuple[str, str], np.ndarray]  # (condition, test) -> per-image log-likelihood


@dataclass(frozen=True)
class PairedDifference:
    """NLL of one scoring minus another's on the same images: mean and paired s.e."""

    mean: float
    se: float
    n: int


def paired_difference(worse_ll: np.ndarray, better_ll: np.ndarray) -> PairedDifference:
    """NLL(worse) - NLL(better) = mean over images of (ll_better - ll_worse), with the standard
    error of that mean (the images' spread of the difference, over sqrt(n))."""
    worse_ll, better_ll = np.asarray(worse_ll, np.float64), np.asarray(better_ll, np.float64)
    if worse_ll.shape != better_ll.shape or worse_ll.ndim != 1:
        raise ValueError(f"paired scores need the same images: shapes {worse_ll.shape} and "
                         f"{better_ll.shape}")
    d = better_ll - worse_ll
    n = d.size
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return PairedDifference(float(d.mean()), se, n)


def decompose(scores: Scores) -> dict[str, PairedDifference]:
    """Every effect (and the total) that the available scores allow, for one seed."""
    out = {}
    for name, (worse, better) in {**EFFECTS, TOTAL: TOTAL_TERMS, **EXTRA_EFFECTS}.items():
        if worse in scores and better in scores:
            out[name] = paired_difference(scores[worse], scores[better])
    return out


@dataclass(frozen=True)
class SeedSummary:
    """One effect over seeds: the mean of the per-seed effects, their sd, the standard error of
    the mean from that spread (seed-to-seed and image noise together), and the image-noise part
    alone (the per-seed paired s.e.s combined)."""

    mean: float
    sd: float | None  # None for one seed
    se: float  # sd / sqrt(seeds); the paired s.e. itself for one seed
    image_se: float
    seeds: int


def over_seeds(per_seed: Sequence[PairedDifference]) -> SeedSummary:
    if not per_seed:
        raise ValueError("no seed to summarise")
    means = np.array([p.mean for p in per_seed])
    image_se = math.sqrt(sum(p.se ** 2 for p in per_seed)) / len(per_seed)
    if len(per_seed) == 1:
        return SeedSummary(float(means[0]), None, per_seed[0].se, image_se, 1)
    sd = float(means.std(ddof=1))
    return SeedSummary(float(means.mean()), sd, sd / math.sqrt(len(per_seed)), image_se,
                       len(per_seed))


def format_summary(s: SeedSummary) -> str:
    """'+0.94 ± 0.12 (sd 0.21, image s.e. 0.05, 3 seeds)'."""
    if s.sd is None:
        return f"{s.mean:+.2f} ± {s.se:.2f} (1 seed: paired image s.e.)"
    return (f"{s.mean:+.2f} ± {s.se:.2f} (sd {s.sd:.2f}, image s.e. {s.image_se:.2f}, "
            f"{s.seeds} seeds)")
