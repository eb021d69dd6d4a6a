"""What the execution options and their fallbacks really do, on the CPU: --tf32 sets and restores
torch's matmul flags around training, a failing compiler falls back to the eager fast path with
the same numbers, "auto" picks the device torch offers, evaluation subsets are seeded random
samples (never prefixes), and a resumed run's learning curve is the uninterrupted run's."""

from __future__ import annotations

import csv
import warnings

import numpy as np
import pytest
import torch

import benchmark.training.loop as loop_module
from benchmark.config import RunConfig
from benchmark.data.splits import load_dataset
from benchmark.errors import UserError
from benchmark.evaluation import likelihood
from benchmark.evaluation.inputs import (
    EVAL_SUBSET_SEED,
    TRAIN_SUBSET_SEED,
    evaluation_inputs,
    random_subset,
)
from benchmark.evaluation.likelihood import log_likelihood_estimates
from benchmark.models.network import IWAEModel
from benchmark.records.checkpoint import checkpoint_steps
from benchmark.records.environment import resolve_device
from benchmark.training import step
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import standalone_group_step, train_run
from benchmark.training.step import matmul_precision


def small(**kw) -> RunConfig:
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 3, "layers": 1, "epochs": 2,
            "eval_k": 10, "eval_n": 20}
    return RunConfig(**{**base, **kw})


def tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


# --- --tf32 ---------------------------------------------------------------------------------------

def test_matmul_precision_sets_both_flags_and_restores_them_even_on_error():
    before = tf32_flags()
    for allow in (True, False):
        with matmul_precision(allow):
            assert tf32_flags() == (allow, allow)
        assert tf32_flags() == before
    with pytest.raises(RuntimeError, match="boom"), matmul_precision(not before[0]):
        raise RuntimeError("boom")
    assert tf32_flags() == before


@pytest.mark.parametrize("allow", [True, False])
def test_training_runs_under_the_asked_matmul_precision(synthetic_data_dir, tmp_path,
                                                       monkeypatch, allow):
    seen = []
    real_loop = loop_module._train_loop

    def watching_loop(*args, **kwargs):
        seen.append(tf32_flags())
        return real_loop(*args, **kwargs)

    monkeypatch.setattr(loop_module, "_train_loop", watching_loop)
    before = tf32_flags()
    record = train_run(small(steps=2, epochs=None, eval_k=2, eval_n=5), tmp_path / "run",
                       synthetic_data_dir, show_progress=False,
                       options=ExecutionOptions(allow_tf32=allow))
    assert record["status"] == "complete"
    assert seen == [(allow, allow)] and tf32_flags() == before
    assert record["environment"]["execution"]["tf32"] is False  # the CPU has no TF32


# --- compiler failures --------------------------------------------------------------------------

def failing_compile(*args, **kwargs):
    def compiled(*a, **k):
        raise RuntimeError("no C++ compiler")
    return compiled


def test_a_failing_compiler_leaves_the_fast_training_step_eager(synthetic_data_dir,
                                                                monkeypatch):
    configs = [RunConfig(data="mnist-dynamic", model=m, k=2, layers=1, seed=s)
               for m, s in (("vae", 0), ("iwae", 1))]
    eager_step, eager_state = standalone_group_step(
        configs, synthetic_data_dir, ExecutionOptions(numerics="fast", compile_cpu=False))
    expected = [eager_step() for _ in range(2)]

    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(step.CompiledLoss, "_compiled", None)
    monkeypatch.setattr(step.CompiledLoss, "_failed", False)
    fallback_step, state = standalone_group_step(configs, synthetic_data_dir,
                                                 ExecutionOptions(numerics="fast"))
    with pytest.warns(RuntimeWarning, match="failed"):
        got = [fallback_step() for _ in range(2)]
    assert step.CompiledLoss._failed
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(state.model.parameters(), eager_state.model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_failing_compiler_leaves_the_fast_evaluation_eager(monkeypatch):
    model = IWAEModel(1, members=1)
    model.init_glorot([torch.Generator().manual_seed(0)], np.full(784, 0.2, np.float32))
    x = (torch.rand(1, 5, 784, generator=torch.Generator().manual_seed(1)) < 0.3).float()

    def estimate(compiled: bool) -> np.ndarray:
        return log_likelihood_estimates(model, x, 40, torch.Generator().manual_seed(2),
                                        fast=True, compile_forward=compiled)

    eager = estimate(False)
    monkeypatch.setattr(torch, "compile", failing_compile)
    monkeypatch.setattr(likelihood._CompiledForward, "compiled", None)
    monkeypatch.setattr(likelihood._CompiledForward, "failed", False)
    with pytest.warns(RuntimeWarning, match="evaluating eagerly"):
        fallback = estimate(True)
    assert likelihood._CompiledForward.failed
    np.testing.assert_array_equal(fallback, eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; afterwards eager without a word
        np.testing.assert_array_equal(estimate(True), eager)


# --- devices --------------------------------------------------------------------------------------

def test_auto_picks_cuda_exactly_when_torch_offers_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(UserError, match="--device cpu"):
        resolve_device("cuda")


# --- evaluation subsets ---------------------------------------------------------------------------

def test_subsets_are_seeded_random_samples_never_prefixes():
    n_total, n = 10_000, 300
    a = random_subset(n_total, n, EVAL_SUBSET_SEED)
    assert np.array_equal(a, random_subset(n_total, n, EVAL_SUBSET_SEED))  # the same for all
    assert len(np.unique(a)) == n and np.all(np.diff(a) > 0) and a.min() >= 0
    assert a.max() < n_total and not np.array_equal(a, np.arange(n))
    assert not np.array_equal(a, random_subset(n_total, n, EVAL_SUBSET_SEED + 1))
    # spread over the whole (class-sorted) file: 300 uniform draws put 30 +- 5.2 in each tenth;
    # every tenth holding between 10 and 50 fails only for a 4-sigma deviation
    per_tenth = np.bincount(a * 10 // n_total, minlength=10)
    assert per_tenth.min() >= 10 and per_tenth.max() <= 50, per_tenth
    assert np.array_equal(random_subset(50, None, 1), np.arange(50))
    assert np.array_equal(random_subset(50, 80, 1), np.arange(50))


def test_every_run_scores_the_same_random_test_and_train_subsets(synthetic_data_dir):
    dataset = load_dataset("mnist-fixed", synthetic_data_dir)
    inputs = evaluation_inputs(dataset, small(data="mnist-fixed", schedule="smoke", eval_n=20))
    n_test, n_train = dataset.test.shape[0], dataset.train.shape[0]
    assert np.array_equal(inputs.test_index, random_subset(n_test, 20, EVAL_SUBSET_SEED))
    assert not np.array_equal(inputs.test_index, np.arange(20))
    assert np.array_equal(inputs.train_index, random_subset(n_train, 20, TRAIN_SUBSET_SEED))
    assert torch.equal(inputs.train, torch.from_numpy(dataset.train[inputs.train_index]))
    other = evaluation_inputs(dataset, small(data="mnist-fixed", schedule="smoke", eval_n=20,
                                             model="vae", seed=5))
    assert np.array_equal(other.test_index, inputs.test_index)


# --- a resumed run's learning curve ---------------------------------------------------------------

def curve_rows(run_dir) -> list[dict[str, str]]:
    """metrics.csv without its wall-clock column."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def test_a_resumed_runs_learning_curve_is_the_uninterrupted_one(synthetic_data_dir, tmp_path):
    config = small(epochs=4)  # 20 steps, log points every 1-2 steps, checkpoints at 5 and 20

    def interrupt_at(step_no: int):
        def callback(done: int, planned: int) -> None:
            if done >= step_no:
                raise KeyboardInterrupt
        return callback

    whole = train_run(config, tmp_path / "whole", synthetic_data_dir, show_progress=False)
    run = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_run(config, run, synthetic_data_dir, show_progress=False,
                  on_progress=interrupt_at(12))
    saved = checkpoint_steps(run)[-1]
    assert saved < 12 and len(curve_rows(run)) > len(
        [r for r in curve_rows(tmp_path / "whole") if int(r["step"]) <= saved])
    resumed = train_run(config, run, synthetic_data_dir, show_progress=False)
    rows, expected = curve_rows(run), curve_rows(tmp_path / "whole")
    assert [r["step"] for r in rows] == [r["step"] for r in expected]  # none missing or twice
    assert rows == expected
    assert resumed["metrics"] == whole["metrics"]
