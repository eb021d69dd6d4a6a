"""The examples: examples/iwae_one_file.py takes the suite's steps (fidelity paper), and
examples/plot_results.py draws its figures from a results folder."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch

from benchmark.config import RunConfig
from benchmark.training.loop import standalone_group_step

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ADAM_LR, ADAM_EPS = 1e-3, 1e-4  # stage 0's learning rate, and the paper's epsilon


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def linear_pairs(suite: torch.nn.Module, mine: torch.nn.Module) -> list[tuple]:
    """Each of the suite's StackedLinear layers (member 0; weight (in, out)) beside the one-file
    model's nn.Linear (weight (out, in)) that computes the same map."""
    block, head = suite.encoder[0], suite.likelihood
    return [(block.trunk.layers[0], mine.encoder.trunk[0]),
            (block.trunk.layers[1], mine.encoder.trunk[2]),
            (block.mean, mine.encoder.mean), (block.log_sigma, mine.encoder.log_sigma),
            (head.trunk.layers[0], mine.decoder[0]), (head.trunk.layers[1], mine.decoder[2]),
            (head.logits, mine.decoder[4])]


def tensor_pairs(pairs: list[tuple]) -> list[tuple[Callable, torch.Tensor]]:
    """(the suite's tensor in nn.Linear's layout, given the tensor or its .grad; the example's
    tensor) for every weight, (1, in, out) -> (out, in), and bias, (1, 1, out) -> (out,)."""
    weights = [(lambda t, s=s: t(s.weight)[0].T, m.weight) for s, m in pairs]
    biases = [(lambda t, s=s: t(s.bias)[0, 0], m.bias) for s, m in pairs]
    return weights + biases


def value(t: torch.Tensor) -> torch.Tensor:
    return t.detach()


def grad(t: torch.Tensor) -> torch.Tensor:
    return t.grad


def ulp(x: torch.Tensor) -> float:
    """The spacing of float32 numbers at the largest magnitude of x."""
    return 2.0 ** (math.frexp(float(x.detach().abs().max()))[1] - 24)


@pytest.mark.parametrize("model,k", [("iwae", 5), ("vae", 5), ("iwae", 50)])
def test_two_steps_of_the_one_file_iwae_are_the_suites_paper_steps(synthetic_data_dir, model,
                                                                      k):
    """The suite's exact step (fidelity paper, a group of one) and the example's train_step,
    from the same parameters, on the suite's minibatch and noise (recorded as it draws them).

    Tolerances from float32 rounding: the two compute the same function in different orders
    (batched matmuls with a member dimension against nn.Linear), so each gradient may differ by
    a few units in the last place of its largest entry: 2^-20 of it. One Adam step moves a
    parameter by lr m^/(sqrt(v^) + eps), whose derivative with respect to any gradient it
    averages is at most lr / eps = 10, so a parameter may differ by 10 times the gradients'
    difference, plus the rounding of p - update (2 ulp of the parameter). Two steps, each taken
    from the suite's parameters, so that the moments' decay (beta1 0.9, beta2 0.999) is
    checked too: the first step of Adam is the same for every beta."""
    example = load_example("iwae_one_file")
    config = RunConfig(data="mnist-dynamic", model=model, k=k, layers=1, fidelity="paper",
                       schedule="smoke")
    suite_step, state = standalone_group_step([config], synthetic_data_dir)
    suite = state.model
    drawn: dict[str, object] = {}
    terms = suite.log_weight_terms

    def recording(x, eps, *args, **kwargs):
        drawn["x"], drawn["eps"] = x.detach().clone(), eps[0].detach().clone()
        return terms(x, eps, *args, **kwargs)

    suite.log_weight_terms = recording
    mine = example.IWAE()
    pairs = tensor_pairs(linear_pairs(suite, mine))
    assert len(pairs) == len(list(suite.parameters())) == len(list(mine.parameters()))
    optimizer = example.make_adam(mine)
    gradient_gap = 0.0
    for _ in range(2):
        with torch.no_grad():
            for theirs, ours in pairs:
                ours.copy_(theirs(value))
        suite_step()
        example.train_step(mine, optimizer, drawn["x"][0], model, k, drawn["eps"][0])
        for theirs, ours in pairs:
            gap = float((theirs(grad) - ours.grad).abs().max())
            assert gap <= 2.0**-20 * float(ours.grad.abs().max()), (tuple(ours.shape), gap)
            gradient_gap = max(gradient_gap, gap)
        for theirs, ours in pairs:
            gap = float((theirs(value) - ours.detach()).abs().max())
            assert gap <= ADAM_LR / ADAM_EPS * gradient_gap + 2 * ulp(ours), (
                tuple(ours.shape), gap)


def test_the_one_file_schedule_and_bounds_are_the_papers():
    example = load_example("iwae_one_file")
    schedule = example.stage_schedule()
    assert [epochs for epochs, _ in schedule] == [3**i for i in range(8)]
    assert sum(epochs for epochs, _ in schedule) == 3280
    assert schedule[0][1] == pytest.approx(1e-3) and schedule[7][1] == pytest.approx(1e-4)
    log_w = torch.tensor([[0.0], [math.log(3.0)]])  # weights 1 and 3
    assert float(example.iwae_bound(log_w)) == pytest.approx(math.log(2.0))
    assert float(example.vae_bound(log_w)) == pytest.approx(0.5 * math.log(3.0))


def test_the_one_file_example_trains_and_scores(synthetic_data_dir):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "iwae_one_file.py"), "--data-dir",
         str(synthetic_data_dir), "--epochs", "2", "--eval-k", "20", "--eval-n", "20"],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("test NLL (L_20, 20 images): ") and last.endswith(" nats")


@pytest.mark.slow
def test_plot_results_draws_a_smoke_sweeps_figures(synthetic_data_dir, tmp_path):
    import benchmark

    results = tmp_path / "results"
    report = benchmark.sweep("table1", schedule="smoke", data=["mnist-dynamic"],
                             cells=["vae_k1_L1", "iwae_k5_L1"], results=results,
                             data_dir=synthetic_data_dir, workers=1)
    assert report.ok, report.summary_line()
    written = load_example("plot_results").write_figures(results, tmp_path / "figures")
    assert [p.name for p in written] == ["test_nll.csv", "test_nll.png", "learning_curves.png"]
    for png in written[1:]:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    table = pd.read_csv(written[0])
    assert list(table["model"]) == ["VAE k=1, 1 layer", "IWAE k=5, 1 layer"]
    assert list(table["published"]) == [86.76, 85.54]  # Table 1, p. 7
    frame = benchmark.load_results(results)
    expected = frame.set_index("model").loc[["vae", "iwae"], "test_nll"].to_numpy()
    assert table["test_nll"].to_numpy() == pytest.approx(expected)
