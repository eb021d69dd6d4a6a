"""An objective from outside the tree (benchmark.plugins): the example VR-alpha plugin's known
answers, one clear error for every broken plugin before anything trains, and the plugin trained,
resumed, evaluated and reported from the command line on synthetic data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from interruptions import kill_after_checkpoint
from plugin_registry import EXAMPLE, registry_restored
from test_estimators import tiny_model
from test_objectives import X, run_estimate

from benchmark.cli import main
from benchmark.config import RunConfig, run_id
from benchmark.definitions import find_objective, objective_label
from benchmark.errors import UserError
from benchmark.models.estimators import Objective
from benchmark.models.objectives import iwae_bound, vae_bound
from benchmark.plugins import load_plugin
from benchmark.records import load_latest_checkpoint
from benchmark.training import train_run


@pytest.fixture
def vr():
    """The example plugin loaded for the test, the registry restored after it."""
    with registry_restored():
        load_plugin(str(EXAMPLE))
        yield find_objective("vr").bound


def log_weights(seed: int, shape=(3, 7, 5)) -> torch.Tensor:
    """Log-weights far below 0, as a model's are (about -100 nats), spread over a few nats."""
    generator = torch.Generator().manual_seed(seed)
    return -100.0 + 3.0 * torch.randn(shape, generator=generator, dtype=torch.float64)


# --- known answers: the limits are the bounds they should be --------------------------------------

def test_vr_at_alpha_0_is_iwae_and_at_alpha_1_is_the_elbo(vr):
    log_w = log_weights(0)
    torch.testing.assert_close(vr(log_w, alpha=0.0), iwae_bound(log_w), rtol=0, atol=1e-12)
    torch.testing.assert_close(vr(log_w, alpha=1.0), vae_bound(log_w), rtol=0, atol=0)
    # the limit alpha -> 1 is continuous: 1 - 1e-6 is within O(1e-6 Var log w) of the ELBO
    torch.testing.assert_close(vr(log_w, alpha=1 - 1e-6), vae_bound(log_w), rtol=0, atol=1e-4)


def test_vr_falls_with_alpha_between_iwae_and_elbo(vr):
    """A power mean of order 1 - alpha: non-increasing in alpha on every example."""
    log_w = log_weights(1)
    values = torch.stack([vr(log_w, alpha=a) for a in (0.0, 0.25, 0.5, 0.75, 1.0)])
    assert torch.all(values[:-1] >= values[1:] - 1e-12)
    assert torch.all(values[0] > values[-1])  # spread weights: strictly between


def test_vr_is_log_px_when_q_is_the_posterior(vr):
    """With q(h|x) = p(h|x) every weight is p(x): every bound is log p(x), whatever alpha."""
    log_px = torch.tensor([[-84.2, -97.5]], dtype=torch.float64)
    log_w = log_px[:, None, :].expand(1, 9, 2)
    for alpha in (0.0, 0.3, 0.9, 1.0):
        torch.testing.assert_close(vr(log_w, alpha=alpha), log_px, rtol=0, atol=1e-10)


@pytest.mark.parametrize("layers", [1, 2])
def test_vr_through_the_suite_on_the_exact_model_trains_as_iwae_and_vae_at_its_limits(vr, layers):
    """On the exact-likelihood model, through the suite's own estimate and backward pass: VR at
    alpha 0 has IWAE's bound and gradients, at alpha 1 the VAE's (same seeded noise)."""
    model = tiny_model(layers)
    for alpha, twin in ((0.0, "iwae"), (1.0, "vae")):
        bound, grads = run_estimate(model, X, Objective("vr", 6, params={"alpha": alpha}), 11)
        twin_bound, twin_grads = run_estimate(model, X, Objective(twin, 6), 11)
        torch.testing.assert_close(bound, twin_bound, rtol=1e-12, atol=1e-12)
        for name in grads:
            torch.testing.assert_close(grads[name], twin_grads[name], rtol=1e-10, atol=1e-12,
                                       msg=f"alpha {alpha}: {name}")


def test_the_plugin_is_named_labelled_and_validated_by_its_definition(vr):
    config = RunConfig(data="mnist-dynamic", model="vr", k=5, layers=1,
                       params={"alpha": 0.5})
    assert run_id(config) == "mnist-dynamic_vr_alpha0.5_k5_L1_s0_code_full"
    assert objective_label("vr", 5, params=config.params) == "VR(α=0.5) k=5"
    assert config.to_dict()["alpha"] == 0.5 and RunConfig.from_dict(config.to_dict()) == config
    with pytest.raises(UserError, match="--model vr needs --alpha"):
        RunConfig(data="mnist-dynamic", model="vr", k=5, layers=1)
    with pytest.raises(UserError, match="--alpha must be between 0 and 1"):
        RunConfig(data="mnist-dynamic", model="vr", k=5, layers=1, params={"alpha": 2})


def test_without_its_plugin_a_run_of_it_says_which_flag_loads_it():
    with pytest.raises(UserError, match="load its plugin with --objective-module"):
        RunConfig.from_dict({"data": "mnist-dynamic", "model": "vr", "k": 5, "layers": 1,
                             "alpha": 0.5})


# --- a broken plugin: one line naming it, before anything trains ----------------------------------

BROKEN = {
    "syntax": ("OBJECTIVES = [", "could not be loaded (SyntaxError"),
    "import": ("import no_such_module_anywhere\n", "could not be loaded (ModuleNotFoundError"),
    "none": ("X = 1\n", "defines no objective"),
    "empty": ("OBJECTIVES = []\n", "OBJECTIVES is empty"),
    "not-a-definition": ("OBJECTIVES = [42]\n", "OBJECTIVES[0] is a int, not an "
                                                "ObjectiveDefinition"),
    "no-bound": ("from benchmark.definitions import ObjectiveDefinition\n"
                 "OBJECTIVES = [ObjectiveDefinition('mine', 'x', bound=None)]\n",
                 "(mine) defines no bound"),
    "bound-not-a-function": ("from benchmark.definitions import ObjectiveDefinition\n"
                             "OBJECTIVES = [ObjectiveDefinition('mine', 'x', bound='w.mean')]\n",
                             "its bound is not a function"),
    "taken": ("from benchmark.definitions import ObjectiveDefinition\n"
              "OBJECTIVES = [ObjectiveDefinition('iwae', 'x', bound=lambda w: w.mean(1))]\n",
              "the name 'iwae' is taken"),
    "flag": ("from benchmark.definitions import ObjectiveDefinition, Parameter\n"
             "OBJECTIVES = [ObjectiveDefinition('mine', 'x', bound=lambda w, out: w.mean(1),"
             " parameters=(Parameter('out', int, 'h'),))]\n",
             "argument --out: conflicting option string: --out: a parameter of an objective "
             "plugin"),
    "label": ("from benchmark.definitions import ObjectiveDefinition\n"
              "OBJECTIVES = [ObjectiveDefinition('mine', 'x', bound=lambda w: w.mean(1),"
              " label='{title}(a={alpha})')]\n",
              "its label '{title}(a={alpha})' may name {title}, {k} and its parameters only"),
    "reserved": ("from benchmark.definitions import ObjectiveDefinition, Parameter\n"
                 "OBJECTIVES = [ObjectiveDefinition('mine', 'x', bound=lambda w, k: w.mean(1),"
                 " parameters=(Parameter('k', int, 'h'),))]\n",
                 "parameter name k is a run setting already"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_plugin_is_refused_in_one_line(name, tmp_path, capsys):
    source, message = BROKEN[name]
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(source)
    with registry_restored():
        code = main(["train", "--objective-module", str(plugin), "--data", "mnist-dynamic",
                     "--model", "iwae", "--k", "5", "--layers", "1",
                     "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert str(plugin) in err and message in err, err
    assert not (tmp_path / "run").exists()


WRONG = {
    "shape": ("lambda w: w.sum()", "must be one value per member and example, shape (2, 3)"),
    "raises": ("lambda w: w.nonexistent()", "fails on log-weights of shape (2, 5, 3)"),
    "detached": ("lambda w: w.detach().mean(1)", "no gradient reaches its surrogate"),
    "not-finite": ("lambda w: w.mean(1) / 0.0", "is not finite"),
}


@pytest.mark.parametrize("name", sorted(WRONG))
def test_a_plugin_bound_that_cannot_train_is_refused_before_training(name, synthetic_data_dir,
                                                                       tmp_path, capsys):
    bound, message = WRONG[name]
    plugin = tmp_path / f"wrong_{name.replace('-', '_')}.py"
    plugin.write_text("from benchmark.definitions import ObjectiveDefinition\n"
                      f"OBJECTIVES = [ObjectiveDefinition('wrong', 'x', bound={bound})]\n")
    with registry_restored():
        code = main(["train", "--objective-module", str(plugin), "--data", "mnist-fixed",
                     "--model", "wrong", "--k", "5", "--layers", "1", "--steps", "2",
                     "--data-dir", str(synthetic_data_dir), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert f"objective wrong of plugin {plugin}" in err and message in err, err
    assert not (tmp_path / "run").exists()


# --- the whole path from the command line ---------------------------------------------------------

def train_vr(data_dir, out, *extra):
    return main(["train", "--objective-module", str(EXAMPLE), "--data", "mnist-fixed",
                 "--model", "vr", "--alpha", "0.5", "--k", "3", "--layers", "1",
                 "--eval-k", "10", "--eval-n", "20", "--data-dir", str(data_dir),
                 "--out", str(out), *extra])


@pytest.mark.slow
def test_a_plugin_trains_resumes_evaluates_and_reports(synthetic_data_dir, tmp_path,
                                                       monkeypatch):
    with registry_restored():
        # killed after the first stage (epochs 4 on 100 images: stage ends at steps 5 and 20)
        kill_after_checkpoint(monkeypatch, 5)
        with pytest.raises(RuntimeError, match="killed"):
            train_vr(synthetic_data_dir, tmp_path / "results" / "runs" / "vr", "--epochs", "4")
        monkeypatch.undo()
        assert train_vr(synthetic_data_dir, tmp_path / "results" / "runs" / "vr",
                        "--epochs", "4") == 0
        assert train_vr(synthetic_data_dir, tmp_path / "whole", "--epochs", "4") == 0
        resumed, whole = (load_latest_checkpoint(d)["model"]
                          for d in (tmp_path / "results" / "runs" / "vr", tmp_path / "whole"))
        assert all(torch.equal(resumed[key], whole[key]) for key in resumed)

        run = tmp_path / "results" / "runs" / "vr"
        record = json.loads((run / "result.json").read_text())
        assert record["status"] == "complete" and record["progress"]["resumed_from"] == [5]
        assert record["config"]["alpha"] == 0.5 and record["config"]["model"] == "vr"
        assert record["plugin"] == {"objective": "vr", "module": str(EXAMPLE)}
        assert f"--alpha 0.5 --objective-module {EXAMPLE}" in record["command"]
        assert math.isfinite(record["metrics"]["test_nll"])

        assert main(["evaluate", str(run), "--objective-module", str(EXAMPLE), "--k", "20",
                     "--n", "10", "--data-dir", str(synthetic_data_dir)]) == 0
        assert main(["evaluate", str(run), "--objective-module", str(EXAMPLE), "--ais",
                     "--intermediate", "20", "--chains", "2", "--n", "5", "--k", "10",
                     "--data-dir", str(synthetic_data_dir)]) == 0
        ais = json.loads((run / "result.json").read_text())["metrics"]["ais"]
        assert ais is not None
        assert main(["report", "--results", str(tmp_path / "results"), "--objective-module",
                     str(EXAMPLE), "--out", str(tmp_path / "report")]) == 0
    table = (tmp_path / "report" / "tables" / "code" / "estimators.md").read_text()
    assert "VR(α=0.5) k=3 (plugin: not part of the suite)" in table


def test_a_run_folder_never_loads_the_plugin_it_names(synthetic_data_dir, tmp_path, capsys):
    """Code is never imported from a record: without --objective-module, evaluate refuses."""
    with registry_restored():
        config = RunConfig(data="mnist-fixed", model="vr", k=2, layers=1, steps=2, eval_k=5,
                           eval_n=5, params={"alpha": 0.5}) if load_plugin(str(EXAMPLE)) \
            else None
        train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    assert find_objective("vr") is None
    code = main(["evaluate", str(tmp_path / "run"), "--k", "5", "--n", "5",
                 "--data-dir", str(synthetic_data_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--objective-module" in err and err.count("\n") == 0, err
    assert find_objective("vr") is None


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_sweep_workers_load_the_plugin_the_driver_loaded(executor, synthetic_data_dir,
                                                         tmp_path, monkeypatch):
    """The estimators grid gains the plugin's cells; its runs train in spawned processes (and
    Ray workers) that never saw --objective-module, from the plugins each task carries."""
    import io

    from benchmark.sweeps.driver import run_sweep
    from benchmark.sweeps.executors import LocalExecutor, RayExecutor
    from benchmark.sweeps.grids import SweepOptions, expand_grid

    if executor == "ray":
        ray = pytest.importorskip("ray")
    monkeypatch.chdir(EXAMPLE.parents[1])  # the repository's root, as a user runs it
    with registry_restored():
        load_plugin("examples/renyi_objective.py")
        options = SweepOptions(schedule="smoke", steps=4, eval_k=5, eval_n=10,
                               data=("mnist-dynamic",))
        plan = [run for run in expand_grid("estimators", options, tmp_path / "results")
                if run.config.model == "vr"]
        assert [run.run_id for run in plan] == [
            "mnist-dynamic_vr_alpha0.5_k5_L1_s0_code_smoke_steps4_evalk5_evaln10",
            "mnist-dynamic_vr_alpha0.5_k50_L1_s0_code_smoke_steps4_evalk5_evaln10"]

        def factory(n_runs: int):
            if executor == "local":
                return LocalExecutor(2, 1)
            return RayExecutor(None, 2, 0.0, num_cpus=2)

        try:
            report = run_sweep("estimators", plan, data_dir=synthetic_data_dir,
                               executor_factory=factory, check_data=lambda *_: None,
                               timer=None, stream=io.StringIO(), out=io.StringIO())
        finally:
            if executor == "ray":
                ray.shutdown()
    assert report.ok, report.summary_line()
    for run in plan:
        record = json.loads((run.run_dir / "result.json").read_text())
        # the plugin as the user named it (the workers load it by its absolute path)
        assert record["status"] == "complete"
        assert record["plugin"]["module"] == "examples/renyi_objective.py"


def test_a_plugin_loads_from_the_environment_and_from_an_entry_point(tmp_path, monkeypatch):
    """$IWAE_OBJECTIVE_MODULES names modules or files; an installed package's entry point in
    the group iwae_benchmark.objectives names its module."""
    from importlib.metadata import EntryPoint

    import benchmark.plugins as plugins

    (tmp_path / "my_objectives.py").write_text(EXAMPLE.read_text().replace('"vr"', '"myvr"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    with registry_restored():
        monkeypatch.setenv(plugins.PLUGIN_ENV, f"{EXAMPLE}")
        assert plugins.load_plugins() == ("vr",)
        assert plugins.loaded_plugins() == ((str(EXAMPLE), str(EXAMPLE)),)
    with registry_restored():
        monkeypatch.delenv(plugins.PLUGIN_ENV)
        point = EntryPoint("mine", "my_objectives:OBJECTIVES", plugins.ENTRY_POINT_GROUP)
        monkeypatch.setattr(plugins, "entry_points", lambda group: [point] if
                            group == plugins.ENTRY_POINT_GROUP else [])
        assert plugins.load_plugins() == ("myvr",)
        assert find_objective("myvr").plugin == "my_objectives"
    assert find_objective("myvr") is None and find_objective("vr") is None


PUBLISHED_PLUGIN = """
from benchmark.definitions import ObjectiveDefinition, PublishedValue
OBJECTIVES = [ObjectiveDefinition(
    "mine", "x", bound=lambda log_w: log_w.mean(1),
    published=(PublishedValue("mnist-dynamic", 1, 5, NLL, {"paper": "A. Author 2031",
               "table": 2, "page": None, "location": "Table 2"}, "their protocol",
               "not Burda's schedule"),))]
"""


def test_a_plugins_published_value_is_read_and_checked_as_the_suites(tmp_path):
    from benchmark.report.published import load_published

    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(PUBLISHED_PLUGIN.replace("NLL", "85.1"))
    bad.write_text(PUBLISHED_PLUGIN.replace("NLL", "851.0"))
    with registry_restored():
        load_plugin(str(good))
        cell = load_published().estimator_cell(("mnist-dynamic", 1, "mine", 5, None, ()))
        assert cell.nll == 85.1 and cell.cite() == "A. Author 2031, Table 2"
    assert load_published().estimator_cell(("mnist-dynamic", 1, "mine", 5, None, ())) is None
    with registry_restored():
        load_plugin(str(bad))
        with pytest.raises(UserError, match=f"published values of mine \\({bad}\\).*nll 851"):
            load_published()


@pytest.mark.slow
def test_a_plugin_run_trains_in_a_batched_group_as_alone(synthetic_data_dir, tmp_path):
    """A plugin's run shares a batched ensemble with built-in runs of the same samples per
    example, and each member trains as it would alone (the group's exact numerics)."""
    from benchmark.training import train_group

    with registry_restored():
        load_plugin(str(EXAMPLE))
        configs = [RunConfig(data="mnist-fixed", model=model, k=4, layers=1, steps=6, eval_k=5,
                             eval_n=10, params=params)
                   for model, params in (("vr", {"alpha": 0.5}), ("iwae", {}), ("vae", {}))]
        dirs = [tmp_path / f"member{i}" for i in range(len(configs))]
        records = train_group(configs, dirs, synthetic_data_dir, show_progress=False)
        assert all(r["environment"]["execution"]["group_size"] == 3 for r in records)
        alone = train_run(configs[0], tmp_path / "alone", synthetic_data_dir,
                          show_progress=False)
    grouped, single = (load_latest_checkpoint(d)["model"] for d in (dirs[0], tmp_path / "alone"))
    for key in grouped:
        torch.testing.assert_close(grouped[key], single[key], rtol=1e-5, atol=1e-6, msg=key)
    assert records[0]["metrics"]["test_nll"] == pytest.approx(alone["metrics"]["test_nll"],
                                                              abs=1e-3)
