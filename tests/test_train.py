"""Training runs end to end on synthetic data: records, curves, resume, failure, continuation."""

import csv
import json
import os
import random
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


class Crash(Exception):
    """Stands in for a kill between two checkpoints."""


def curve_rows(run_dir: Path) -> list[dict]:
    """metrics.csv without its wall-clock column, which no two runs share."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def assert_same_state(whole: dict, resumed: dict) -> None:
    """Bit-identical parameters and optimizer state (every moment, every step count)."""
    assert whole["step"] == resumed["step"]
    assert whole["model"].keys() == resumed["model"].keys()
    for name in whole["model"]:
        assert torch.equal(whole["model"][name], resumed["model"][name]), name
    flat_whole, flat_resumed = leaves(whole["optimizer"]), leaves(resumed["optimizer"])
    assert [path for path, _ in flat_whole] == [path for path, _ in flat_resumed]
    for (path, a), (_, b) in zip(flat_whole, flat_resumed, strict=True):
        assert torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b, path


def leaves(tree, path: str = "") -> list[tuple[str, object]]:
    """(path, value) of every leaf of nested dicts and lists."""
    if isinstance(tree, dict):
        return [leaf for key in sorted(tree, key=str)
                for leaf in leaves(tree[key], f"{path}/{key}")]
    if isinstance(tree, list | tuple):
        return [leaf for i, item in enumerate(tree) for leaf in leaves(item, f"{path}/{i}")]
    return [(path, tree)]


def test_a_resume_continues_exactly_with_the_threads_it_started_with(
        synthetic_data_dir, tmp_path, monkeypatch):
    """Killed between checkpoints that fall between learning-curve rows, then resumed on more
    threads: the run continues from its checkpoint, on the thread count it started with, and
    ends bit-identical to the run never interrupted, learning curve included."""
    # Host checks (and so checkpoints, at checkpoint_every_s=0) every 3 steps: in stage 2 (steps
    # 20-65, curve rows at 31, 42, 54, 65) the checkpoints at 23, 26 and 29 fall between rows,
    # with a part of the running training-bound sum behind the next row.
    monkeypatch.setattr(train_module, "CHECK_EVERY", 3)
    config = small(epochs=13)
    threads = torch.get_num_threads()
    real_make_step = train_module._make_step
    seen_threads: set[int] = set()

    def make_step(state, members, options):
        step = real_make_step(state, members, options)

        def observed(steps):
            seen_threads.add(torch.get_num_threads())
            if steps[0] == crash_at["step"]:
                raise Crash
            return step(steps)

        return observed

    crash_at = {"step": -1}
    monkeypatch.setattr(train_module, "_make_step", make_step)
    try:
        torch.set_num_threads(1)
        whole = train_run(config, tmp_path / "whole", synthetic_data_dir, show_progress=False,
                          checkpoint_every_s=0.0)
        crash_at["step"] = 30
        with pytest.raises(Crash):
            train_run(config, tmp_path / "killed", synthetic_data_dir, show_progress=False,
                      checkpoint_every_s=0.0)
        assert checkpoint_steps(tmp_path / "killed") == [29, 26]
        interim = json.loads((tmp_path / "killed" / "result.json").read_text())
        assert interim["status"] == "running" and interim["progress"]["steps"] == 29
        assert interim["environment"]["execution"]["threads"] == 1

        crash_at["step"] = -1
        seen_threads.clear()
        torch.set_num_threads(2)
        resumed = train_run(config, tmp_path / "killed", synthetic_data_dir, show_progress=False,
                            checkpoint_every_s=0.0)
        assert seen_threads == {1}  # the run's thread count, not this process's
        assert torch.get_num_threads() == 2  # and this process's given back afterwards
    finally:
        torch.set_num_threads(threads)
    assert resumed["progress"]["resumed_from"] == [29]
    assert whole["progress"]["resumed_from"] == []
    assert resumed["environment"]["execution"]["threads"] == 1
    assert resumed["metrics"] == whole["metrics"]
    assert curve_rows(tmp_path / "killed") == curve_rows(tmp_path / "whole")
    assert_same_state(load_latest_checkpoint(tmp_path / "whole"),
                      load_latest_checkpoint(tmp_path / "killed"))


def train_cli(data_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmark", "train", "--data", "mnist-dynamic",
            "--model", "iwae", "--k", "2", "--layers", "2", "--epochs", "121",
            "--eval-k", "5", "--eval-n", "10", "--data-dir", str(data_dir), "--out", str(out),
            "--checkpoint-every", "0.001", *extra]


@pytest.mark.slow
def test_resume_after_sigkill_at_a_random_moment_is_bit_identical(synthetic_data_dir, tmp_path):
    """SIGKILL at a seeded random moment (possibly inside a checkpoint write), then the same
    command on another thread count: the second process starts from the newest checkpoint that
    verifies, on the thread count the run started with, and ends as the run never killed."""
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(train_cli(synthetic_data_dir, tmp_path / "whole"), cwd=REPO, env=one_thread,
                   check=True, capture_output=True)

    killed = tmp_path / "killed"
    kill_after = random.Random(16).randrange(20, 500)  # a step the newest checkpoint must pass
    proc = subprocess.Popen(train_cli(synthetic_data_dir, killed), cwd=REPO, env=one_thread,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not [s for s in checkpoint_steps(killed) if s >= kill_after]:
        assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint to kill after"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    steps_at_kill = checkpoint_steps(killed)
    resume_step = load_latest_checkpoint(killed)["step"]
    assert kill_after <= steps_at_kill[0] < 605, "the run finished before it was killed"
    # the newest checkpoint, or the one kept before it when the kill cut the newest's write short
    assert resume_step in steps_at_kill[:2]
    interim = json.loads((killed / "result.json").read_text())
    assert interim["status"] == "running" and interim["progress"]["steps"] <= resume_step

    two_threads = {**os.environ, "OMP_NUM_THREADS": "2"}
    second = subprocess.run(train_cli(synthetic_data_dir, killed), cwd=REPO, env=two_threads,
                            check=True, capture_output=True, text=True)
    assert (f"resuming from its checkpoint of step {resume_step} of 605 (1 thread(s), as it "
            "started)") in second.stderr
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    resumed = json.loads((killed / "result.json").read_text())
    assert resumed["status"] == "complete"
    assert resumed["progress"]["resumed_from"] == [resume_step]
    assert resumed["environment"]["execution"]["threads"] == 1
    assert resumed["metrics"] == whole["metrics"]
    assert curve_rows(killed) == curve_rows(tmp_path / "whole")  # no row missing or repeated
    assert_same_state(load_latest_checkpoint(tmp_path / "whole"), load_latest_checkpoint(killed))
    assert not list(killed.rglob("*.tmp"))


def test_cli_errors_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmark", "train", "--data",
                             "mnist-dynamic", "--model", "iwae", "--k", "5", "--layers", "1",
                             "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r")],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "fetch" in lines[0], result.stderr
