"""The line every sweep prints before it trains: the projected wall time on this machine of the
runs it is about to train, and what would be faster when that is more than a day; and the ETA
built on the same calibrated model (projected_eta), which the progress display then follows.

The tasks are formed as the driver will form them (benchmark.sweeps.grids.group_runs, for the
runs ready now; runs that continue another, later, once their base is complete) and priced by the
cost model (benchmark.sweeps.cost_model), calibrated on this machine
(benchmark.sweeps.calibration).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from benchmark.sweeps.calibration import Timer, calibrate
from benchmark.sweeps.cost_model import (
    CostModel,
    MemberCost,
    Projection,
    TaskCost,
    kind_of,
    project,
    workload_of,
)
from benchmark.sweeps.eta import ModelEta
from benchmark.sweeps.executors import Executor
from benchmark.sweeps.grids import PlannedRun, group_runs
from benchmark.sweeps.progress import format_duration
from benchmark.sweeps.run_state import steps_done_before
from benchmark.training import ExecutionOptions

DAY_S = 24 * 3600.0


def member_cost(run: PlannedRun, fresh: bool = False) -> MemberCost:
    return MemberCost(key=str(run.run_dir), config=run.config, workload=workload_of(run.config),
                      steps_done=0 if fresh else steps_done_before(run))


def planned_tasks(runs: Sequence[PlannedRun], capacity: int, group: bool = True,
                  fresh: bool = False) -> list[TaskCost]:
    """The tasks the driver will hand out for `runs` (all to train), in order. fresh: as if no
    run had started (doctor), else each from the steps its record says are done."""
    pending = {run.run_dir for run in runs}
    ready = [r for r in runs if r.depends_on is None or r.depends_on not in pending]
    later = [r for r in runs if r not in ready]

    def groups_of(chosen: list[PlannedRun]) -> list[list[PlannedRun]]:
        if not chosen:
            return []
        return group_runs(chosen, capacity) if group else [[r] for r in chosen]

    tasks = []
    for members in groups_of(ready) + groups_of(later):
        after = frozenset(str(r.depends_on) for r in members if r.depends_on in pending)
        tasks.append(TaskCost(kind=kind_of(members[0].config),
                              members=tuple(member_cost(r, fresh) for r in members), after=after))
    return tasks


def with_schedule(runs: Sequence[PlannedRun], schedule: str) -> list[PlannedRun]:
    """The same runs on another schedule (for 'SCHEDULE=quick would take ...')."""
    return [replace(run, config=replace(run.config, schedule=schedule)) for run in runs]


def faster_options(model: CostModel, runs: Sequence[PlannedRun], capacity: int, group: bool,
                   device_type: str, executor_name: str, seconds: float) -> list[str]:
    """What would take less than `seconds`: the quick schedule (when it is shorter), a GPU
    (when this is not one), Ray (when the executor is the local pool)."""
    options = []
    if runs and any(run.config.schedule == "full" for run in runs):
        quick = project(model, planned_tasks(with_schedule(runs, "quick"), capacity, group,
                                             fresh=True), capacity)
        if quick.seconds < 0.9 * seconds:
            options.append(f"SCHEDULE=quick (--schedule quick: 40 epochs, about "
                           f"{format_duration(quick.seconds)})")
    if device_type != "cuda":
        options.append("a GPU (DEVICE=cuda / --device cuda; `make doctor` there projects it)")
    if executor_name == "local":
        options.append("EXECUTOR=ray on a cluster (--executor ray --address auto)")
    return options


def projection_line(grid: str, projection: Projection, model: CostModel,
                    faster: Sequence[str]) -> str:
    line = (f"sweep {grid}: projected {format_duration(projection.seconds)} on this machine "
            f"for the {projection.runs} run(s) to train ({projection.tasks} task(s) on "
            f"{projection.workers} worker(s); step times {model.source})")
    if projection.seconds > DAY_S and faster:
        line += "; more than a day: faster would be " + ", or ".join(faster)
    return line


def projected_eta(grid: str, todo: list[PlannedRun], executor: Executor,
                  options: ExecutionOptions, timer: Timer | None, group: bool,
                  say: Callable[[str], None], load_s: dict[str, float]) -> ModelEta | None:
    """Calibrate the cost model on the executor, print the projection line, and return the ETA
    built on them (None: no model, the display falls back to the measured rate). load_s: how
    long the data check took to load each condition, which every task loading it pays too."""
    if timer is None:
        return None
    tasks = planned_tasks(todo, executor.capacity, group)
    results = todo[0].run_dir.parents[1]  # <results>/<sweep>/<run-id>
    model, why_not = calibrate(executor, tasks, options, timer, results,
                               todo[0].config.device)
    if model is None:
        say(f"sweep {grid}: no projection: timing this machine failed ({why_not})")
        return None
    model.data_load_s = dict(load_s)
    projection = project(model, tasks, executor.capacity)
    name = type(executor).__name__.removesuffix("Executor").lower()
    faster = faster_options(model, todo, executor.capacity, group, model.device, name,
                            projection.seconds)
    say(projection_line(grid, projection, model, faster))
    return ModelEta(model, tasks, executor.capacity)
