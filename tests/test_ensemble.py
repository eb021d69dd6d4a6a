"""Groups of runs trained as one batched ensemble: every member is the run it would be alone."""

import json

import numpy as np
import pytest
import torch

import benchmark.training.loop as train_module
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.models.network import IWAEModel
from benchmark.records.checkpoint import load_latest_checkpoint
from benchmark.training.ensemble import group_key, split_into_groups
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import train_group, train_run
from benchmark.training.optim import make_optimizer


def small(**kw) -> RunConfig:
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 3, "layers": 1, "epochs": 2,
            "eval_k": 10, "eval_n": 20}
    return RunConfig(**{**base, **kw})


def final_params(run_dir) -> dict[str, torch.Tensor]:
    return load_latest_checkpoint(run_dir)["model"]


def assert_same_params(a: dict, b: dict, atol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=atol, msg=name)


# A group that mixes everything a group may mix: objectives, seeds, data conditions (5 steps per
# epoch each on the synthetic data), lengths and evaluation settings.
MIXED = [
    small(model="iwae", seed=0, epochs=3),
    small(model="vae", seed=1, epochs=2),
    small(data="mnist-fixed", model="iwae", seed=2, epochs=None, steps=7),
    small(data="omniglot", model="vae", seed=3, epochs=4, eval_n=10),
]


def test_group_key_says_which_runs_can_share_a_group():
    assert group_key(small()) == group_key(small(model="vae", seed=4, data="omniglot",
                                                 epochs=7, eval_k=5))
    assert group_key(small()) != group_key(small(k=5))
    assert group_key(small()) != group_key(small(layers=2))
    assert group_key(small()) != group_key(small(fidelity="paper"))
    configs = [small(), small(k=5), small(seed=1), small(k=5, seed=1), small(seed=2)]
    assert split_into_groups(configs) == [[0, 2, 4], [1, 3]]
    assert split_into_groups(configs, max_members=2) == [[0, 2], [4], [1, 3]]


def test_runs_of_different_keys_are_refused(synthetic_data_dir, tmp_path):
    with pytest.raises(ValueError, match="cannot share a group"):
        train_group([small(), small(k=5)], [tmp_path / "a", tmp_path / "b"], synthetic_data_dir,
                    show_progress=False)


@pytest.mark.slow
def test_members_end_as_their_runs_trained_alone(synthetic_data_dir, tmp_path):
    dirs = [tmp_path / f"member{i}" for i in range(len(MIXED))]
    calls = []
    records = train_group(MIXED, dirs, synthetic_data_dir, run_ids=["a", "b", "c", "d"],
                          show_progress=False, on_progress=lambda *c: calls.append(c))
    for i, (config, record) in enumerate(zip(MIXED, records, strict=True)):
        assert record["status"] == "complete" and record["run_id"] == "abcd"[i]
        assert json.loads((dirs[i] / "result.json").read_text()) == record
        planned = record["progress"]["steps_planned"]
        assert record["progress"]["steps"] == planned  # each stopped at its own end
        assert load_latest_checkpoint(dirs[i])["step"] == planned
        assert record["environment"]["execution"]["group_size"] == len(MIXED)
        assert max(done for member, done, _ in calls if member == i) == planned

        alone = train_run(config, tmp_path / f"alone{i}", synthetic_data_dir,
                          show_progress=False)
        assert_same_params(final_params(dirs[i]), final_params(tmp_path / f"alone{i}"))
        for name in ("test_nll", "train_nll", "test_nll_pruned"):
            assert record["metrics"][name] == pytest.approx(alone["metrics"][name], abs=1e-3)
        assert record["metrics"]["active_units"] == alone["metrics"]["active_units"]
        curve = (dirs[i] / "metrics.csv").read_text().splitlines()
        assert len(curve) == len((tmp_path / f"alone{i}" / "metrics.csv").read_text()
                                 .splitlines())
        np.testing.assert_allclose(np.load(dirs[i] / "loglik_test.npy"),
                                   np.load(tmp_path / f"alone{i}" / "loglik_test.npy"),
                                   atol=1e-3)


@pytest.mark.slow
def test_fast_numerics_stay_within_rounding_of_exact(synthetic_data_dir, tmp_path):
    configs = MIXED[:2]
    fast = ExecutionOptions(numerics="fast")
    records = train_group(configs, [tmp_path / "f0", tmp_path / "f1"], synthetic_data_dir,
                          show_progress=False, options=fast)
    for i, config in enumerate(configs):
        assert records[i]["environment"]["execution"]["numerics"] == "fast"
        exact = train_run(config, tmp_path / f"e{i}", synthetic_data_dir, show_progress=False)
        # Measured: parameters within 1.2e-7, test NLLs within 4.8e-6 nats (of ~220). The fused
        # head rounds log p(x|h) to about 1e-4 nats absolute (its docstring) and the NLL
        # averages that over the 10 x 20 importance samples: 1e-4 bounds it with room.
        assert_same_params(final_params(tmp_path / f"f{i}"), final_params(tmp_path / f"e{i}"),
                           atol=1e-6)
        assert records[i]["metrics"]["test_nll"] == pytest.approx(exact["metrics"]["test_nll"],
                                                                  abs=1e-4)


@pytest.mark.slow
def test_a_member_with_a_non_finite_bound_fails_alone(synthetic_data_dir, tmp_path,
                                                      monkeypatch):
    calls = {"n": 0}
    real_bound = train_module.bound

    def poison_member_one(model, log_w):
        calls["n"] += 1
        value = real_bound(model, log_w)
        if calls["n"] >= 12 and value.shape[0] == 3:  # while all three train together
            value = value.clone()
            value[1] = float("nan")
        return value

    configs = [small(seed=0, epochs=13), small(seed=1, epochs=13), small(seed=2, epochs=4)]
    dirs = [tmp_path / f"m{i}" for i in range(3)]
    monkeypatch.setattr(train_module, "bound", poison_member_one)
    records = train_group(configs, dirs, synthetic_data_dir, show_progress=False)
    monkeypatch.undo()

    assert [r["status"] for r in records] == ["complete", "failed", "complete"]
    assert records[1]["failure"]["step"] == 12 and "non-finite" in records[1]["reason"]
    assert load_latest_checkpoint(dirs[1])["step"] == 5  # the last stage end before the NaN
    for i in (0, 2):
        train_run(configs[i], tmp_path / f"alone{i}", synthetic_data_dir, show_progress=False)
        assert_same_params(final_params(dirs[i]), final_params(tmp_path / f"alone{i}"))


@pytest.mark.slow
def test_a_member_checkpoint_resumes_as_a_single_run(synthetic_data_dir, tmp_path,
                                                     monkeypatch):
    configs = [small(seed=0, epochs=4), small(model="vae", seed=1, epochs=4)]
    dirs = [tmp_path / "m0", tmp_path / "m1"]
    real_save = train_module.save_checkpoint

    def crash_after_stage_one(run_dir, payload):
        real_save(run_dir, payload)
        if payload["step"] == 5 and run_dir == dirs[1]:
            raise RuntimeError("killed")

    monkeypatch.setattr(train_module, "save_checkpoint", crash_after_stage_one)
    with pytest.raises(RuntimeError, match="killed"):
        train_group(configs, dirs, synthetic_data_dir, show_progress=False)
    monkeypatch.undo()
    assert json.loads((dirs[0] / "result.json").read_text())["status"] == "running"

    # member 0 resumes alone, member 1 in a new group: both end as their uninterrupted runs
    assert train_run(configs[0], dirs[0], synthetic_data_dir,
                     show_progress=False)["status"] == "complete"
    assert train_group([configs[1]], [dirs[1]], synthetic_data_dir,
                       show_progress=False)[0]["status"] == "complete"
    for i in range(2):
        train_run(configs[i], tmp_path / f"alone{i}", synthetic_data_dir, show_progress=False)
        assert_same_params(final_params(dirs[i]), final_params(tmp_path / f"alone{i}"))


def test_member_checkpoints_are_single_run_checkpoints(synthetic_data_dir, tmp_path,
                                                       monkeypatch):
    configs = [small(epochs=1), small(fidelity="paper", epochs=1)]
    for config, name in ((configs[0], "code"), (configs[1], "paper")):
        dirs = [tmp_path / f"{name}{i}" for i in range(2)]
        group = [config, RunConfig(**{**config.to_dict(), "seed": 9})]
        train_group(group, dirs, synthetic_data_dir, show_progress=False)
        payload = load_latest_checkpoint(dirs[0])
        model = IWAEModel(1)
        model.load_state_dict(payload["model"])
        optimizer = make_optimizer(config.fidelity, model.parameters(), 1e-3)
        optimizer.load_state_dict(payload["optimizer"])
        assert payload["step"] == 5 and set(payload["rng"]) >= {"noise", "binarizer"}

        # complete members are returned as recorded, never trained again
        monkeypatch.setattr(train_module, "_train_loop", lambda *a, **k: pytest.fail("trained"))
        again = train_group(group, dirs, synthetic_data_dir, show_progress=False)
        assert [r["status"] for r in again] == ["complete", "complete"]
        monkeypatch.undo()


def test_setup_errors_come_before_any_training(synthetic_data_dir, tmp_path, monkeypatch):
    train_run(small(), tmp_path / "taken", synthetic_data_dir, show_progress=False)
    monkeypatch.setattr(train_module, "_train_loop", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(UserError, match="holds a different run"):
        train_group([small(seed=1), small(seed=5)], [tmp_path / "new", tmp_path / "taken"],
                    synthetic_data_dir, show_progress=False)


def test_a_continuation_member_keeps_its_parents_adam_state(synthetic_data_dir, tmp_path):
    train_run(small(model="vae", k=1), tmp_path / "parent", synthetic_data_dir,
              show_progress=False)
    parent_t = load_latest_checkpoint(tmp_path / "parent")["optimizer"]["state"][0]["t"]
    child = small(model="iwae", k=1, init_from=str(tmp_path / "parent"), epochs=None, steps=4)
    sibling = small(model="iwae", k=1, seed=3, epochs=1)
    records = train_group([child, sibling], [tmp_path / "child", tmp_path / "sibling"],
                          synthetic_data_dir, show_progress=False)
    assert [r["status"] for r in records] == ["complete", "complete"]
    assert records[0]["progress"]["epochs_total"] == 2187
    state = load_latest_checkpoint(tmp_path / "child")["optimizer"]
    assert state["state"][0]["t"] == parent_t + 4
    assert state["param_groups"][0]["lr"] == 1e-4
