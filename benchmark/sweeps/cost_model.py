"""What a sweep will cost on this machine: a cost model of each group kind, and the schedule of its
tasks on the executor's workers.

A task trains one group: members of one kind (layers, k, fidelity; numerics and device are the
sweep's) that step together, each leaving when it reaches its own end (runs of OMNIGLOT and MNIST
have different epoch lengths) and being evaluated right then, while the others wait. So a task
costs

    set-up (its data conditions loaded; the group built; compilation or graph capture)
    + sum over the segments between two members' ends: steps x t(members still in the group)
    + every member's final evaluation and learning-curve scoring: rows x seconds per row

where t(m), the step time with m members, is linear through the member counts that were timed
(1 and the group's size: benchmark.sweeps.calibration). The tasks are handed to the workers in
order, each to the first free one, as the driver hands them out; a run that continues another
(table2) starts no earlier than its base run ends. The projection is the end of the last task.

The sweep's ETA (benchmark.sweeps.eta) prices the tasks not yet started with this model and the
running ones with their measured step rate.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmark.config import RunConfig
from benchmark.data import CONDITION_SIZES
from benchmark.training import Workload, run_workload

KindKey = tuple[int, int, str]  # (layers, k, fidelity)


def kind_of(config: RunConfig) -> KindKey:
    return (config.layers, config.k, config.fidelity)


def kind_name(kind: KindKey) -> str:
    layers, k, fidelity = kind
    return f"L{layers}-k{k}-{fidelity}"


def workload_of(config: RunConfig) -> Workload:
    n_train, n_test = CONDITION_SIZES[config.data]
    return run_workload(config, n_train, n_test)


@dataclass
class CostModel:
    """Timings of this machine: seconds per step by kind and member count, seconds per evaluated
    row by (layers, eval_k), one-off seconds per kind, and where they came from."""

    step_s: dict[str, dict[int, float]] = field(default_factory=dict)  # kind name -> {M: s}
    one_off_s: dict[str, float] = field(default_factory=dict)
    eval_row_s: dict[str, float] = field(default_factory=dict)  # "L{layers}-k{eval_k}" -> s
    source: str = "timed now"
    paths: dict[str, str] = field(default_factory=dict)  # kind name -> the step path that ran
    device: str = "cpu"  # the device type the steps were timed on
    not_finite: list[str] = field(default_factory=list)  # kinds whose timed bounds were not finite
    data_load_s: dict[str, float] = field(default_factory=dict)  # a task loads each condition

    def step_seconds(self, kind: KindKey, members: int) -> float:
        timed = self.step_s.get(kind_name(kind))
        if not timed:
            raise KeyError(f"no timing for {kind_name(kind)}")
        points = sorted(timed.items())
        if len(points) == 1:  # one member count: proportional to members
            m0, t0 = points[0]
            return t0 * members / m0
        (m0, t0), (m1, t1) = points[0], points[-1]
        slope = (t1 - t0) / (m1 - m0)
        return max(t0 * 0.5, t0 + slope * (members - m0))

    def eval_seconds(self, layers: int, eval_k: int, rows: int) -> float:
        key = f"L{layers}-k{eval_k}"
        per_row = self.eval_row_s.get(key)
        if per_row is None:  # the nearest eval_k timed for these layers
            timed = [(abs(int(name.split("-k")[1]) - eval_k), s)
                     for name, s in self.eval_row_s.items() if name.startswith(f"L{layers}-")]
            if not timed:
                raise KeyError(f"no evaluation timing for {key}")
            per_row = min(timed)[1]
        return rows * per_row

    def has(self, kind: KindKey, members: int) -> bool:
        return members in self.step_s.get(kind_name(kind), {})

    def to_dict(self) -> dict[str, Any]:
        return {"step_s": {k: {str(m): s for m, s in v.items()} for k, v in self.step_s.items()},
                "one_off_s": dict(self.one_off_s), "eval_row_s": dict(self.eval_row_s),
                "paths": dict(self.paths), "device": self.device,
                "not_finite": list(self.not_finite)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str) -> CostModel:
        return cls(step_s={k: {int(m): float(s) for m, s in v.items()}
                           for k, v in data.get("step_s", {}).items()},
                   one_off_s={k: float(v) for k, v in data.get("one_off_s", {}).items()},
                   eval_row_s={k: float(v) for k, v in data.get("eval_row_s", {}).items()},
                   paths=dict(data.get("paths", {})), source=source,
                   device=str(data.get("device", "cpu")),
                   not_finite=list(data.get("not_finite", [])))

    def merged(self, other: CostModel) -> CostModel:
        step_s = {k: dict(v) for k, v in self.step_s.items()}
        for name, timed in other.step_s.items():
            step_s.setdefault(name, {}).update(timed)
        return CostModel(step_s, {**self.one_off_s, **other.one_off_s},
                         {**self.eval_row_s, **other.eval_row_s}, other.source,
                         {**self.paths, **other.paths}, other.device,
                         sorted({*self.not_finite, *other.not_finite}))


@dataclass(frozen=True)
class MemberCost:
    """One run of a task, as far as its cost goes."""

    key: str  # the run's key in the sweep (its run directory)
    config: RunConfig
    workload: Workload
    steps_done: int = 0  # before this sweep started it

    @property
    def steps_left(self) -> int:
        return self.workload.steps_left(self.steps_done)


@dataclass(frozen=True)
class TaskCost:
    """One task: the members of one group, and the runs whose end it must wait for."""

    kind: KindKey
    members: tuple[MemberCost, ...]
    after: frozenset[str] = frozenset()  # keys of runs that must complete first

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.members)


def member_tail_seconds(model: CostModel, member: MemberCost, done: float) -> float:
    """A member's evaluation and the learning-curve points it still has to score."""
    layers = member.config.layers
    curve = model.eval_seconds(layers, 50, member.workload.curve_rows_after(done))
    return curve + model.eval_seconds(layers, member.workload.eval_k, member.workload.eval_rows)


def task_seconds(model: CostModel, task: TaskCost, done: dict[str, float] | None = None,
                 step_time: Callable[[int], float] | None = None,
                 include_one_off: bool = True) -> float:
    """How long the task takes from its members' `done` steps (default: where they stood when
    the sweep started): the segments between members' ends at t(members left), plus each
    member's evaluation as it leaves. step_time(m) replaces the model's t(m) (a measured rate)."""
    step_time = step_time or (lambda m: model.step_seconds(task.kind, m))
    position = {m.key: (done or {}).get(m.key, m.steps_done) for m in task.members}
    ahead = sorted(task.members, key=lambda m: m.workload.steps - position[m.key])
    seconds = 0.0
    if include_one_off:  # set-up: its data conditions loaded, compilation or graph capture
        seconds += model.one_off_s.get(kind_name(task.kind), 0.0) + sum(
            model.data_load_s.get(d, 0.0) for d in {m.config.data for m in task.members})
    stepped, left = 0.0, len(ahead)
    for member in ahead:
        to_go = max(0.0, member.workload.steps - position[member.key])
        if to_go > stepped:
            seconds += (to_go - stepped) * step_time(left)
            stepped = to_go
        seconds += member_tail_seconds(model, member, position[member.key])
        left -= 1
    return seconds


def schedule_end(durations: Sequence[tuple[TaskCost, float]], workers: int,
                 free_at: Sequence[float] = (), run_end: dict[str, float] | None = None,
                 now: float = 0.0) -> float:
    """When the last task ends if each (task, duration) in order goes to the first free worker,
    no earlier than the ends of the runs it waits for. free_at: when workers busy now become
    free (the others are free at `now`); run_end: when runs already scheduled end."""
    free = sorted(list(free_at)[:workers] + [now] * max(0, workers - len(free_at)))
    heapq.heapify(free)
    ends = dict(run_end or {})
    last = max([now, *free])
    for task, duration in durations:
        start = heapq.heappop(free)
        start = max([start, *(ends.get(key, now) for key in task.after)])
        end = start + duration
        heapq.heappush(free, end)
        for key in task.keys:
            ends[key] = end
        last = max(last, end)
    return last


@dataclass(frozen=True)
class Projection:
    seconds: float  # wall time of every task on the workers
    runs: int
    tasks: int
    workers: int


def project(model: CostModel, tasks: Sequence[TaskCost], workers: int) -> Projection:
    durations = [(task, task_seconds(model, task)) for task in tasks]
    return Projection(schedule_end(durations, workers), sum(len(t.members) for t in tasks),
                      len(tasks), workers)
