"""Runs of the objectives beyond VAE and IWAE: names, records and the command line, the exact
numerics (a run alone is bit-identical to a plain single-run loop for its estimator), batched
groups mixing estimators, and resume."""

import json

import pytest
import torch
from cuda_marks import needs_cuda
from interruptions import kill_after_checkpoint

from benchmark.cli import main
from benchmark.config import RunConfig, run_id
from benchmark.data.splits import load_dataset
from benchmark.definitions import objective_label
from benchmark.errors import UserError
from benchmark.models import objective_of
from benchmark.models.estimators import GroupObjectives, estimator_backward
from benchmark.models.objectives import training_loss
from benchmark.records.checkpoint import load_latest_checkpoint
from benchmark.sweeps.grids import SweepOptions, expand_grid
from benchmark.training.group import initial_member_model, member_generators
from benchmark.training.loop import train_group, train_run
from benchmark.training.minibatches import MinibatchSource
from benchmark.training.optim import loss_reduction, make_optimizer, set_learning_rate
from benchmark.training.schedule import make_plan


def small(**kw) -> RunConfig:
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 4, "layers": 1, "epochs": 2,
            "eval_k": 10, "eval_n": 20}
    return RunConfig(**{**base, **kw})


# Every objective beyond the paper's, at 4 samples per example (so they can share a group).
NEW = {
    "iwae-stl": small(estimator="stl"),
    "iwae-dreg": small(estimator="dreg"),
    "miwae": small(model="miwae", k=2, params={"m": 2}),
    "ciwae": small(model="ciwae", params={"beta": 0.25}),
    "piwae": small(model="piwae", k=2, params={"m": 2}),
    "rws": small(model="rws"),
}


def test_the_paper_runs_keep_their_ids_and_config_records():
    config = RunConfig(data="mnist-dynamic", model="iwae", k=50, layers=2)
    assert run_id(config) == "mnist-dynamic_iwae_k50_L2_s0_code_full"
    assert set(config.to_dict()) == {"data", "model", "k", "layers", "seed", "fidelity",
                                     "schedule", "stages", "epochs", "steps", "eval_k", "eval_n",
                                     "device", "init_from"}
    assert RunConfig.from_dict(config.to_dict()) == config
    assert config.is_plain and config.samples == 50


def test_every_new_objective_is_named_by_its_bound_estimator_and_parameters():
    ids = {name: run_id(RunConfig.from_dict({**c.to_dict(), "epochs": None, "eval_k": None,
                                             "eval_n": None})) for name, c in NEW.items()}
    assert ids == {
        "iwae-stl": "mnist-dynamic_iwae-stl_k4_L1_s0_code_full",
        "iwae-dreg": "mnist-dynamic_iwae-dreg_k4_L1_s0_code_full",
        "miwae": "mnist-dynamic_miwae_m2_k2_L1_s0_code_full",
        "ciwae": "mnist-dynamic_ciwae_beta0.25_k4_L1_s0_code_full",
        "piwae": "mnist-dynamic_piwae_m2_k2_L1_s0_code_full",
        "rws": "mnist-dynamic_rws_k4_L1_s0_code_full",
    }
    assert objective_label("miwae", 8, params={"m": 8}) == "MIWAE(M=8, K=8)"
    assert objective_label("iwae", 50, estimator="dreg") == "IWAE-DReG k=50"
    assert objective_label("ciwae", 64, params={"beta": 0.05}) == "CIWAE(β=0.05) k=64"
    assert NEW["miwae"].to_dict()["m"] == 2 and not NEW["miwae"].is_plain
    assert RunConfig.from_dict(NEW["ciwae"].to_dict()) == NEW["ciwae"]


@pytest.mark.parametrize("kw,message", [
    ({"model": "miwae"}, "--model miwae needs --m"),
    ({"model": "ciwae"}, "--model ciwae needs --beta"),
    ({"model": "vae", "estimator": "dreg"}, "use it with --model iwae"),
    ({"estimator": "dreg", "layers": 2}, "dreg is defined for one stochastic layer"),
    ({"params": {"m": 4}}, "--m applies to --model miwae or piwae"),
    ({"params": {"beta": 0.5}}, "--beta applies to --model ciwae"),
    ({"model": "ciwae", "params": {"beta": 1.5}}, "--beta must be between 0 and 1"),
    ({"model": "nvil"}, "--model must be one of"),
])
def test_wrong_objective_parameters_are_refused_with_what_to_do(kw, message):
    with pytest.raises(UserError, match=message):
        small(**kw)


def test_bad_objective_flags_end_in_one_line(tmp_path, capsys):
    argv = ["train", "--data", "mnist-dynamic", "--model", "iwae", "--estimator", "dreg",
            "--k", "5", "--layers", "2", "--data-dir", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "one stochastic layer" in err


def single_run_loop(config: RunConfig, data_dir, steps: int) -> dict[str, torch.Tensor]:
    """The reference: one model, its own optimizer and generators, one plain loop. What a run
    alone must reproduce bit for bit (the exact numerics)."""
    dataset = load_dataset(config.data, data_dir)
    plan = make_plan(config, dataset.train.shape[0])
    model = initial_member_model(config, dataset)
    optimizer = make_optimizer(config.fidelity, model.parameters(), plan.stage_at(0).lr)
    source = MinibatchSource(dataset.train, config, plan, torch.device("cpu"))
    noise, binarizer = member_generators(config, dataset.dynamic, torch.device("cpu"))
    group = GroupObjectives([objective_of(config)], "cpu")
    reduction = loss_reduction(config.fidelity)
    for step in range(steps):
        set_learning_rate(optimizer, plan.stage_at(step).lr)
        x = binarizer(source.batch(step)).unsqueeze(0)
        eps = model.draw_noise(1, config.samples, x.shape[1], noise, "cpu")
        for p in model.parameters():
            p.grad = None
        estimate = group.estimate(model, x, eps)
        estimator_backward(model, estimate, lambda s: training_loss(s, reduction))
        optimizer.step()
    return {name: p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(NEW))
def test_a_run_alone_is_bit_identical_to_the_single_run_loop(name, synthetic_data_dir,
                                                             tmp_path):
    config = NEW[name]  # 2 epochs of 5 steps: crosses the first learning-rate change
    record = train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    assert record["status"] == "complete"
    trained = load_latest_checkpoint(tmp_path / "run")["model"]
    reference = single_run_loop(config, synthetic_data_dir, record["progress"]["steps"])
    for key, value in reference.items():
        assert torch.equal(trained[key], value), key


def test_records_say_which_bound_and_estimator_a_run_used(synthetic_data_dir, tmp_path):
    record = train_run(NEW["piwae"], tmp_path / "run", synthetic_data_dir, show_progress=False)
    config = record["config"]
    assert (config["model"], config["m"], config["k"]) == ("piwae", 2, 2)
    assert "--model piwae --m 2 --k 2" in record["command"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["m"] == 2 and "estimator" not in saved
    # a run directory of another objective is refused, both ways round
    with pytest.raises(UserError, match="holds a different run.*m: 2 there, None here"):
        train_run(small(model="iwae"), tmp_path / "run", synthetic_data_dir,
                  show_progress=False)
    train_run(small(), tmp_path / "plain", synthetic_data_dir, show_progress=False)
    with pytest.raises(UserError, match="estimator: None there, 'dreg' here"):
        train_run(NEW["iwae-dreg"], tmp_path / "plain", synthetic_data_dir,
                  show_progress=False)


@pytest.mark.slow
def test_a_mixed_group_trains_every_member_as_alone(synthetic_data_dir, tmp_path):
    configs = [small(model="vae"), small(seed=1), *NEW.values()]
    dirs = [tmp_path / f"m{i}" for i in range(len(configs))]
    records = train_group(configs, dirs, synthetic_data_dir, show_progress=False)
    for i, (config, record) in enumerate(zip(configs, records, strict=True)):
        assert record["status"] == "complete"
        assert record["environment"]["execution"]["group_size"] == len(configs)
        alone = train_run(config, tmp_path / f"alone{i}", synthetic_data_dir,
                          show_progress=False)
        ours, theirs = (load_latest_checkpoint(d)["model"] for d in (dirs[i],
                                                                     tmp_path / f"alone{i}"))
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-5, atol=1e-6,
                                       msg=f"{run_id(config)}: {key}")
        assert record["metrics"]["test_nll"] == pytest.approx(alone["metrics"]["test_nll"],
                                                              abs=1e-3)


def test_a_new_estimator_run_resumes_bit_identically(synthetic_data_dir, tmp_path, monkeypatch):
    config = small(model="rws", epochs=4)  # stage ends at steps 5 and 20
    kill_after_checkpoint(monkeypatch, 5)
    with pytest.raises(RuntimeError, match="killed"):
        train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    monkeypatch.undo()
    assert train_run(config, tmp_path / "run", synthetic_data_dir,
                     show_progress=False)["status"] == "complete"
    whole = train_run(config, tmp_path / "whole", synthetic_data_dir, show_progress=False)
    assert whole["status"] == "complete"
    a = load_latest_checkpoint(tmp_path / "run")["model"]
    b = load_latest_checkpoint(tmp_path / "whole")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


@pytest.mark.compiles  # the fast numerics compile the step (tens of seconds)
@pytest.mark.parametrize("name", ["iwae-dreg", "piwae"])
def test_fast_numerics_train_the_new_estimators_within_rounding(name, synthetic_data_dir,
                                                                tmp_path):
    from benchmark.training.execution import ExecutionOptions

    config = NEW[name]
    fast = train_run(config, tmp_path / "fast", synthetic_data_dir, show_progress=False,
                     options=ExecutionOptions(numerics="fast"))
    exact = train_run(config, tmp_path / "exact", synthetic_data_dir, show_progress=False)
    assert fast["environment"]["execution"]["numerics"] == "fast"
    a = load_latest_checkpoint(tmp_path / "fast")["model"]
    b = load_latest_checkpoint(tmp_path / "exact")["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-5, msg=key)
    assert fast["metrics"]["test_nll"] == pytest.approx(exact["metrics"]["test_nll"], abs=1e-2)


def test_the_command_line_trains_a_new_objective(synthetic_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--data", "mnist-dynamic", "--model", "miwae", "--m", "2", "--k", "3",
            "--layers", "1", "--steps", "3", "--eval-k", "5", "--eval-n", "10",
            "--data-dir", str(synthetic_data_dir), "--out", str(out)]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert line.startswith("mnist-dynamic_miwae_m2_k3_L1_s0_code_full_steps3_evalk5_evaln10:")
    record = json.loads((out / "result.json").read_text())
    assert record["status"] == "complete" and record["config"]["m"] == 2


def test_the_estimators_grid_shares_the_table1_cells_and_groups_by_samples(tmp_path):
    from benchmark.sweeps.grids import SweepOptions, expand_grid, group_runs

    plan = expand_grid("estimators", SweepOptions(schedule="smoke", seeds=2), tmp_path)
    assert len(plan) == 2 * 21 and len({r.run_id for r in plan}) == len(plan)
    assert all(r.config.layers == 1 and r.config.data == "mnist-dynamic" for r in plan)
    table1 = [r for r in plan if r.sweep == "table1"]
    assert sorted({(r.config.model, r.config.k) for r in table1}) == [
        ("iwae", 5), ("iwae", 50), ("vae", 5), ("vae", 50)]
    # the very runs (same directories) that the table1 grid plans
    table1_plan = {r.run_dir for r in expand_grid("table1", SweepOptions(schedule="smoke",
                                                                         seeds=2), tmp_path)}
    assert {r.run_dir for r in table1} <= table1_plan
    names = {r.run_id for r in plan}
    assert {"mnist-dynamic_piwae_m8_k8_L1_s1_code_smoke", "mnist-dynamic_iwae-dreg_k50_L1_s0_"
            "code_smoke", "mnist-dynamic_ciwae_beta0.05_k64_L1_s0_code_smoke"} <= names
    for group in group_runs(plan, workers=1):
        assert len({r.config.samples for r in group}) == 1
    samples = sorted({r.config.samples for r in plan})
    assert samples == [5, 50, 64]


@needs_cuda
@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_cuda_graph_step_replays_the_eager_step_for_the_new_estimators(synthetic_data_dir,
                                                                      numerics):
    from benchmark.training.execution import ExecutionOptions
    from benchmark.training.loop import standalone_group_step

    configs = [RunConfig(**{**NEW[name].to_dict(), "device": "cuda", "seed": i})
               for i, name in enumerate(("iwae-dreg", "piwae", "rws", "miwae"))]
    results = []
    for graphs in (False, True):
        options = ExecutionOptions(numerics=numerics, cuda_graphs=graphs)
        step, state = standalone_group_step(configs, synthetic_data_dir, options)
        bounds = torch.stack([step().clone() for _ in range(8)])  # warm-up, capture, replays
        results.append((bounds, [p.detach().clone() for p in state.model.parameters()]))
    (eager_bounds, eager_params), (graph_bounds, graph_params) = results
    torch.testing.assert_close(graph_bounds, eager_bounds, rtol=1e-5, atol=1e-4)
    for a, b in zip(graph_params, eager_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_runs_share_a_group_by_samples_per_example_not_by_k():
    from benchmark.training.ensemble import group_key, split_into_groups

    assert group_key(NEW["piwae"]) == group_key(small()) == group_key(NEW["iwae-dreg"])
    assert group_key(small(model="miwae", k=4, params={"m": 2})) != group_key(small())
    assert group_key(small(model="miwae", k=4, params={"m": 2})) == group_key(small(k=8))
    configs = [small(), small(model="miwae", k=2, params={"m": 2}),
               small(model="miwae", k=4, params={"m": 2}), small(k=8, estimator="stl")]
    assert split_into_groups(configs) == [[0, 1], [2, 3]]


def test_estimators_cells_are_chosen_as_a_run_id_writes_them(tmp_path):
    options = SweepOptions(schedule="smoke", cells=("miwae_m8_k8", "iwae-dreg_k5"))
    plan = expand_grid("estimators", options, tmp_path)
    assert [run.run_id for run in plan] == ["mnist-dynamic_iwae-dreg_k5_L1_s0_code_smoke",
                                            "mnist-dynamic_miwae_m8_k8_L1_s0_code_smoke"]
    with pytest.raises(UserError, match="iwae_k7: not a cell of the estimators grid"):
        expand_grid("estimators", SweepOptions(cells=("iwae_k7",)), tmp_path)
