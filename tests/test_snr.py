"""The gradient signal-to-noise diagnostic (benchmark.evaluation.snr, `diagnose --snr`)."""

import json

import numpy as np
import pytest
import torch
from test_estimators import all_binary_images, fitted_tiny_model, tiny_model

from benchmark.cli import main
from benchmark.config import RunConfig
from benchmark.evaluation.snr import (
    _one_pass,
    effective_sample_size,
    gradient_moments,
    jackknife_groups,
    noise_floor,
    prediction_checks,
    replicate,
    slope_interval,
    snr_objective,
    snr_study,
    summarise,
    weight_regime,
)
from benchmark.training.loop import train_run


def test_moments_are_those_of_independent_draws_taken_one_by_one():
    """Batched draws (members) give the mean and sd of the same estimates drawn one at a time:
    checked against a loop over single draws with the same noise."""
    model = tiny_model(1, seed=3)
    x = all_binary_images()[::9]  # (8, 6)
    objective = snr_objective("dreg", 4)
    batched = gradient_moments(model, x, objective, 12, torch.Generator().manual_seed(1),
                               rows_per_pass=4 * 8 * 5)  # 5 members a pass: 5 + 5 + 2
    # the same noise, drawn in the same order, one estimate per pass
    single = gradient_moments(model, x, objective, 12, torch.Generator().manual_seed(1),
                              rows_per_pass=1)
    for network in ("encoder", "decoder"):
        np.testing.assert_allclose(batched.mean[network], single.mean[network], rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(batched.std[network], single.std[network], rtol=1e-9,
                                   atol=1e-12)
    assert batched.std["encoder"].max() > 0


def test_leave_one_group_out_moments_are_those_of_the_remaining_draws():
    """The jackknife's replicates: without group g (draws 2g and 2g + 1 of 12: six groups of
    two), the mean and sd are those of the other ten draws, computed here from the draws
    themselves (the same noise, drawn one estimate at a time: K x B = 32 noise values a draw,
    a multiple of the 16 that torch's CPU randn fills at once, so that five draws taken in one
    call are the five taken one by one)."""
    model = tiny_model(1, seed=3)
    x = all_binary_images()[::9]
    objective = snr_objective("iwae", 4)
    moments = gradient_moments(model, x, objective, 12, torch.Generator().manual_seed(4),
                               rows_per_pass=4 * 8 * 5)
    assert jackknife_groups(12) == 6 and len(moments.leave_one_out) == 6
    single, generator = replicate(model, 1), torch.Generator().manual_seed(4)
    draws = [_one_pass(single, x, objective, generator) for _ in range(12)]
    for network in ("encoder", "decoder"):
        stacked = torch.cat([d[network] for d in draws]).double().numpy()  # (12, coordinates)
        for group, part in enumerate(moments.leave_one_out):
            rest = np.delete(stacked, [2 * group, 2 * group + 1], axis=0)
            assert part.draws == 10
            np.testing.assert_allclose(part.mean[network], rest.mean(0), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(part.std[network], rest.std(0, ddof=1), rtol=1e-8,
                                       atol=1e-12)


def test_too_few_draws_for_groups_give_no_replicates():
    assert [jackknife_groups(n) for n in (2, 3, 4, 9, 20, 400)] == [0, 0, 2, 4, 10, 10]
    moments = gradient_moments(tiny_model(1), all_binary_images()[::9], snr_objective("iwae", 2),
                               3, torch.Generator().manual_seed(0))
    assert moments.leave_one_out == ()
    assert all(s.median_replicates == () for s in summarise(moments, "iwae", 2))


def test_jackknife_standard_error_matches_the_spread_of_slopes_over_seeds():
    """The slope's jackknife standard error against the standard deviation of the slope over
    24 independently seeded studies (the fitted tiny model, IWAE, K = 10 and 100, 60 draws).
    The jackknife's variance is biased upwards (Efron & Stein 1981): over 40 seeds the ratio
    spread / mean error measured 0.77 for the encoder and 0.84 to 1.06 for the decoder. The
    spread from 24 studies has a relative standard error of about 1/sqrt(2 x 23) ~ 15%, so the
    band is [0.5, 1.4]. Leaving out the factor (G - 1) / G puts the ratio at 1.96 (measured);
    multiplying by G - 1 instead divides it by sqrt(10), to about 0.2."""
    model = fitted_tiny_model(1)
    x = all_binary_images()[::8]
    slopes_by_seed, errors = {"encoder": [], "decoder": []}, {"encoder": [], "decoder": []}
    for seed in range(24):
        rows = snr_study(model, x, (10, 100), ("iwae",), 60, seed=seed,
                         rows_per_pass=1 << 20).slopes
        for row in rows:
            assert row["jackknife_groups"] == 10
            slopes_by_seed[row["network"]].append(row["slope"])
            errors[row["network"]].append(row["slope_se"])
    for network in ("encoder", "decoder"):
        ratio = np.std(slopes_by_seed[network], ddof=1) / np.mean(errors[network])
        assert 0.5 < ratio < 1.4, (network, ratio)


@pytest.mark.parametrize("draws", [10, 400])
def test_noise_floor_is_the_median_snr_of_zero_mean_coordinates(draws):
    """200,000 coordinates of Gaussian draws with mean 0: the median of |mean| / sd is the
    floor. The sample median's relative standard error here is about 0.3%."""
    rng = np.random.default_rng(draws)
    samples = rng.standard_normal((draws, 200_000))
    snr = np.abs(samples.mean(0)) / samples.std(0, ddof=1)
    assert np.median(snr) == pytest.approx(noise_floor(draws), rel=0.015)


def test_slope_interval_and_trend_known_answers():
    # replicates 0.1 apart around -0.5, ten groups: se^2 = 9/10 * sum of squared deviations
    replicates = [-0.5 + 0.1 * (g - 4.5) for g in range(10)]
    row = slope_interval(-0.5, replicates)
    deviations = np.array(replicates) + 0.5
    assert row["slope_se"] == pytest.approx(np.sqrt(0.9 * np.sum(deviations ** 2)))
    half = 2.2621571627 * row["slope_se"]  # t(9) at 97.5%
    assert row["interval"] == pytest.approx([-0.5 - half, -0.5 + half])
    assert row["trend"] == "flat" and row["jackknife_groups"] == 10  # se ~ 0.27: 0 inside
    assert slope_interval(-0.5, [-0.5 + 0.001 * g for g in range(10)])["trend"] == "falls"
    assert slope_interval(0.2, [0.2 + 0.001 * g for g in range(10)])["trend"] == "rises"


def test_prediction_checks_read_the_trend_not_the_sign():
    """"Does not fall" holds for a flat or rising slope; "falls" needs an interval below 0: a
    negative slope whose interval contains 0 does not confirm it."""
    rows = [{"estimator": "iwae", "network": "encoder", "slope": -0.04, "trend": "flat",
             "interval": [-0.09, 0.01]},
            {"estimator": "iwae", "network": "decoder", "slope": 0.1, "trend": "rises",
             "interval": [0.08, 0.12]},
            {"estimator": "dreg", "network": "encoder", "slope": -0.04, "trend": "falls",
             "interval": [-0.05, -0.03]},
            {"estimator": "stl", "network": "encoder", "slope": 0.04, "trend": "rises",
             "interval": [0.03, 0.05]}]
    checks = {(c["estimator"], c["network"]): c for c in prediction_checks(rows)}
    assert set(checks) == {("iwae", "encoder"), ("iwae", "decoder"), ("dreg", "encoder")}
    assert checks[("iwae", "encoder")]["holds"] is False
    assert checks[("iwae", "decoder")]["holds"] is True
    assert checks[("dreg", "encoder")]["holds"] is False
    rows[2].update(trend="flat", interval=[-0.05, 0.01])
    assert prediction_checks(rows)[2]["holds"] is True
    del rows[0]["trend"], rows[0]["interval"]  # too few draws for an interval: not decided
    assert prediction_checks(rows)[0]["holds"] is None


def test_coordinates_without_variance_are_excluded_from_the_summary():
    model = tiny_model(1, seed=3)
    x = all_binary_images()[:1]  # the all-zero image: no first-layer weight gets a gradient
    moments = gradient_moments(model, x, snr_objective("iwae", 3), 50,
                               torch.Generator().manual_seed(2))
    encoder = next(s for s in summarise(moments, "iwae", 3) if s.network == "encoder")
    assert encoder.excluded == 6 * 8  # the 6 x 8 first-layer weights
    assert encoder.coordinates == sum(p.numel() for p in model.encoder_parameters()) - 48
    assert np.isfinite(encoder.median) and encoder.q1 <= encoder.median <= encoder.q3


def test_snr_slopes_have_rainforths_signs_on_a_fitted_model():
    """Rainforth et al. 2018: for IWAE the inference network's SNR falls with K and the
    generative network's rises; Tucker et al. 2018: DReG's inference SNR does not fall.

    Seeded draws on the fitted tiny model (its weights are light-tailed, so K = 10..1000 is in
    the large-K regime the theory describes). 1000 draws: IWAE's encoder SNR at K = 1000 is
    about 0.03, close to the floor 0.67 / sqrt(draws) that |mean| / sd shows for a coordinate
    whose mean is 0 (0.039 at 300 draws, where the slope's interval still contains 0). The
    slopes' signs are asserted with margins of 0.15 (predicted: -0.5 and +0.5), and each
    prediction through the jackknife interval the diagnostic reports."""
    model = fitted_tiny_model(1)
    x = all_binary_images()[::8]
    summaries, slopes, _ = snr_study(model, x, (10, 100, 1000), ("iwae", "dreg"), 1000,
                                     seed=0, rows_per_pass=1 << 20)
    slope = {(s["estimator"], s["network"]): s["slope"] for s in slopes}
    assert slope[("iwae", "encoder")] < -0.15
    assert slope[("iwae", "decoder")] > 0.15
    assert slope[("dreg", "encoder")] > 0.15
    assert len(summaries) == 3 * 2 * 2
    assert [c["holds"] for c in prediction_checks(slopes)] == [True, True, True]


def test_effective_sample_size_known_answers():
    """Kish's ESS from log-weights: K for equal weights whatever their scale, 1 when one weight
    holds the mass, m for m equal weights among negligible ones; along dim 0 per column."""
    equal = torch.full((50, 2), -700.0, dtype=torch.float64)  # exp(-700) alone would underflow
    torch.testing.assert_close(effective_sample_size(equal), torch.full((2,), 50.0,
                                                                         dtype=torch.float64))
    dominant = torch.tensor([0.0, -800.0, -900.0], dtype=torch.float64)
    assert effective_sample_size(dominant).item() == pytest.approx(1.0, abs=1e-12)
    three = torch.tensor([5.0, 5.0, 5.0, -1000.0], dtype=torch.float64)
    assert effective_sample_size(three).item() == pytest.approx(3.0, rel=1e-12)
    # two weights w and 2w: (3w)^2 / (5 w^2) = 1.8
    two = torch.log(torch.tensor([1.0, 2.0], dtype=torch.float64))
    assert effective_sample_size(two).item() == pytest.approx(1.8, rel=1e-12)


def test_weight_regime_tells_the_large_k_regime_from_a_few_dominant_weights():
    """The fitted tiny model's weights are light-tailed: ESS grows like K (measured exponent
    0.99, ESS/K about 0.83 at every K). A model whose q is far narrower than its posterior
    (sigma = e^-4) has a few dominant weights: ESS grows like K^0.49. The threshold 0.9 lies far
    from both; 16 draws of each ESS keep its noise to a few percent, about 0.01 in the
    exponent over a factor 100 in K."""
    x = all_binary_images()[::8]
    fitted = weight_regime(fitted_tiny_model(1), x, (10, 100, 1000), seed=0)
    assert fitted["large_k"] and fitted["ess_exponent"] > 0.95
    assert [r["k"] for r in fitted["ess"]] == [10, 100, 1000]
    assert all(0.7 < r["ess_fraction"] <= 1.0 for r in fitted["ess"])
    assert "the large-K regime" in fitted["summary"]
    narrow = tiny_model(1, seed=3)
    with torch.no_grad():
        narrow.encoder[0].log_sigma.bias.fill_(-4.0)
    mismatched = weight_regime(narrow, x, (10, 100, 1000), seed=0)
    assert not mismatched["large_k"] and mismatched["ess_exponent"] < 0.7
    assert "short of the large-K regime" in mismatched["summary"]
    # seeded: the same call gives the same numbers
    assert weight_regime(narrow, x, (10, 100, 1000), seed=0)["ess"] == mismatched["ess"]


def test_diagnose_at_initialisation_writes_record_table_and_figure(synthetic_data_dir, tmp_path,
                                                                   capsys):
    out = tmp_path / "snr"
    argv = ["diagnose", "--snr", "--data", "mnist-dynamic", "--layers", "1", "--k", "1,3",
            "--draws", "8", "--batch", "4", "--data-dir", str(synthetic_data_dir),
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "slope of log SNR against log K: iwae encoder" in printed
    assert "Rainforth et al. 2018: IWAE encoder SNR falls with K; measured slope" in printed
    record = json.loads((out / "snr.json").read_text())
    assert [r["k"] for r in record["weights"]["ess"]] == [1, 3]
    assert record["weights"]["ess"][0]["ess"] == pytest.approx(1.0)  # one weight: ESS 1
    assert record["weights"]["summary"] in printed
    assert record["source"] == {"initialisation": "init_mnist-dynamic_L1_code_s0", "step": 0}
    assert record["ks"] == [1, 3] and record["estimators"] == ["iwae", "stl", "dreg"]
    assert len(record["results"]) == 2 * 3 * 2 and len(record["slopes"]) == 3 * 2
    # eight draws: four jackknife groups, so every slope has an interval and a trend
    assert all(len(r["median_replicates"]) == 4 for r in record["results"])
    assert all(s["jackknife_groups"] == 4 and s["trend"] in ("falls", "rises", "flat")
               for s in record["slopes"])
    # and each estimator's mean is tested against IWAE's (two odd groups: 1 df), per K and
    # network where the literature says something of it, each row printed as recorded
    rows = record["agreement"]["rows"]
    assert [(r["estimator"], r["k"], r["network"]) for r in rows] == [
        (e, k, n) for k in (1, 3) for e in ("stl", "dreg") for n in ("encoder", "decoder")]
    assert [r["expected"] for r in rows if r["network"] == "encoder"] == [
        "same mean as IWAE's", "same mean as IWAE's", "biased: mean differs from IWAE's",
        "same mean as IWAE's"]
    assert all(r["test"]["df"] == 1 and r["summary"] in printed for r in rows)
    assert "one-sided t-test" in record["agreement"]["rule"]
    assert [(c["estimator"], c["network"]) for c in record["predictions"]] == [
        ("iwae", "encoder"), ("iwae", "decoder"), ("dreg", "encoder")]
    assert "jackknife" in record["slope_interval"]
    assert record["noise_floor"] == pytest.approx(noise_floor(8))
    assert f"shows a median SNR of {noise_floor(8):.3g} from 8 draws" in printed
    assert "excluded" in record["exclusion_rule"]
    assert (out / "snr.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "snr.csv").read_text().startswith("estimator,network,k,median")


def test_diagnose_a_trained_run_beside_it(synthetic_data_dir, tmp_path, capsys):
    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=2, steps=3, eval_k=5,
                       eval_n=10)
    train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    argv = ["diagnose", str(tmp_path / "run"), "--snr", "--k", "2,4", "--draws", "4",
            "--batch", "3", "--data-dir", str(synthetic_data_dir)]
    assert main(argv) == 0
    record = json.loads((tmp_path / "run" / "diagnostics" / "snr.json").read_text())
    assert record["source"]["step"] == 3 and record["estimators"] == ["iwae", "stl"]
    # four draws make two jackknife groups: one odd group, too few for the test of the means
    assert [r["test"] for r in record["agreement"]["rows"]] == [None] * 4
    assert "too few draws for the test" in capsys.readouterr().out
    # two stochastic layers: DReG is refused with one line
    assert main(argv + ["--estimators", "iwae,dreg"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "one stochastic layer" in err


@pytest.mark.parametrize("argv,message", [
    (["diagnose"], "choose a diagnostic: --snr"),
    (["diagnose", "--snr"], "--data and --layers"),
    (["diagnose", "--snr", "--data", "mnist-dynamic", "--layers", "1", "--k", "1,x"],
     "--k must be a comma-separated list"),
    (["diagnose", "--snr", "--data", "mnist-dynamic", "--layers", "1", "--estimators", "nvil"],
     "--estimators: unknown nvil"),
])
def test_diagnose_mistakes_end_in_one_line(argv, message, synthetic_data_dir, capsys):
    assert main([*argv, "--data-dir", str(synthetic_data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
