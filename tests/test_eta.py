"""The sweep's ETA (benchmark.sweeps.eta.ModelEta) on a fake clock: tasks not started are priced by
the cost model, running ones by their measured rate; a sweep whose cheap groups run first is not
extrapolated from them (the fault of the step-rate ETA, which the last test shows)."""

from __future__ import annotations

import pytest

from benchmark.config import RunConfig
from benchmark.sweeps.cost_model import CostModel, MemberCost, TaskCost
from benchmark.sweeps.eta import ModelEta
from benchmark.sweeps.progress import StepEta
from benchmark.training.workload import Workload

CHEAP, DEAR = (1, 1, "code"), (1, 50, "code")


def model() -> CostModel:
    """k=1: 10 ms a step; k=50: 1 s a step (two members; 0.6 of that alone); no evaluation."""
    return CostModel(step_s={"L1-k1-code": {1: 0.006, 2: 0.01}, "L1-k50-code": {1: 0.6, 2: 1.0}},
                     eval_row_s={"L1-k50": 0.0, "L1-k7": 0.0})


def members(prefix: str, k: int, steps: tuple[int, ...]) -> tuple[MemberCost, ...]:
    out = []
    for i, n in enumerate(steps):
        config = RunConfig(data="mnist-dynamic", model="iwae", k=k, layers=1, steps=n, eval_k=7)
        out.append(MemberCost(f"{prefix}{i}", config, Workload(n, (n,), 0, 0, 7)))
    return tuple(out)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cheap_then_dear(workers: int = 1):
    cheap = TaskCost(CHEAP, members("a", 1, (1000, 1000)))
    dear = TaskCost(DEAR, members("b", 50, (1000, 1000)))
    clock = Clock()
    return ModelEta(model(), [cheap, dear], workers, clock), clock, cheap, dear


def test_before_anything_starts_the_eta_is_the_projection():
    eta, _, _, _ = cheap_then_dear()
    assert eta.seconds_left() == pytest.approx(1000 * 0.01 + 1000 * 1.0)
    two, _, _, _ = cheap_then_dear(workers=2)
    assert two.seconds_left() == pytest.approx(1000.0)  # side by side: the dear one


def test_a_running_task_is_priced_by_its_measured_rate_and_the_rest_by_the_model():
    eta, clock, cheap, _ = cheap_then_dear()
    eta.task_started("group-1", list(cheap.keys))
    assert [t.kind for t in eta.pending] == [DEAR]
    clock.now = 2.0  # start-up: the first report comes at step 100
    for key in cheap.keys:
        eta.update(key, 100, 1000)
    clock.now = 6.0  # 400 steps in 4 s: 10 ms a step, as the model said
    for key in cheap.keys:
        eta.update(key, 500, 1000)
    assert eta.seconds_left() == pytest.approx(500 * 0.01 + 1000.0)
    clock.now = 7.0  # one more second: 100 more steps done, no report needed
    assert eta.seconds_left() == pytest.approx(400 * 0.01 + 1000.0)


def test_a_slower_machine_than_timed_slows_the_tasks_to_come_as_much():
    eta, clock, cheap, _ = cheap_then_dear()
    eta.task_started("group-1", list(cheap.keys))
    clock.now = 1.0
    for key in cheap.keys:
        eta.update(key, 100, 1000)
    clock.now = 9.0  # 400 steps in 8 s: twice the model's step time
    for key in cheap.keys:
        eta.update(key, 500, 1000)
    assert eta.model_scale() == pytest.approx(2.0)
    assert eta.seconds_left() == pytest.approx(500 * 0.02 + 2 * 1000.0)


def test_members_leave_and_the_rest_steps_at_the_model_rate_of_fewer_members():
    task = TaskCost(DEAR, members("c", 50, (200, 1000)))
    clock = Clock()
    eta = ModelEta(model(), [task], 1, clock)
    eta.task_started("group-1", list(task.keys))
    for now, done in ((10.0, 100), (110.0, 200)):  # 1 s a step with both members
        clock.now = now
        for key in task.keys:
            eta.update(key, done, [200, 1000][task.keys.index(key)])
    # c0 is at its end (its evaluation costs nothing here); c1 goes on alone at 0.6 s a step
    assert eta.seconds_left() == pytest.approx(800 * 0.6)


def test_a_task_formed_otherwise_than_planned_is_priced_from_where_its_runs_stand():
    eta, clock, cheap, dear = cheap_then_dear()
    eta.task_started("group-1", list(cheap.keys))
    for key in cheap.keys:
        eta.update(key, 300, 1000)
    eta.task_ended("group-1")  # it crashed; its runs are retried alone
    eta.task_started("a0", ["a0"])
    assert [set(t.keys) for t in eta.pending] == [{"a1"}, set(dear.keys)]
    assert eta.seconds_left() == pytest.approx(700 * 0.006 + 700 * 0.006 + 1000.0)
    eta.finish("a0")
    eta.task_ended("a0")
    assert eta.seconds_left() == pytest.approx(700 * 0.006 + 1000.0)


def test_the_step_rate_eta_extrapolates_the_cheap_groups_and_the_model_eta_does_not():
    """The fault that issue 15 quotes ('ETA 43h' against about 330 hours): measured while the
    k=1 groups run, the aggregate step rate knows nothing of the k=50 groups behind them."""
    truth = 500 * 0.01 + 1000.0
    model_eta, clock, cheap, _ = cheap_then_dear()
    step_eta = StepEta(clock=clock)
    for task in model_eta.pending:
        for key in task.keys:
            step_eta.expect(key)
    model_eta.task_started("group-1", list(cheap.keys))
    step_eta.start_clock()
    for now, done in ((1.0, 100), (5.0, 500)):
        clock.now = now
        for key in cheap.keys:
            model_eta.update(key, done, 1000)
            step_eta.update(key, done, 1000)
    assert model_eta.seconds_left() == pytest.approx(truth)
    assert step_eta.seconds_left() < truth / 50
