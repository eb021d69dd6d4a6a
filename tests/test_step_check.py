"""The CUDA-graph step's self-check and the fallback to the eager step (benchmark.training.
step_check), on the CPU: the graph path is replaced by fakes that match, mismatch by a rounding,
draw the wrong numbers, leave a generator behind, or fail to capture. With a GPU, the real graph
step is checked too (tests marked cuda)."""

from __future__ import annotations

import json

import pytest
import torch
from cuda_marks import needs_cuda

from benchmark.config import RunConfig
from benchmark.models import bound
from benchmark.records.checkpoint import checkpoint_steps
from benchmark.training import step_check
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import train_run
from benchmark.training.optim import loss_reduction
from benchmark.training.step import EagerStep, StepSpec
from benchmark.training.step_check import FAST_TOLERANCE, choose_step, self_check
from benchmark.training.timing import synthetic_group, synthetic_self_check

EAGER_FAST = ExecutionOptions(numerics="fast", compile_cpu=False)  # no compile time in tests


def group(numerics: str = "exact", layers: int = 1, k: int = 3):
    """Two members: both objectives, a dynamic and a fixed data condition (so both binarizers)."""
    configs = [RunConfig(data=d, model=m, k=k, layers=layers, seed=s)
               for d, m, s in (("mnist-dynamic", "iwae", 0), ("mnist-fixed", "vae", 1))]
    options = EAGER_FAST if numerics == "fast" else ExecutionOptions()
    state, members = synthetic_group(configs, options)
    spec = StepSpec(k=k, reduction=loss_reduction("code"), objectives=("iwae", "vae"),
                    numerics=numerics)
    return state, members, spec, options


def compile_free(cls):
    """A step factory as choose_step calls it, for an EagerStep subclass without torch.compile."""
    def make(state, members, spec, objective):
        return cls(state, members, spec, objective, compile_cpu=False)
    return make


def eager():
    return compile_free(EagerStep)


class RoundedStep(EagerStep):
    """The eager step, then one parameter moved by a rounding error (2 float32 ulps)."""

    def __call__(self, steps):
        out = super().__call__(steps)
        with torch.no_grad():
            p = next(self.state.model.parameters())
            p.mul_(1 + 2.4e-7)
        return out


class WrongDrawStep(EagerStep):
    """A graph that reads its binarizer one draw ahead: the bug a stale capture would be."""

    def __call__(self, steps):
        for member in self.members:
            if member.binarizer.dynamic:
                torch.rand(1, generator=member.binarizer.generator)
        return super().__call__(steps)


class StuckGeneratorStep(EagerStep):
    """Draws what the eager step draws but leaves the noise generators where they were, as a
    graph whose generators were not registered would: the next checkpoint would be wrong."""

    def __call__(self, steps):
        saved = [m.noise.get_state() for m in self.members]
        out = super().__call__(steps)
        for member, state in zip(self.members, saved, strict=True):
            member.noise.set_state(state)
        return out


class CaptureFailsStep(EagerStep):
    calls = 0

    def __call__(self, steps):
        CaptureFailsStep.calls += 1
        if CaptureFailsStep.calls > 3:  # after the warm-up, as a capture would
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing")
        return super().__call__(steps)


@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_two_eager_paths_agree_bit_for_bit_and_the_group_is_untouched(numerics):
    state, members, spec, _ = group(numerics)
    before = [p.detach().clone() for p in state.model.parameters()]
    noise_before = [m.noise.get_state() for m in members]
    verdict = self_check(state, members, spec, bound, eager(), eager())
    assert verdict["matches"] and verdict["mismatch"] is None
    assert verdict["max_abs_diff"] == 0.0 and verdict["steps"] == 5
    assert all(torch.equal(a, b) for a, b in zip(before, state.model.parameters(), strict=True))
    assert all(torch.equal(a, m.noise.get_state()) for a, m in zip(noise_before, members,
                                                                     strict=True))
    assert state.optimizer.taken == [0, 0] and [m.step for m in members] == [0, 0]


def test_a_rounding_difference_fails_exact_numerics_and_passes_fast():
    state, members, spec, _ = group("exact")
    verdict = self_check(state, members, spec, bound, eager(), compile_free(RoundedStep),
                         steps=2)
    # the next step's bounds move by that rounding too, and are compared first
    assert not verdict["matches"] and verdict["mismatch"].startswith("bounds differ (tensor 1")
    state, members, spec, _ = group("fast")
    verdict = self_check(state, members, spec, bound, eager(), compile_free(RoundedStep),
                         steps=2)
    assert verdict["matches"], verdict
    assert 0 < verdict["max_abs_diff"] < FAST_TOLERANCE["bounds"][0]  # nats, in the bounds


@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_a_wrong_draw_is_caught_in_the_bounds_even_within_the_fast_tolerance(numerics):
    state, members, spec, _ = group(numerics)
    verdict = self_check(state, members, spec, bound, eager(), compile_free(WrongDrawStep),
                         steps=2)
    assert not verdict["matches"] and verdict["mismatch"].startswith("bounds differ")
    assert verdict["max_abs_diff"] > 1.0  # nats: far outside any rounding


def test_a_generator_left_behind_is_caught():
    state, members, spec, _ = group("exact")
    verdict = self_check(state, members, spec, bound, eager(), compile_free(StuckGeneratorStep),
                         steps=1)  # one step: the draws agree, only the state differs
    assert not verdict["matches"] and "generator 0 ended in another state" in (
        verdict["mismatch"])


def test_a_capture_failure_is_a_mismatch_not_a_crash():
    CaptureFailsStep.calls = 0
    state, members, spec, _ = group("exact")
    verdict = self_check(state, members, spec, bound, eager(), compile_free(CaptureFailsStep))
    assert not verdict["matches"]
    assert verdict["mismatch"].startswith("the graph step raised RuntimeError: CUDA error")


def test_on_a_cpu_the_eager_step_is_chosen_without_a_check():
    state, members, spec, options = group("exact")
    step, choice = choose_step(state, members, spec, bound, options)
    assert isinstance(step, EagerStep)
    assert (choice.path, choice.reason, choice.check) == ("eager", "the device is cpu", None)
    _, choice = choose_step(state, members, spec, bound, ExecutionOptions(cuda_graphs=False))
    assert choice.reason == "--no-cuda-graphs"


def fake_graph_path(monkeypatch, cls):
    """Make every device offer `cls` as its CUDA-graph step; returns the steps it trained."""
    trained = []

    class Counted(cls):
        def __call__(self, steps):
            trained.append(tuple(steps))
            return super().__call__(steps)

    monkeypatch.setattr(step_check, "graph_step_factory",
                        lambda device: (compile_free(Counted), ""))
    return trained


def small_run() -> RunConfig:
    return RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=1, steps=12, eval_k=4,
                     eval_n=10)


def test_a_mismatching_graph_path_trains_eagerly_with_one_warning_and_says_so(
        monkeypatch, synthetic_data_dir, tmp_path, capfd):
    reference = train_run(small_run(), tmp_path / "reference", synthetic_data_dir,
                          show_progress=False)
    capfd.readouterr()
    trained = fake_graph_path(monkeypatch, WrongDrawStep)
    record = train_run(small_run(), tmp_path / "run", synthetic_data_dir, show_progress=False)
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "the CUDA-graph step is not the eager step" in warnings[0]
    assert len(trained) == 5  # the self-check's steps only: training went eager
    execution = record["environment"]["execution"]
    assert execution["cuda_graphs"] is False
    (path,) = execution["step_paths"]
    assert path["path"] == "eager" and path["from_step"] == 0
    assert path["reason"].startswith("self-check failed: bounds differ")
    assert path["self_check"]["matches"] is False
    # the fallback trained the run exactly as the eager loop does
    assert record["metrics"]["test_nll"] == reference["metrics"]["test_nll"]
    on_disk = json.loads((tmp_path / "run" / "result.json").read_text())
    assert on_disk["environment"]["execution"]["step_paths"] == execution["step_paths"]


def test_a_graph_path_that_passes_trains_the_run(monkeypatch, synthetic_data_dir, tmp_path):
    reference = train_run(small_run(), tmp_path / "reference", synthetic_data_dir,
                          show_progress=False)
    trained = fake_graph_path(monkeypatch, EagerStep)
    record = train_run(small_run(), tmp_path / "run", synthetic_data_dir, show_progress=False)
    assert len(trained) == 5 + 12  # the check's copy, then every step of the run
    execution = record["environment"]["execution"]
    assert execution["cuda_graphs"] is True
    (path,) = execution["step_paths"]
    assert path["path"] == "cuda_graph" and path["self_check"]["max_abs_diff"] == 0.0
    assert path["reason"] == "self-check passed (bit-identical over 5 steps)"
    assert record["metrics"]["test_nll"] == reference["metrics"]["test_nll"]


def test_the_step_paths_survive_a_resume(monkeypatch, synthetic_data_dir, tmp_path):
    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=1, epochs=2, eval_k=4,
                       eval_n=10)
    run = tmp_path / "run"

    def interrupt_at_the_end(done: int, planned: int) -> None:
        if done == planned:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(config, run, synthetic_data_dir, show_progress=False,
                  on_progress=interrupt_at_the_end)
    saved = checkpoint_steps(run)[-1]
    assert saved > 0
    fake_graph_path(monkeypatch, EagerStep)
    record = train_run(config, run, synthetic_data_dir, show_progress=False)
    paths = record["environment"]["execution"]["step_paths"]
    assert [(p["from_step"], p["path"]) for p in paths] == [(0, "eager"), (saved, "cuda_graph")]
    assert paths[0]["reason"] == "the device is cpu"


@needs_cuda
@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_the_cuda_graph_step_passes_its_self_check(numerics):
    verdict = synthetic_self_check(numerics)
    assert verdict["matches"], verdict


@needs_cuda
def test_a_cuda_run_records_the_graph_path(synthetic_data_dir, tmp_path):
    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=2, steps=20, eval_k=4,
                       eval_n=10, device="cuda")
    record = train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    (path,) = record["environment"]["execution"]["step_paths"]
    assert path["path"] == "cuda_graph", path
