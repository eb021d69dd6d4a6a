"""The oracle: the authors' code beside the suite (benchmark.oracle).

Unit tests of the layout, capture and comparison run everywhere. The short lockstep check runs
their code (Python 2.7 + Theano in .venv-oracle, `make oracle-env`) on the real MNIST files and
the verified authors' files; it skips, saying why, when either is not reachable.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.config import RunConfig
from benchmark.data import load_dataset
from benchmark.errors import UserError
from benchmark.models import IWAEModel
from benchmark.oracle.capture import DrawRecorder
from benchmark.oracle.cases import default_cases, select, short_cases
from benchmark.oracle.compare import relative, ulps_apart
from benchmark.oracle.layout import authors_name, authors_rows, evaluation_slots, step_slots
from benchmark.oracle.sources import CATALOGUE, FILES

REPO = Path(__file__).resolve().parents[1]
SHARED_CODE = REPO.parent / "shared" / "reference" / "authors-code"


def test_noise_rows_are_example_major_as_t_repeat_lays_them_out():
    k, b, d = 3, 4, 2
    noise = np.arange(k * b * d, dtype=np.float32).reshape(k, b, d)  # (sample, example, unit)
    rows = authors_rows(noise)
    for example in range(b):
        for sample in range(k):
            np.testing.assert_array_equal(rows[example * k + sample], noise[sample, example])


def test_the_suite_model_on_authors_rows_computes_what_a_repeated_x_computes():
    """Feeding x repeated example-major (their t_repeat) with the re-laid noise gives the suite's
    log-weights: the layout is the one their graph consumes."""
    torch.manual_seed(0)
    model = IWAEModel(2)
    model.init_authors(np.full(784, 0.3, dtype=np.float32))
    x = (torch.rand(1, 3, 784) < 0.4).float()
    k = 4
    eps = model.draw_noise(1, k, 3, torch.Generator().manual_seed(1), "cpu")
    log_w = model.log_weights_given_noise(x, eps)[0]  # (k, B)
    rep_x = x[0].repeat_interleave(k, dim=0)[None]  # row b*k + r = x[b]
    rows = [torch.from_numpy(authors_rows(e[0].numpy()))[None, None] for e in eps]  # (1,1,Bk,d)
    log_w_rows = model.log_weights_given_noise(rep_x, rows)[0, 0]  # (B k,)
    torch.testing.assert_close(log_w_rows.view(3, k), log_w.T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("layers", [1, 2])
def test_every_suite_parameter_has_a_distinct_authors_name(layers):
    names = [authors_name(n, layers) for n, _ in IWAEModel(layers).named_parameters()]
    assert len(set(names)) == len(names) == (14 if layers == 1 else 30)
    assert "p0.logits.b" in names and "q0.sigma.W" in names


def test_a_training_step_draws_what_the_authors_graph_consumes(synthetic_data_dir):
    from benchmark.oracle.suite_side import SuiteRun
    from benchmark.training import DataCache

    data = DataCache(synthetic_data_dir, torch.device("cpu"))
    run = SuiteRun(RunConfig("mnist-dynamic", "iwae", 5, 2, steps=2), data)
    seen = []
    run.train(2, lambda step, slots: seen.append({n: v.shape for n, v in slots.items()}))
    assert seen == [{"u": (20, 784), "n0": (100, 100), "n1": (100, 50)}] * 2
    assert run.state_arrays()["t"] == 3  # their timestep starts at 1


def test_a_replay_of_the_recorded_draws_is_the_same_run(synthetic_data_dir):
    """A second run stepped on the first run's draws (train(twin=...)) ends bit-identical: the
    replay serves every draw, in order, where the step asks for it."""
    from benchmark.oracle.suite_side import SuiteRun
    from benchmark.training import DataCache

    data = DataCache(synthetic_data_dir, torch.device("cpu"))
    config = RunConfig("mnist-dynamic", "iwae", 5, 2, steps=3, seed=0)
    run, twin = SuiteRun(config, data), SuiteRun(dataclasses.replace(config, seed=1), data)
    run.train(3, lambda step, slots: None, twin=twin)
    mine, theirs = run.state_arrays(), twin.state_arrays()
    assert all(np.array_equal(mine[n], theirs[n]) for n in mine)


def test_the_float64_twin_computes_in_float64_on_the_same_draws(synthetic_data_dir):
    from benchmark.oracle.suite_side import SuiteRun
    from benchmark.training import DataCache

    data = DataCache(synthetic_data_dir, torch.device("cpu"))
    config = RunConfig("mnist-dynamic", "iwae", 5, 1, steps=3)
    run, twin = SuiteRun(config, data), SuiteRun(config, data, float64=True)
    run.train(3, lambda step, slots: None, twin=twin)
    mine, theirs = run.state_arrays(), twin.state_arrays()
    assert theirs["t"] == mine["t"] == 4
    assert {theirs[n].dtype for n in theirs if n != "t"} == {np.dtype(np.float64)}  # and m, v
    assert twin.gradients()["grad/p0.logits.b"].dtype == np.float64
    # float32 rounding apart, no further: the same function on the same draws
    assert max(relative(mine[n], theirs[n]) for n in mine) < 1e-4
    assert any(not np.array_equal(mine[n].astype(np.float64), theirs[n]) for n in mine)


def test_the_replay_promotes_float32_and_refuses_a_draw_it_does_not_hold():
    from benchmark.oracle.capture import Draw, DrawReplay

    recorded = [Draw("uniform", np.array([0.25, 0.5], np.float32)),
                Draw("normal", np.array([1.5], np.float32))]
    with DrawReplay(recorded, promote_to=torch.float64):
        u = torch.rand(2, dtype=torch.float32)
        eps = torch.empty(1, dtype=torch.float32).normal_()
        ones = torch.ones(2).to(torch.float32)
    assert u.dtype == eps.dtype == ones.dtype == torch.float64
    assert u.tolist() == [0.25, 0.5] and eps.tolist() == [1.5]
    with pytest.raises(RuntimeError, match="asked for a normal draw"):
        with DrawReplay(recorded[:1]):
            torch.randn(2)
    with pytest.raises(RuntimeError, match="left 1 recorded draws unused"):
        with DrawReplay(recorded[1:]):
            pass


def test_evaluation_noise_is_regrouped_per_example():
    from benchmark.evaluation import score

    model = IWAEModel(1)
    model.init_authors(None)
    x = (torch.rand(7, 784) < 0.5).float()
    with DrawRecorder() as recorder:
        score(model, x, 6000, torch.device("cpu"))  # 2 examples per batch, pieces of 6000
    slots = evaluation_slots(recorder.draws, 1, 6000, 7)
    assert slots["n0"].shape == (7, 6000, 50)


def test_a_step_that_draws_otherwise_is_refused():
    from benchmark.oracle.capture import Draw
    from benchmark.oracle.layout import LayoutError

    with pytest.raises(LayoutError, match="consumes"):
        step_slots([Draw("normal", np.zeros((1, 1, 20, 50), np.float32))], True, 1)


def test_a_zero_uniform_is_served_so_their_rule_binarizes_as_the_suites():
    """torch.rand can draw 0, Theano's MRG never does: served as 0, their 1[u <= p] would turn a
    black pixel white where the suite's 1[u < p] keeps it black (the 3,500-step case met one)."""
    from benchmark.oracle.capture import Draw

    pixels = np.arange(256, dtype=np.float32) / np.float32(255)  # every gray value, 0 included
    u = np.zeros((20, 784), np.float32)
    u[0, :256] = pixels  # ties at every value: the one deliberate difference, left as it is
    served = step_slots([Draw("uniform", u), Draw("normal", np.zeros((1, 1, 20, 50)))],
                        True, 1)["u"]
    p = np.zeros((20, 784), np.float32)
    p[0, :256] = pixels
    p[1, :256] = pixels
    suite, theirs = u < p, served <= p
    assert np.array_equal(suite[1:], theirs[1:])  # u == 0: the same pixel on both sides
    assert np.array_equal(served[0, 1:256], pixels[1:]) and served.min() > 0
    assert not theirs[0, 0]  # a black pixel stays black even at a tie
    assert np.array_equal(theirs[0, 1:256] & ~suite[0, 1:256], np.ones(255, bool))


def test_relative_difference_and_ulps():
    assert relative(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative(np.array([0.0, 2.1]), np.array([0.0, 2.0])) == pytest.approx(0.05)
    one = np.float32(1.0)
    assert ulps_apart(np.array([one]), np.array([np.nextafter(one, np.float32(2))])) == 1


def test_case_selection():
    ids = {c.id for c in select(default_cases(), ["mnist-fixed_*_L2"], None)}
    assert len(ids) == 6 and all(i.startswith("mnist-fixed") for i in ids)
    assert all(c.steps == 7 for c in select(short_cases(), ["*_L1"], 7))
    with pytest.raises(UserError, match="matches no case"):
        select(default_cases(), ["nothing*"], None)


@pytest.mark.skipif(not (SHARED_CODE / "SHA256SUMS").exists(), reason="no shared mirror")
def test_the_catalogue_holds_the_mirrors_checksums():
    sums = dict(line.split()[::-1] for line in (SHARED_CODE / "SHA256SUMS").read_text()
                .splitlines())
    assert {name: sha for name, _, sha, _ in FILES} == {n: sums[n] for n, *_ in FILES}
    assert all(f.url.startswith("https://raw.githubusercontent.com/yburda/iwae/78a6075")
               for f in CATALOGUE.files)


def test_fetching_verifies_and_refuses_a_changed_file(tmp_path):
    from benchmark.oracle.sources import fetch_authors_code

    if not (SHARED_CODE / "files").is_dir():
        pytest.skip("no shared mirror of the authors' code")
    code = fetch_authors_code(tmp_path / "cache", SHARED_CODE / "files")
    assert sorted(p.name for p in code.glob("*.py")) == sorted(n for n, *_ in FILES)
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name, *_ in FILES:
        (tampered / name).write_bytes((SHARED_CODE / "files" / name).read_bytes())
    (tampered / "train.py").write_bytes(b"x" * 892)  # right size, wrong content
    with pytest.raises(UserError, match="could not be fetched.*train.py"):
        fetch_authors_code(tmp_path / "cache2", tampered)


# --- the authors' code itself -----------------------------------------------------------------

def oracle_or_skip() -> tuple[Path, Path]:
    """The oracle environment and the authors' files, or a skip that says what is missing."""
    from benchmark.oracle.environment import oracle_env, oracle_python
    from benchmark.oracle.sources import default_from_dir

    env = REPO / oracle_env()
    try:
        oracle_python(env)
    except UserError as err:
        pytest.skip(f"no oracle environment: {err}")
    from_dir = default_from_dir() or (SHARED_CODE / "files")
    if not Path(from_dir).is_dir():
        pytest.skip("the authors' files are not reachable: set IWAE_ORACLE_FROM")
    return env, Path(from_dir)


@pytest.fixture
def oracle_setup(monkeypatch):
    env, from_dir = oracle_or_skip()
    monkeypatch.setenv("IWAE_ORACLE_ENV", str(env))
    return from_dir


@pytest.mark.slow
@pytest.mark.realdata
def test_short_lockstep_check_agrees(oracle_setup, real_data_dir, tmp_path, monkeypatch):
    """A few configurations, tens of steps, a small evaluation: every quantity holds."""
    from benchmark.oracle.run import run_oracle

    monkeypatch.chdir(tmp_path)
    summary = run_oracle(short_cases(), real_data_dir, tmp_path / "oracle",
                         tmp_path / "authors-code", oracle_setup, show_progress=False)
    failing = [row for row in summary["rows"] if row["verdict"] != "agrees"]
    assert not failing, json.dumps(failing, indent=1)
    names = {row["quantity"] for row in summary["rows"]}
    assert {"step-1 gradients", "parameters", "L_k per example", "active units, layer 1",
            "continuation carries the random stream"} <= names
    assert (tmp_path / "oracle" / "summary.txt").exists()


@pytest.mark.slow
def test_their_datasets_py_gives_the_suites_omniglot_split(oracle_setup, tmp_path, monkeypatch):
    """chardata.mat (synthetic, in the real format): their seed-123 shuffle, Fortran-order
    reshape and 1,345 held out against the suite's split, and the decoder bias."""
    from synthetic import write_synthetic_raw

    from benchmark.oracle.cases import DataCase
    from benchmark.oracle.run import run_oracle

    data_dir = write_synthetic_raw(tmp_path / "data", n_train=1500, n_test=30)
    load_dataset("omniglot", data_dir)  # verifies the synthetic files against their catalogue
    monkeypatch.chdir(tmp_path)
    summary = run_oracle([DataCase("omniglot")], data_dir, tmp_path / "oracle",
                         tmp_path / "authors-code", oracle_setup, show_progress=False)
    assert summary["holds"], summary["rows"]
    assert {"train split (bitwise, in order)", "test split (bitwise, in order)",
            "decoder bias (float32 ulps)"} <= {r["quantity"] for r in summary["rows"]}


def test_without_an_environment_the_command_says_what_to_do(tmp_path, monkeypatch):
    from benchmark.cli import main

    monkeypatch.setenv("IWAE_ORACLE_ENV", str(tmp_path / "missing"))
    assert main(["oracle", "--short", "--results", str(tmp_path / "r")]) == 2


def test_the_report_shows_the_oracle_section_only_when_records_exist(tmp_path):
    from report_fixtures import build_results_tree

    from benchmark.oracle.cases import LockstepCase
    from benchmark.oracle.compare import Quantity
    from benchmark.oracle.records import write_case_record, write_summary
    from benchmark.report.build import build_report

    results = build_results_tree(tmp_path)
    page = build_report(results, tmp_path / "without").read_text()
    assert "Fidelity to the authors" not in page
    case = LockstepCase("mnist-dynamic", "iwae", 5, 1, 30)
    record = write_case_record(results / "oracle", case, [
        Quantity(case.id, "step-1 gradients", 1.8e-5, 6.4e-5),
        Quantity(case.id, "parameters, steps 1-30", 3e-4, 8.7e-5)], [], {})
    write_summary(results / "oracle", [record], {"total_s": 60.0})
    from benchmark.oracle.independent import IndependentSettings
    from benchmark.oracle.independent_records import comparison_row, write_independent

    write_independent(results / "oracle", [comparison_row(
        "mnist-dynamic_vae_k1_L1", IndependentSettings(), 2980, [0, 1, 2],
        _suite_rows([120.1, 120.4, 120.9]), "d", {"mean": -120.45, "test_set_sha256": "d"}, 1.0)])
    page = build_report(results, tmp_path / "with").read_text()
    assert "Fidelity to the authors" in page and "step-1 gradients" in page
    assert "DIFFERS" in page and "6.4e-05" in page
    assert "Independent runs" in page and "120.45" in page and "consistent" in page


# --- the independent comparison (benchmark.oracle.independent) --------------------------------

def _suite_rows(nlls):
    """Per-example L of seeds whose mean NLLs are `nlls` (3 examples each)."""
    return np.array([[-v - 1.0, -v, -v + 1.0] for v in nlls])


def test_the_independent_verdict_is_the_prediction_interval_of_one_more_seed():
    from benchmark.oracle.independent import IndependentSettings
    from benchmark.oracle.independent_records import comparison_row, prediction_half_width

    settings = IndependentSettings(seeds=3)
    suite = _suite_rows([100.0, 101.0, 102.0])  # mean 101, sd 1
    # 3 seeds: t_{2,0.975} = 4.303, so the interval is 101 +- 4.303 sqrt(4/3) = 101 +- 4.97
    assert prediction_half_width(1.0, 3) == pytest.approx(4.303 * (4 / 3) ** 0.5)

    def row(authors_nll, digest="same"):
        return comparison_row("c", settings, 10, [0, 1, 2], suite, "same",
                              {"mean": -authors_nll, "test_set_sha256": digest}, 1.0)

    inside = row(105.5)  # outside the seeds' range, inside the prediction interval
    assert inside["verdict"] == "consistent" and not inside["inside_range"]
    assert inside["suite_nll"] == pytest.approx([100.0, 101.0, 102.0])
    assert row(106.5)["verdict"] == "DIFFERS"
    assert row(101.0, digest="other")["verdict"] == "INVALID"
    assert comparison_row("c", settings, 10, [0, 1, 2], suite, "same",
                          {"error": "boom"}, 1.0)["verdict"] == "FAILED"


def test_the_spread_fit_recovers_a_power_law():
    from benchmark.oracle.independent_records import spread_estimate

    rows = [{"epochs": e, "suite_sd": 3.0 * e ** -0.5} for e in (1, 4, 16)]
    est = spread_estimate(rows, target=0.5)
    assert est["exponent"] == pytest.approx(0.5) and est["sd_at_1_epoch"] == pytest.approx(3.0)
    assert est["epochs_for_target"] == pytest.approx(36.0)  # 3 e^-0.5 = 0.5 at e = 36
    assert spread_estimate(rows[:1]) is None


def test_the_spread_scores_every_seed_at_every_length(synthetic_data_dir, tmp_path):
    from benchmark.oracle.independent import IndependentCase, IndependentSettings, run_spread

    case = IndependentCase("mnist-dynamic", "vae", 1, 1)
    settings = IndependentSettings(seeds=2, eval_n=5, eval_k=4)
    spread = run_spread([case], [0.001, 0.002], settings, synthetic_data_dir, tmp_path,
                        show_progress=False)  # 3 and 6 steps of 2980 per epoch
    assert [r["steps"] for r in spread["rows"]] == [3, 6]
    for r in spread["rows"]:
        assert len(r["suite_nll"]) == 2 and r["suite_nll"][0] != r["suite_nll"][1]
        assert r["suite_sd"] > 0
    assert "exponent" in spread["estimates"][case.id]
    assert (tmp_path / "independent-spread.txt").exists()


def test_spread_without_independent_is_refused(tmp_path):
    from benchmark.cli import main

    assert main(["oracle", "--spread", "1", "2", "--results", str(tmp_path / "r")]) == 2


@pytest.mark.slow
@pytest.mark.realdata
def test_independent_runs_are_scored_on_one_binary_test_set(oracle_setup, real_data_dir,
                                                            tmp_path, monkeypatch):
    """Their code at its own seed for 5 steps against 2 suite seeds, L_10 on 20 images: both
    sides scored the suite's seeded subset of the once-binarized test split, bit for bit."""
    from benchmark.data import load_dataset
    from benchmark.evaluation import EVAL_SUBSET_SEED, binary_split, random_subset
    from benchmark.oracle.independent import (
        IndependentCase,
        IndependentSettings,
        run_independent,
        test_set_digest,
    )

    monkeypatch.chdir(tmp_path)
    case = IndependentCase("mnist-dynamic", "vae", 1, 1)
    settings = IndependentSettings(seeds=2, eval_n=20, eval_k=10, steps=5)
    summary = run_independent([case], settings, real_data_dir, tmp_path / "oracle",
                              tmp_path / "authors-code", oracle_setup, show_progress=False)
    row = summary["rows"][0]
    test = load_dataset("mnist-dynamic", real_data_dir).test
    expected = binary_split(test, True)[random_subset(test.shape[0], 20, EVAL_SUBSET_SEED)]
    assert row["suite_test_set_sha256"] == test_set_digest(expected.numpy())
    assert row["same_test_set"], (row["suite_test_set_sha256"], row["authors_test_set_sha256"])
    assert row["authors_seeds_asked"] == [123, 123, 123]  # their stream, their seed
    assert row["verdict"] == "consistent", row
    assert 100 < row["authors_nll"] < 800 and len(row["suite_nll"]) == 2
    assert (tmp_path / "oracle" / "independent.txt").exists()


def test_a_quantity_that_could_not_be_measured_is_recorded_not_a_crash(tmp_path):
    """A 3,500-step case once ended the whole oracle run with 'Out of range float values are not
    JSON compliant: inf' while writing its record: a difference of infinity (arrays missing or
    of another shape) must be written as null and read as DIFFERS."""
    from benchmark.oracle.cases import LockstepCase
    from benchmark.oracle.compare import Quantity
    from benchmark.oracle.records import write_case_record, write_summary

    case = LockstepCase("mnist-dynamic", "vae", 1, 1, 3)
    quantities = [Quantity(case.id, "parameters, steps 1-3", float("inf"), 1e-5, "arrays missing"),
                  Quantity(case.id, "bounds, step 1", 1e-7, 1e-6)]
    record = write_case_record(tmp_path, case, quantities, [{"step": 1, "parameters": np.inf}],
                               {"authors": 1.0})
    written = json.loads((tmp_path / f"{case.id}.json").read_text())
    assert written["quantities"][0]["measured"] is None and not written["holds"]
    assert written["quantities"][0]["verdict"] == "DIFFERS"
    assert written["curve"][0]["parameters"] is None
    summary = write_summary(tmp_path, [record], {"total_s": 60.0})
    assert not summary["holds"]
    assert json.loads((tmp_path / "summary.json").read_text())["rows"]


def test_two_zero_arrays_are_no_relative_difference():
    assert relative(np.zeros(3), np.zeros(3)) == 0.0
    assert relative(np.ones(3), np.zeros(3)) == float("inf")
