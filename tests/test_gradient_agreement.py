"""Whether an estimator's mean is IWAE's, on an SNR study's own draws
(benchmark.evaluation.gradient_agreement)."""

import numpy as np
import pytest
import torch
from scipy import stats
from test_estimators import X_DIM, all_binary_images

from benchmark.evaluation.draw_moments import GroupSums, Moments
from benchmark.evaluation.gradient_agreement import (
    BIASED,
    SAME,
    TEST_LEVEL,
    agreement_rows,
    expected_relation,
    split_test,
)
from benchmark.evaluation.snr import snr_study
from benchmark.models.network import Architecture, BlockSpec, IWAEModel

SMALL = Architecture(encoder=(BlockSpec(X_DIM, (16,), 2),), decoder=(BlockSpec(2, (16,), X_DIM),))


def moments_of(draws: np.ndarray, groups: int) -> Moments:
    """Moments of explicit draws (n, coordinates), the same on both networks, with contiguous
    groups as benchmark.evaluation.snr.gradient_moments makes them."""
    n = draws.shape[0]
    member = np.arange(n) * groups // n
    sums = np.stack([draws[member == g].sum(0) for g in range(groups)])
    squares = np.stack([(draws[member == g] ** 2).sum(0) for g in range(groups)])
    counts = np.bincount(member, minlength=groups)
    both = ("encoder", "decoder")
    return Moments({w: draws.mean(0) for w in both}, {w: draws.std(0, ddof=1) for w in both}, n,
                   groups=GroupSums({w: sums for w in both}, {w: squares for w in both}, counts))


def test_split_test_known_answer():
    """Eight draws in four groups of two, two coordinates. The even groups (draws 0, 1, 4, 5) fix
    the direction (difference of means / squared standard error), the odd groups' differences of
    means are projected on it, and t is their mean over its standard error, with 1 df."""
    gen = np.random.default_rng(0)
    other, reference = gen.normal(size=(8, 2)) + [0.5, 0.0], gen.normal(size=(8, 2))
    fit, test = [0, 1, 4, 5], [[2, 3], [6, 7]]
    se2 = other[fit].var(0, ddof=1) / 4 + reference[fit].var(0, ddof=1) / 4
    direction = (other[fit].mean(0) - reference[fit].mean(0)) / se2
    projections = [direction @ (other[g].mean(0) - reference[g].mean(0)) for g in test]
    t = np.mean(projections) / (np.std(projections, ddof=1) / np.sqrt(2))
    result = split_test(moments_of(other, 4), moments_of(reference, 4), "encoder", 1e-6)
    assert result["df"] == 1
    assert result["t"] == pytest.approx(t, rel=1e-9)
    assert result["p"] == pytest.approx(stats.t.sf(t, 1), rel=1e-9)
    # identical draws: nothing differs, no t, and nothing a JSON record cannot hold
    same = split_test(moments_of(other, 4), moments_of(other, 4), "encoder", 1e-6)
    assert same == {"t": None, "df": 1, "p": 1.0}
    # three groups leave one odd group: no test
    assert split_test(moments_of(other[:6], 3), moments_of(reference[:6], 3), "encoder",
                      1e-6) is None


def test_the_literature_table_of_means():
    """Tucker et al. 2018: DReG is unbiased; STL only at K = 1; the decoder's gradient of STL,
    DReG and RWS is IWAE's own; RWS's encoder update and the VAE estimate something else."""
    assert expected_relation("dreg", "encoder", 1) == expected_relation("dreg", "encoder",
                                                                        100) == SAME
    assert expected_relation("stl", "encoder", 1) == SAME
    assert expected_relation("stl", "encoder", 2) == BIASED
    assert all(expected_relation(e, "decoder", 10) == SAME for e in ("stl", "dreg", "rws"))
    assert expected_relation("rws", "encoder", 10) is None
    assert expected_relation("vae", "decoder", 10) is None
    assert agreement_rows({"dreg": None}, 10, 1e-6) == []  # no IWAE draws: nothing to compare


def small_model(seed: int) -> IWAEModel:
    model = IWAEModel(1, arch=SMALL).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    return model


def test_the_test_holds_its_level_where_means_agree_and_finds_stl_bias():
    """20 seeded random small models (q far from the posterior), K = 1 and 8, 80 draws: ten
    groups, a t-test with 4 df. Seven comparisons a model share their mean (DReG's encoder at
    both K, STL's at K = 1, the decoders), so their 140 p-values are uniform: p < 0.1 in about
    14 of them (binomial sd 3.5; the band is +-3.4 sd; measured 16), and none reads "differs"
    (p < 0.001: 13% chance in 140; smallest measured 0.004). STL's encoder at K = 8 is biased:
    the test finds it in most models (measured 75%). A DReG without its second weight (STL's
    gradient) fails both first assertions: 32 p-values under 0.1, and 11 of its 20 encoder rows
    at K = 8 read "differs"."""
    same, stl_biased = [], []
    for seed in range(20):
        study = snr_study(small_model(seed), all_binary_images()[::4], (1, 8),
                          ("iwae", "stl", "dreg"), 80, seed=seed, rows_per_pass=1 << 20)
        for row in study.agreement:
            assert row["test"]["df"] == 4
            assert row["as_expected"] == ((row["reading"] == "differs") == (row["expected"]
                                                                            == BIASED))
            (same if row["expected"] == SAME else stl_biased).append(row["test"]["p"])
    assert len(same) == 140 and len(stl_biased) == 20
    assert 4 <= sum(p < 0.1 for p in same) <= 26
    assert min(same) >= TEST_LEVEL
    assert stats.kstest(same, "uniform").pvalue > 0.001
    assert np.mean(np.array(stl_biased) < TEST_LEVEL) >= 0.6
