"""The arithmetic of "why fixed binarization scores worse": paired differences, their standard
errors, the exact split of the gap into three effects, and their summary over seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.report.decomposition import (
    DYNAMIC,
    DYNAMIC_50K,
    EFFECTS,
    FIXED,
    RESAMPLING_ON_DYNAMIC,
    TOTAL,
    PairedDifference,
    decompose,
    format_summary,
    over_seeds,
    paired_difference,
)


def known_scores(n: int = 400, seed: int = 0) -> dict[tuple[str, str], np.ndarray]:
    """Per-image log-likelihoods with known shifts: the fixed model loses 1.0 nat on LM's test
    draw against dynamic-50k, dynamic-50k 0.25 against dynamic-59.6k, and LM's draw costs the
    dynamic model 0.5 against the seed-123 draw."""
    rng = np.random.default_rng(seed)
    base = rng.normal(-90.0, 20.0, n)
    jitter = {key: rng.normal(0.0, 0.01, n) for key in ("a", "b", "c", "d", "e", "f")}
    return {
        (DYNAMIC, "test-dynamic"): base + jitter["a"],
        (DYNAMIC, "test-lm"): base - 0.5 + jitter["b"],
        (DYNAMIC_50K, "test-lm"): base - 0.75 + jitter["c"],
        (FIXED, "test-lm"): base - 1.75 + jitter["d"],
        (DYNAMIC_50K, "test-dynamic"): base - 0.25 + jitter["e"],
        (FIXED, "test-dynamic"): base - 1.35 + jitter["f"],
    }


def test_each_effect_is_the_known_shift() -> None:
    effects = decompose(known_scores())
    assert effects["resampling"].mean == pytest.approx(1.0, abs=0.005)
    assert effects["more images"].mean == pytest.approx(0.25, abs=0.005)
    assert effects["test draw"].mean == pytest.approx(0.5, abs=0.005)
    assert effects[RESAMPLING_ON_DYNAMIC].mean == pytest.approx(1.1, abs=0.005)


def test_the_three_effects_sum_exactly_to_the_total() -> None:
    """Image by image the differences telescope, so the means add up to rounding."""
    effects = decompose(known_scores(seed=3))
    assert sum(effects[name].mean for name in EFFECTS) == pytest.approx(
        effects[TOTAL].mean, abs=1e-9)
    assert effects[TOTAL].mean == pytest.approx(1.75, abs=0.005)


def test_the_mean_over_fresh_draws_says_which_single_draw_is_unusual() -> None:
    from benchmark.report.decomposition import LM_DRAW_VS_FRESH, RESAMPLED, SEED_DRAW_VS_FRESH

    scores = known_scores()
    scores[(DYNAMIC, RESAMPLED)] = scores[(DYNAMIC, "test-dynamic")] + 0.05
    effects = decompose(scores)
    assert effects[LM_DRAW_VS_FRESH].mean == pytest.approx(0.55, abs=0.005)
    assert effects[SEED_DRAW_VS_FRESH].mean == pytest.approx(0.05, abs=0.005)


def test_effects_whose_scores_are_missing_are_left_out() -> None:
    scores = known_scores()
    del scores[(DYNAMIC_50K, "test-lm")]
    assert set(decompose(scores)) == {"test draw", TOTAL, RESAMPLING_ON_DYNAMIC}


def test_the_sign_says_which_scores_worse() -> None:
    """NLL(worse) - NLL(better) from log-likelihoods: a lower log-likelihood is a higher NLL."""
    d = paired_difference(np.array([-91.0, -93.0]), np.array([-90.0, -90.0]))
    assert d.mean == pytest.approx(2.0)


def test_paired_standard_error_matches_the_spread_over_replications() -> None:
    """Seeded simulation: 400 replications of 500 paired images whose differences have sd 2
    around a true effect of 0.3 (and per-image values with sd 20 that pairing removes). The
    sd of the 400 estimated means must equal the typical paired s.e. within the sampling error
    of an sd from 400 values (relative s.e. 1/sqrt(2 * 399) = 3.5%; 4 of them allowed), and
    the mean estimate must be within 4 of its s.e.s of the truth."""
    rng = np.random.default_rng(20151)
    means, ses = [], []
    for _ in range(400):
        image = rng.normal(-90.0, 20.0, 500)
        better = image + rng.normal(0.0, 1.0, 500)
        worse = image - 0.3 + rng.normal(0.0, math.sqrt(3.0), 500)
        d = paired_difference(worse, better)
        means.append(d.mean)
        ses.append(d.se)
    spread = float(np.std(means, ddof=1))
    typical_se = float(np.sqrt(np.mean(np.square(ses))))
    assert typical_se == pytest.approx(2.0 / math.sqrt(500), rel=0.02)
    assert spread == pytest.approx(typical_se, rel=4 / math.sqrt(2 * 399))
    assert abs(np.mean(means) - 0.3) < 4 * spread / math.sqrt(400)


def test_unpaired_images_are_refused() -> None:
    with pytest.raises(ValueError, match="same images"):
        paired_difference(np.zeros(3), np.zeros(4))


def test_over_seeds_combines_the_seeds_spread_and_the_shared_images_noise() -> None:
    """Three seeds on the same 4 images: the seed part is the spread of the per-seed means; the
    image part is the s.e. over images of the seed-averaged differences (per-image values
    [1, 2, 3, 6] averaged over seeds), not the per-seed s.e.s as if the images were new."""
    base = np.array([0.0, 1.0, 2.0, 5.0])
    per_seed = [paired_difference(np.zeros(4), base + shift) for shift in (0.0, 1.0, 2.0)]
    s = over_seeds(per_seed)
    # per seed: mean(base) + shift = 2, 3, 4
    assert (s.mean, s.sd, s.seeds) == (pytest.approx(3.0), pytest.approx(1.0), 3)
    assert s.seed_se == pytest.approx(1.0 / math.sqrt(3))
    averaged = base + 1.0
    assert s.image_se == pytest.approx(averaged.std(ddof=1) / 2)
    assert s.se == pytest.approx(math.hypot(1.0 / math.sqrt(3), averaged.std(ddof=1) / 2))
    assert format_summary(s) == (f"+3.00 ± {s.se:.2f} (seeds: sd 1.00, s.e. 0.58; images: "
                                 f"s.e. {s.image_se:.2f}; 3 seeds)")


def test_image_noise_does_not_shrink_with_more_seeds_on_the_same_images() -> None:
    """The same image noise seen by 2 or by 20 seeds: image_se stays, where the per-seed s.e.s
    combined as independent would shrink by sqrt(10)."""
    rng = np.random.default_rng(7)
    noise = rng.normal(0.0, 2.0, 500)
    for seeds in (2, 20):
        per_seed = [paired_difference(np.zeros(500), noise + rng.normal(0.3, 0.01))
                    for _ in range(seeds)]
        assert over_seeds(per_seed).image_se == pytest.approx(2.0 / math.sqrt(500), rel=0.1)


def test_one_seed_falls_back_to_its_paired_standard_error() -> None:
    s = over_seeds([PairedDifference(-0.4, 0.2, 50)])
    assert s.sd is None and s.se == 0.2
    assert format_summary(s) == "-0.40 ± 0.20 (1 seed: paired image s.e.)"
