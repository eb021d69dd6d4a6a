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
# The mean over fresh draws of the same images (evaluate --test resampled:R), when scored: the
# yardstick that says which of the two single draws is the unusual one.
RESAMPLED = "test-resampled"

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
LM_DRAW_VS_FRESH = "LM test draw − fresh draws"
SEED_DRAW_VS_FRESH = "seed-123 draw − fresh draws"
EXTRA_EFFECTS = {
    RESAMPLING_ON_DYNAMIC: ((FIXED, "test-dynamic"), (DYNAMIC_50K, "test-dynamic")),
    LM_DRAW_VS_FRESH: ((DYNAMIC, "test-lm"), (DYNAMIC, RESAMPLED)),
    SEED_DRAW_VS_FRESH: ((DYNAMIC, "test-dynamic"), (DYNAMIC, RESAMPLED)),
}

Scores = Mapping[tuple[str, str], np.ndarray]  # (condition, test) -> per-image log-likelihood


@dataclass(frozen=True)
class PairedDifference:
    """NLL of one scoring minus another's on the same images: mean and paired s.e., with the
    per-image differences behind them (None for a plain estimate without images)."""

    mean: float
    se: float
    n: int
    per_image: np.ndarray | None = None


def paired_difference(worse_ll: np.ndarray, better_ll: np.ndarray) -> PairedDifference:
    """NLL(worse) - NLL(better) = mean over images of (ll_better - ll_worse), with the standard
    error of that mean (the images' spread of the difference, over sqrt(n))."""
    worse_ll, better_ll = np.asarray(worse_ll, np.float64), np.asarray(better_ll, np.float64)
    if worse_ll.shape != better_ll.shape or worse_ll.ndim != 1:
        raise ValueError(f"paired scores need the same images: shapes {worse_ll.shape} and "
                         f"{better_ll.shape}")
    d = better_ll - worse_ll
    return PairedDifference(float(d.mean()), standard_error(d), d.size, d)


def standard_error(values: np.ndarray) -> float:
    n = values.size
    return float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


def decompose(scores: Scores) -> dict[str, PairedDifference]:
    """Every effect (and the total) that the available scores allow, for one seed."""
    out = {}
    for name, (worse, better) in {**EFFECTS, TOTAL: TOTAL_TERMS, **EXTRA_EFFECTS}.items():
        if worse in scores and better in scores:
            out[name] = paired_difference(scores[worse], scores[better])
    return out


@dataclass(frozen=True)
class SeedSummary:
    """One effect over seeds, every seed scored on the same images. Two sources of noise:
    the seeds (training), measured by the spread of the per-seed effects, seed_se = sd /
    sqrt(seeds); and the images (which images, and which draw of each, were scored), shared by
    all seeds so that more seeds do not shrink it, image_se = the s.e. over images of the
    seed-averaged per-image differences. se combines both, sqrt(seed_se^2 + image_se^2), a
    slight overstatement since the seed spread holds some image noise too."""

    mean: float
    sd: float | None  # the per-seed effects' sd; None for one seed
    seed_se: float | None
    image_se: float
    se: float
    seeds: int


def over_seeds(per_seed: Sequence[PairedDifference]) -> SeedSummary:
    if not per_seed:
        raise ValueError("no seed to summarise")
    means = np.array([p.mean for p in per_seed])
    images = [p.per_image for p in per_seed]
    if all(v is not None and v.shape == images[0].shape for v in images):
        image_se = standard_error(np.mean(np.stack(images), axis=0))
    else:  # no shared images to average: the per-seed s.e.s, as if independent
        image_se = math.sqrt(sum(p.se ** 2 for p in per_seed)) / len(per_seed)
    if len(per_seed) == 1:
        return SeedSummary(float(means[0]), None, None, image_se, image_se, 1)
    sd = float(means.std(ddof=1))
    seed_se = sd / math.sqrt(len(per_seed))
    return SeedSummary(float(means.mean()), sd, seed_se, image_se,
                       math.sqrt(seed_se ** 2 + image_se ** 2), len(per_seed))


def format_summary(s: SeedSummary) -> str:
    """'+0.94 ± 0.12 (seeds: sd 0.21, s.e. 0.12; images: s.e. 0.05; 3 seeds)'."""
    if s.sd is None:
        return f"{s.mean:+.2f} ± {s.se:.2f} (1 seed: paired image s.e.)"
    return (f"{s.mean:+.2f} ± {s.se:.2f} (seeds: sd {s.sd:.2f}, s.e. {s.seed_se:.2f}; "
            f"images: s.e. {s.image_se:.2f}; {s.seeds} seeds)")
