"""Training runs end to end on synthetic data: records, curves, resume, failure, continuation."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import benchmark.training.loop as train_module
from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.records.checkpoint import checkpoint_steps, load_latest_checkpoint
from benchmark.training.loop import train_run
from benchmark.training.minibatches import MinibatchSource
from benchmark.training.schedule import make_plan

REPO = Path(__file__).resolve().parents[1]


def small(**kw) -> RunConfig:
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 3, "layers": 1, "epochs": 2,
            "eval_k": 10, "eval_n": 20}
    return RunConfig(**{**base, **kw})


@pytest.mark.parametrize("data,layers,model", [("mnist-dynamic", 1, "iwae"),
                                               ("mnist-fixed", 2, "vae"),
                                               ("omniglot", 2, "iwae")])
def test_a_run_completes_with_its_record(synthetic_data_dir, tmp_path, data, layers, model):
    config = small(data=data, layers=layers, model=model)
    record = train_run(config, tmp_path / "run", synthetic_data_dir, run_id="r",
                       show_progress=False)
    assert record["status"] == "complete"
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == record
    # synthetic files are checked against the data folder's own catalogue, and that is recorded
    assert record["environment"]["dataset_catalogue"] == str(synthetic_data_dir / "catalogue.json")
    m = record["metrics"]
    assert m["eval_k"] == 10 and m["eval_n"] == 20
    assert 0 < m["test_nll"] < 784 * np.log(2) * 2 and m["test_nll_se"] > 0
    assert len(m["active_units"]) == layers and len(m["unit_variances"]) == layers
    assert record["progress"]["steps"] == 10 and record["progress"]["epochs_total"] == 3280
    assert record["progress"]["epochs"] == 2
    lines = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,step,stage,lr,train_bound_nll,test_nll_subset")
    assert len(lines) > 3  # several points per stage
    for name in ("loglik_test.npy", "samples.npy", "reconstructions.npy"):
        assert (tmp_path / "run" / name).exists()
    assert np.load(tmp_path / "run" / "loglik_test.npy").shape == (20,)
    assert np.load(tmp_path / "run" / "reconstructions.npy").shape == (2, 20, 784)


def test_complete_run_is_not_trained_again(synthetic_data_dir, tmp_path, monkeypatch):
    config = small()
    first = train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    monkeypatch.setattr(train_module, "_train_loop", lambda *a, **k: pytest.fail("retrained"))
    assert train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False) == first


def test_run_dir_of_another_config_is_refused(synthetic_data_dir, tmp_path):
    train_run(small(), tmp_path / "run", synthetic_data_dir, show_progress=False)
    with pytest.raises(UserError, match="holds a different run.*k: 3 there, 5 here"):
        train_run(small(k=5), tmp_path / "run", synthetic_data_dir, show_progress=False)


def test_non_finite_bound_fails_the_run_and_keeps_the_last_good_checkpoint(
        synthetic_data_dir, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_bound = train_module.bound

    def breaking_bound(model, log_w):
        calls["n"] += 1
        value = real_bound(model, log_w)
        return value * float("nan") if calls["n"] >= 23 else value

    monkeypatch.setattr(train_module, "bound", breaking_bound)
    record = train_run(small(epochs=13), tmp_path / "run", synthetic_data_dir,
                       show_progress=False)
    assert record["status"] == "failed"
    assert record["failure"]["step"] == 23
    assert "non-finite" in record["reason"]
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["status"] == "failed" and saved["failure"]["step"] == 23
    checkpoint = load_latest_checkpoint(tmp_path / "run")
    assert checkpoint["step"] == 20  # the end of stage 1 (1 + 3 epochs of 5 steps)
    assert all(torch.isfinite(t).all() for t in checkpoint["model"].values())


def test_code_fidelity_never_reshuffles_and_paper_fidelity_does(synthetic_data_dir):
    from benchmark.data.splits import load_dataset

    dataset = load_dataset("mnist-dynamic", synthetic_data_dir)
    train = dataset.train
    code = MinibatchSource(train, small(), make_plan(small(), 100), torch.device("cpu"))
    assert torch.equal(code.batch(1), torch.from_numpy(train[20:40]))
    assert torch.equal(code.batch(6), code.batch(1))  # epoch 2, same minibatch
    paper_cfg = small(fidelity="paper")
    paper = MinibatchSource(train, paper_cfg, make_plan(paper_cfg, 100), torch.device("cpu"))
    epoch0 = torch.cat([paper.batch(s) for s in range(5)])
    epoch1 = torch.cat([paper.batch(s) for s in range(5, 10)])
    assert not torch.equal(epoch0, epoch1)
    # each epoch is a permutation of the whole training set
    key = lambda t: sorted(map(tuple, t.numpy().round(4)))  # noqa: E731
    assert key(epoch0) == key(epoch1) == key(torch.from_numpy(train))


def test_continuation_keeps_the_adam_state(synthetic_data_dir, tmp_path):
    parent = train_run(small(model="vae", k=1), tmp_path / "parent", synthetic_data_dir,
                       show_progress=False)
    assert parent["status"] == "complete"
    parent_t = next(iter(load_latest_checkpoint(tmp_path / "parent")["optimizer"]["state"]
                         .values()))["t"]
    child = small(model="iwae", k=5, init_from=str(tmp_path / "parent"), epochs=None, steps=4)
    record = train_run(child, tmp_path / "child", synthetic_data_dir, show_progress=False)
    assert record["status"] == "complete" and record["progress"]["epochs_total"] == 2187
    state = load_latest_checkpoint(tmp_path / "child")
    assert next(iter(state["optimizer"]["state"].values()))["t"] == parent_t + 4
    assert state["optimizer"]["param_groups"][0]["lr"] == 1e-4
    with pytest.raises(UserError, match="--layers"):
        train_run(small(layers=2, init_from=str(tmp_path / "parent"), steps=2),
                  tmp_path / "bad", synthetic_data_dir, show_progress=False)


def train_cli(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", "train", "--data", "mnist-dynamic",
            "--model", "iwae", "--k", "2", "--layers", "2", "--epochs", "121",
            "--eval-k", "5", "--eval-n", "10", "--data-dir", str(data_dir), "--out", str(out),
            "--checkpoint-every", "0.001", *extra]


def final_model(run_dir: Path) -> dict:
    return load_latest_checkpoint(run_dir)["model"]


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(synthetic_data_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(train_cli(synthetic_data_dir, tmp_path / "whole"), cwd=REPO, env=env,
                   check=True, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(train_cli(synthetic_data_dir, killed), cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [s for s in checkpoint_steps(killed) if s >= 20] and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = checkpoint_steps(killed)
    assert steps_at_kill and steps_at_kill[0] < 605, "the run finished before it was killed"
    assert json.loads((killed / "result.json").read_text())["status"] == "running"

    subprocess.run(train_cli(synthetic_data_dir, killed), cwd=REPO, env=env, check=True,
                   capture_output=True)
    whole, resumed = final_model(tmp_path / "whole"), final_model(killed)
    assert whole.keys() == resumed.keys()
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    assert json.loads((killed / "result.json").read_text())["status"] == "complete"


def test_cli_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmark", "train", "--data",
                             "mnist-dynamic", "--model", "iwae", "--k", "5", "--layers", "1",
                             "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "fetch" in lines[0], result.stderr
