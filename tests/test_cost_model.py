"""The cost model and the projection a sweep prints before it trains: known answers for a task's
cost and for the schedule of tasks on workers, the workload of a run, the tasks a sweep will form
(as the driver forms them), the calibration on the executor and its cache."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from sweep_fakes import fake_train_group, fake_train_run

from benchmark.config import RunConfig
from benchmark.data import CONDITION_SIZES
from benchmark.sweeps.calibration import (
    CACHE_FILE,
    CACHE_MAX_AGE_S,
    StepRequest,
    calibrate,
    requests_for,
    run_real_timer,
)
from benchmark.sweeps.cost_model import (
    CostModel,
    MemberCost,
    TaskCost,
    project,
    schedule_end,
    task_seconds,
    workload_of,
)
from benchmark.sweeps.driver import run_sweep
from benchmark.sweeps.executors import InlineExecutor
from benchmark.sweeps.grids import SweepOptions, expand_grid, group_runs
from benchmark.sweeps.projection import planned_tasks, projection_line
from benchmark.training import ExecutionOptions
from benchmark.training.workload import run_workload

KIND = (1, 5, "code")


def linear_model(**extra: float) -> CostModel:
    """t(m) = 0.5 + 0.5 m seconds for L1 k5 (timed at 1 and 4 members); every row 1 ms."""
    return CostModel(step_s={"L1-k5-code": {1: 1.0, 4: 2.5}}, one_off_s={"L1-k5-code": 3.0},
                     eval_row_s={"L1-k50": 1e-3, "L1-k7": 1e-3}, **extra)


def member(key: str, steps: int, eval_rows: int = 1000, done: int = 0) -> MemberCost:
    config = RunConfig(data="mnist-dynamic", model="iwae", k=5, layers=1, steps=steps,
                       eval_k=7, eval_n=10)
    workload = run_workload(config, 59_600, 10_000)
    workload = type(workload)(steps=steps, curve_points=(steps,), curve_rows=100,
                              eval_rows=eval_rows, eval_k=7)
    return MemberCost(key, config, workload, done)


def test_step_time_is_linear_between_the_timed_member_counts():
    model = linear_model()
    assert model.step_seconds(KIND, 1) == 1.0 and model.step_seconds(KIND, 4) == 2.5
    assert model.step_seconds(KIND, 2) == pytest.approx(1.5)
    assert model.step_seconds(KIND, 12) == pytest.approx(6.5)  # extrapolated on the line
    with pytest.raises(KeyError, match="L2-k5-code"):
        model.step_seconds((2, 5, "code"), 1)


def test_a_task_costs_its_segments_at_the_members_left_plus_each_evaluation():
    model = linear_model()
    task = TaskCost(KIND, (member("a", 10), member("b", 30)))
    # 10 steps with 2 members at 1.5 s, then 20 with 1 at 1.0 s; each member's evaluation
    # (1000 rows) and last curve point (100 rows) at 1 ms a row; the one-off 3 s
    expected = 3.0 + 10 * 1.5 + 20 * 1.0 + 2 * (1.0 + 0.1)
    assert task_seconds(model, task) == pytest.approx(expected)
    # resumed: member a at step 4, b at 10 -> 6 steps together, then 14 alone
    assert task_seconds(model, task, done={"a": 4, "b": 10}) == pytest.approx(
        3.0 + 6 * 1.5 + 14 * 1.0 + 2 * 1.1)
    # a measured step time replaces the model's, the evaluations stay the model's
    assert task_seconds(model, task, step_time=lambda m: 0.1 * m, include_one_off=False) == (
        pytest.approx(10 * 0.2 + 20 * 0.1 + 2.2))


def test_tasks_go_to_the_first_free_worker_and_continuations_wait_for_their_base():
    a, b, c = (TaskCost(KIND, (member(name, 1),)) for name in "abc")
    dependent = TaskCost(KIND, (member("d", 1),), after=frozenset({"a"}))
    assert schedule_end([(a, 5.0), (b, 3.0), (c, 4.0)], workers=2) == 7.0  # c follows b
    assert schedule_end([(a, 5.0), (b, 3.0), (c, 4.0)], workers=1) == 12.0
    # d would start at 3 on b's worker, but waits for a (ends at 5)
    assert schedule_end([(a, 5.0), (b, 3.0), (dependent, 1.0)], workers=2) == 6.0
    # workers busy until 10 and 2; a run that already ended does not hold its dependent back
    assert schedule_end([(b, 3.0)], workers=2, free_at=[10.0, 2.0], now=1.0) == 10.0
    assert schedule_end([(dependent, 1.0)], 1, run_end={"a": 0.0}, now=0.0) == 1.0


def test_the_workload_of_a_full_mnist_run():
    config = RunConfig(data="mnist-dynamic", model="iwae", k=50, layers=2)
    work = workload_of(config)
    assert work.steps == 3280 * 2980 == 9_774_400
    # test and pruned test (10,000 each) and the whole training set, at k = 5000
    assert work.eval_rows == (2 * 10_000 + 59_600) * 5000 + 500
    assert len(work.curve_points) == 8 * 4 and work.curve_rows == 200 * 50
    smoke = workload_of(RunConfig(data="omniglot", model="vae", k=1, layers=1, schedule="smoke"))
    assert smoke.steps == 60 and smoke.eval_rows == (2 * 200 + 200) * 100 + 500
    assert CONDITION_SIZES["omniglot"] == (23_000, 8_070)


@pytest.mark.parametrize("workers", [1, 2, 5])
def test_the_planned_tasks_are_the_groups_the_driver_forms(tmp_path, workers):
    plan = expand_grid("table1", SweepOptions(), tmp_path)
    tasks = planned_tasks(plan, workers)
    assert [set(t.keys) for t in tasks] == [
        {str(r.run_dir) for r in g} for g in group_runs(plan, workers)]
    assert sum(len(t.members) for t in tasks) == 24 and all(not t.after for t in tasks)


def test_continuations_are_planned_after_their_base_runs(tmp_path):
    plan = expand_grid("table2", SweepOptions(), tmp_path)
    tasks = planned_tasks(plan, 2)
    bases = {str(r.run_dir) for r in plan if r.depends_on is None}
    assert [set(t.keys) <= bases for t in tasks] == [True, True, False, False]
    assert {key for t in tasks[2:] for key in t.after} == bases
    # a base that is already complete is not waited for: its continuation is ready now
    done = [r for r in plan if r.depends_on is not None]
    assert all(not t.after for t in planned_tasks(done, 2))


def test_the_projection_line_suggests_what_is_faster_only_beyond_a_day(tmp_path):
    model = linear_model()
    short = project(model, [TaskCost(KIND, (member("a", 100),))], 1)
    line = projection_line("table1", short, model, ["SCHEDULE=quick"])
    assert line.startswith("sweep table1: projected 2m on this machine for the 1 run(s)")
    assert "faster" not in line
    long = project(model, [TaskCost(KIND, (member("a", 200_000),))], 1)
    line = projection_line("table1", long, model, ["SCHEDULE=quick (about 1h)", "a GPU"])
    assert "projected 2.3d" in line
    assert line.endswith("more than a day: faster would be SCHEDULE=quick (about 1h), or a GPU")


# --- calibration -------------------------------------------------------------------------------

def counting_timer(calls: list):
    """A timer that answers every request with fixed timings and notes what it was asked."""
    def timer(steps, evals, options, step_seconds, eval_seconds):
        calls.append((steps, evals))
        model = CostModel()
        for request in steps:
            name = f"L{request.layers}-k{request.k}-{request.fidelity}"
            model.step_s.setdefault(name, {})[request.members] = 0.01 * request.members
        for request in evals:
            model.eval_row_s[f"L{request.layers}-k{request.eval_k}"] = 1e-6
        return model.to_dict()
    return timer


def test_requests_cover_each_kind_at_one_member_and_its_group_size(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=7), tmp_path)
    steps, evals = requests_for(planned_tasks(plan, 2))
    assert {(r.layers, r.k, r.members) for r in steps} == {
        (layers, k, m) for layers in (1, 2) for k in (1, 5, 50) for m in (1, 4)}
    assert all(r.max_steps == 7 and r.data == ("mnist-dynamic", "omniglot") for r in steps)
    assert {(r.layers, r.eval_k) for r in evals} == {(1, 100), (2, 100), (1, 50), (2, 50)}
    known = CostModel(step_s={"L1-k1-code": {1: 0.1, 4: 0.2}}, eval_row_s={"L1-k100": 1e-6})
    steps, evals = requests_for(planned_tasks(plan, 2), known)
    assert len(steps) == 10 and len(evals) == 3


def test_calibration_is_timed_on_the_executor_once_then_cached(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", data=("mnist-dynamic",)),
                       tmp_path)
    tasks = planned_tasks(plan, 1)
    calls: list = []
    now = [1000.0]
    args = (tasks, ExecutionOptions(), counting_timer(calls), tmp_path, "auto")
    model, why_not = calibrate(InlineExecutor(), *args, clock=lambda: now[0])
    assert why_not is None and len(calls) == 1 and model.source == "timed now"
    assert model.step_seconds((2, 50, "code"), 2) == pytest.approx(0.02)
    again, _ = calibrate(InlineExecutor(), *args, clock=lambda: now[0] + 60)
    assert len(calls) == 1 and again.source == "timed 60s ago"
    assert again.to_dict() == model.to_dict()
    # other execution options are another machine, as far as timings go
    calibrate(InlineExecutor(), tasks, ExecutionOptions(numerics="fast"),
              counting_timer(calls), tmp_path, "auto", clock=lambda: now[0])
    assert len(calls) == 2
    # a day later the timings are taken again
    calibrate(InlineExecutor(), *args, clock=lambda: now[0] + CACHE_MAX_AGE_S + 1)
    assert len(calls) == 3
    assert len(json.loads((tmp_path / CACHE_FILE).read_text())["entries"]) == 2


def test_an_unreadable_cache_is_timed_again_and_a_failed_timing_says_why(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", data=("mnist-dynamic",)),
                       tmp_path)
    (tmp_path / CACHE_FILE).write_bytes(b"\xff[not json")
    calls: list = []
    model, _ = calibrate(InlineExecutor(), planned_tasks(plan, 1), ExecutionOptions(),
                         counting_timer(calls), tmp_path, "auto")
    assert model is not None and len(calls) == 1

    def broken(*args):
        raise RuntimeError("no C++ compiler")

    model, why_not = calibrate(InlineExecutor(), planned_tasks(plan, 1), ExecutionOptions(),
                               broken, None, "auto")
    assert model is None and why_not == "RuntimeError: no C++ compiler"


def test_the_real_timer_times_a_small_group_and_an_evaluation():
    from benchmark.sweeps.calibration import EvalRequest

    timings = CostModel.from_dict(run_real_timer(
        [StepRequest(1, 2, "code", m, ("mnist-dynamic",), "cpu", max_steps=2) for m in (1, 2)],
        [EvalRequest(1, 20, "cpu")], ExecutionOptions(), 0.01, 0.01), source="test")
    assert set(timings.step_s["L1-k2-code"]) == {1, 2}
    assert all(s > 0 for s in timings.step_s["L1-k2-code"].values())
    assert timings.eval_row_s["L1-k20"] > 0 and timings.not_finite == []
    assert timings.paths["L1-k2-code"] == "eager (the device is cpu)"


# --- in the sweep ------------------------------------------------------------------------------

def sweep_with(tmp_path: Path, timer, options: SweepOptions) -> str:
    plan = expand_grid("table1", options, tmp_path)
    err = io.StringIO()
    report = run_sweep("table1", plan, data_dir=Path("unused"), runner=fake_train_run,
                       group_runner=fake_train_group, check_data=lambda name, d: None,
                       executor_factory=lambda n: InlineExecutor(), timer=timer, stream=err,
                       out=io.StringIO())
    assert report.exit_code == 0
    return err.getvalue()


def test_every_sweep_prints_its_projection_before_it_trains(tmp_path):
    calls: list = []
    err = sweep_with(tmp_path, counting_timer(calls), SweepOptions(
        schedule="smoke", steps=4, data=("mnist-dynamic",)))
    lines = err.splitlines()
    projected = [i for i, line in enumerate(lines) if "projected" in line]
    assert len(projected) == 1 and len(calls) == 1
    assert lines[projected[0]].startswith("sweep table1: projected ")
    assert "for the 12 run(s) to train (6 task(s) on 1 worker(s); step times timed now)" in (
        lines[projected[0]])
    assert projected[0] < next(i for i, line in enumerate(lines) if "run(s) ready" in line)


def test_a_sweep_beyond_a_day_says_what_would_be_faster(tmp_path):
    def slow_timer(steps, evals, options, step_seconds, eval_seconds):
        model = CostModel.from_dict(counting_timer([])(steps, evals, options, 0, 0), "")
        model.step_s = {name: {m: 1.0 for m in timed} for name, timed in model.step_s.items()}
        return model.to_dict()

    # the full schedule at 1 s a step: years; the quick one 40 epochs of it
    err = sweep_with(tmp_path, slow_timer, SweepOptions(data=("mnist-dynamic",), eval_k=2,
                                                         eval_n=10))
    (line,) = [line for line in err.splitlines() if "projected" in line]
    assert "more than a day: faster would be SCHEDULE=quick" in line
    assert "a GPU (DEVICE=cuda" in line and "EXECUTOR=ray" not in line  # inline, not local
