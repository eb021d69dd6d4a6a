"""`python -m benchmark evaluate RUN_DIR --ais / --bdmc` on a trained (synthetic) run: what is
written where, the record, and the errors a user can cause."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ais_models import all_binary_images, fitted_tiny_bernoulli_model

from benchmark.cli import main
from benchmark.evaluation.ais_command import ais_summary
from benchmark.evaluation.ais_evaluation import AISOutcome, AISSettings, evaluate_ais
from benchmark.evaluation.likelihood import log_likelihood_estimates
from benchmark.records import load_result, write_result

FAST = ["--chains", "2", "--leapfrog", "2", "--ais-batch", "16"]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_cli(args, data_dir, capsys) -> list[dict]:
    assert main(["evaluate", *map(str, args), "--data-dir", str(data_dir)]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()
            if line.startswith("{")]


def test_ais_is_recorded_beside_the_run_bound(trained_run, synthetic_data_dir, capsys):
    summaries = run_cli([trained_run, "--ais", "--intermediate", "3,6", "--n", "30", "--k", "20",
                         *FAST], synthetic_data_dir, capsys)
    assert [s["intermediate"] for s in summaries] == [3, 6]
    record = load_result(trained_run)
    metrics = record["metrics"]
    # the run's own per-example L_20 values cover these 30 examples: they are reused as they are
    assert summaries[1]["bound_source"] == "run"
    assert summaries[1]["bound_nll"] == pytest.approx(metrics["test_nll"], abs=1e-9)
    assert metrics["ais"] == summaries[1]  # the headline: the most distributions
    assert set(metrics["ais_evaluations"]) == {s["name"] for s in summaries}
    saved = np.load(trained_run / summaries[1]["file"])
    np.testing.assert_array_equal(saved["test_index"],
                                  np.load(trained_run / "loglik_test_index.npy"))
    assert saved["log_px"].shape == (30,) and saved["log_weights"].shape == (2, 30)
    assert -saved["log_px"].mean() == pytest.approx(summaries[1]["nll"])
    assert summaries[1]["gap"] == pytest.approx((saved["log_px"] - saved["bound"]).mean())
    assert 0 <= summaries[1]["acceptance"]["mean"] <= 1
    assert summaries[1]["seconds"] > 0 and summaries[1]["resumed_batches"] == 0
    assert not list((trained_run / "evaluations").glob(".partial-*"))  # finished: cleaned up


def test_bdmc_rows_accumulate_across_calls(trained_run, synthetic_data_dir, capsys):
    run_cli([trained_run, "--bdmc", "--simulated", "4", "--intermediate", "2,4", *FAST],
            synthetic_data_dir, capsys)
    (summary,) = run_cli([trained_run, "--bdmc", "--simulated", "4", "--intermediate", "8",
                          *FAST], synthetic_data_dir, capsys)
    rows = load_result(trained_run)["metrics"]["bdmc"]["rows"]
    assert [row["intermediate"] for row in rows] == [2, 4, 8] == \
        [row["intermediate"] for row in summary["rows"]]
    for row in rows:
        assert row["gap"] == pytest.approx(row["upper"] - row["lower"])
    saved = np.load(trained_run / "evaluations" / f"{summary['name']}_T8.npz")
    assert saved["lower"].shape == saved["upper"].shape == (4,)
    # other settings replace the curve instead of mixing with it
    run_cli([trained_run, "--bdmc", "--simulated", "3", "--intermediate", "2", *FAST],
            synthetic_data_dir, capsys)
    bdmc = load_result(trained_run)["metrics"]["bdmc"]
    assert bdmc["simulated"] == 3 and [row["intermediate"] for row in bdmc["rows"]] == [2]


@pytest.mark.parametrize("argv,message", [
    (["--ais", "--split", "train"], "drop --split train"),
])
def test_bad_requests_end_in_one_line(trained_run, synthetic_data_dir, capsys, argv, message):
    small = ["--intermediate", "2", "--n", "2", *FAST]  # quick, should the request go through
    assert main(["evaluate", str(trained_run), *argv, *small, "--data-dir",
                 str(synthetic_data_dir)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_run_that_is_not_complete_is_refused(trained_run, synthetic_data_dir, capsys):
    record = load_result(trained_run)
    write_result(trained_run, {**record, "status": "running"})
    assert main(["evaluate", str(trained_run), "--ais", "--intermediate", "2", "--n", "2", *FAST,
                 "--data-dir", str(synthetic_data_dir)]) == 2
    assert "not complete" in capsys.readouterr().err


def test_a_bad_schedule_length_is_a_usage_error(trained_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(trained_run), "--ais", "--intermediate", "100,0"])
    assert exit_info.value.code == 2
    assert "positive integers" in capsys.readouterr().err


def test_ais_is_not_below_l5000_on_a_fitted_model():
    """On a trained model AIS >= L_5000 - 3 paired standard errors on the same examples, and
    ais_summary does not flag it. On this 1-d model L_5000 is itself within 0.01 nats of the
    exact value (its bias is about Var(w/p)/(2k)), so AIS may not exceed it by more than that
    plus 3 paired standard errors either: an estimate that is too high is as wrong."""
    model = fitted_tiny_bernoulli_model(1)
    x = all_binary_images()
    settings = AISSettings(steps=100, chains=8, leapfrog=3, start="encoder", batch=64)
    outcome = evaluate_ais(model, x[None], settings)
    bound = log_likelihood_estimates(model, x[None], 5000, torch.Generator().manual_seed(1))[0]
    summary = ais_summary("tiny", outcome, bound, "computed", 5000, settings)
    assert summary["gap"] >= -3 * summary["gap_se"], summary
    assert summary["gap"] <= 3 * summary["gap_se"] + 0.01, summary
    assert not summary["below_bound"]


def test_ais_well_below_the_bound_is_flagged():
    """AIS more than 3 paired standard errors below L_k means too few distributions (or a bug):
    the summary says so. Here AIS is 0.5 nats below on each of 40 examples, give or take 0.1."""
    rng = np.random.default_rng(0)
    log_px = rng.normal(-100, 5, size=40)
    log_weights = np.repeat(log_px[None, None], 2, axis=1)  # (M, C, N): every chain the same
    outcome = AISOutcome(log_weights=log_weights, acceptance=np.full((1, 2, 40), 0.6),
                         final_step=np.full((1, 2, 40), 0.1), seconds=1.0, resumed_batches=0)
    settings = AISSettings(steps=10, chains=2)
    below = ais_summary("x", outcome, log_px + 0.5 + rng.normal(0, 0.1, 40), "computed", 5000,
                        settings)
    assert below["below_bound"] and below["gap"] == pytest.approx(-0.5, abs=0.05)
    level = ais_summary("x", outcome, log_px + rng.normal(0, 0.1, 40), "computed", 5000, settings)
    assert not level["below_bound"]
