"""The sweep's ETA: the cost model for the tasks not yet started, the measured rate for the running
ones, and the same schedule of tasks on workers as the projection.

Extrapolating from the runs in flight misleads: a Table 1 sweep starts with its cheap k=1 groups,
whose rate says nothing of the k=50 groups behind them. Here every task not yet started is priced
by benchmark.sweeps.cost_model; a running task by its members' measured step rate (from their
progress reports, start-up excluded) for the steps its members have left, scaled by the model's
t(m) as members leave, plus the model's evaluations; a task that has not reported twice yet, by
the model less the time it has run. The tasks still to start are then laid onto the workers as
they come free, as the driver will hand them out, each priced by the model scaled by how the
measured tasks compared with it (a machine busier than when it was timed slows every task).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from benchmark.sweeps.cost_model import (
    CostModel,
    MemberCost,
    TaskCost,
    member_tail_seconds,
    schedule_end,
    task_seconds,
)


@dataclass
class Report:
    first: tuple[float, int]  # (time, steps done) of the first report
    last: tuple[float, int]
    planned: int


@dataclass
class Running:
    task: TaskCost
    started: float
    reports: dict[str, Report] = field(default_factory=dict)


class ModelEta:
    """Seconds left for a sweep; fed by the display (progress, finished runs) and the driver
    (tasks started and ended)."""

    def __init__(self, model: CostModel, tasks: Sequence[TaskCost], workers: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.model, self.workers, self.clock = model, workers, clock
        self.pending: list[TaskCost] = list(tasks)
        self.members: dict[str, MemberCost] = {m.key: m for t in tasks for m in t.members}
        self.running: dict[str, Running] = {}
        self.finished: set[str] = set()
        self.position: dict[str, int] = {}  # the latest steps reported per run
        self.ratios: dict[tuple[str, ...], float] = {}  # per task measured: measured / model

    # --- the display's calls (as StepEta's) ----------------------------------------------------
    def expect(self, key: str, steps_done_before: int = 0) -> None:
        pass  # the tasks carry their members' starting points

    def start_clock(self) -> None:
        pass

    def update(self, key: str, done: int, planned: int) -> None:
        now = self.clock()
        self.position[key] = max(done, self.position.get(key, 0))
        for running in self.running.values():
            if key in running.task.keys:
                report = running.reports.get(key)
                if report is None or done < report.last[1]:
                    running.reports[key] = Report((now, done), (now, done), planned)
                else:
                    report.last, report.planned = (now, done), planned
                self._ratio(running)

    def finish(self, key: str) -> None:
        self.finished.add(key)
        self.pending = self._without({key})

    # --- the driver's calls -------------------------------------------------------------------
    def task_started(self, task_key: str, run_keys: Sequence[str]) -> None:
        keys = set(run_keys)
        match = next((t for t in self.pending if set(t.keys) == keys), None)
        if match is not None:
            self.pending.remove(match)
        else:  # formed otherwise than planned (a continuation ready early): build it
            self.pending = self._without(keys)
            members = tuple(self._member_now(k) for k in run_keys if k in self.members)
            if not members:
                return
            match = TaskCost(kind=(members[0].config.layers, members[0].config.k,
                                   members[0].config.fidelity), members=members)
        self.running[task_key] = Running(match, self.clock())

    def task_ended(self, task_key: str) -> None:
        """Called once the driver has settled the task's runs: those not finished will be
        retried alone, first (their measured ratio stays in self.ratios)."""
        running = self.running.pop(task_key, None)
        if running is None:
            return
        retries = [TaskCost(running.task.kind, (self._member_now(m.key),))
                   for m in running.task.members if m.key not in self.finished]
        self.pending = retries + self.pending

    def _without(self, keys: set[str]) -> list[TaskCost]:
        kept = []
        for task in self.pending:
            members = tuple(m for m in task.members if m.key not in keys)
            if members:
                kept.append(TaskCost(task.kind, members, task.after))
        return kept

    def _member_now(self, key: str) -> MemberCost:
        member = self.members[key]
        done = max(member.steps_done, self.position.get(key, 0))
        return MemberCost(member.key, member.config, member.workload, done)

    # --- the estimate -------------------------------------------------------------------------
    def seconds_left(self) -> float | None:
        now = self.clock()
        free_at, run_end = [], {}
        for running in self.running.values():
            end = now + self._remaining(running, now)
            free_at.append(end)
            run_end.update(dict.fromkeys(running.task.keys, end))
        scale = self.model_scale()
        durations = [(task, scale * task_seconds(self.model, task)) for task in self.pending]
        for key in self.finished:
            run_end[key] = now
        return schedule_end(durations, self.workers, free_at, run_end, now) - now

    def model_scale(self) -> float:
        """How the measured step times compare with the model's so far (the median ratio over
        the tasks measured; 1 before any): a machine busier or quieter than when it was timed
        moves every task, so the tasks not started yet are priced by the model times this."""
        if not self.ratios:
            return 1.0
        return statistics.median(self.ratios.values())

    def _remaining(self, running: Running, now: float) -> float:
        task = running.task
        members = [m for m in task.members if m.key not in self.finished]
        if not members:
            return 0.0
        measured = self._measured_step(running)
        if measured is None:  # no rate yet: the model, less the time the task has run
            return max(0.0, task_seconds(self.model, TaskCost(task.kind, tuple(members)))
                       - (now - running.started))
        stepping = [m for m in members if self._done(running, m) < m.workload.steps]
        left, evaluating = 0.0, False
        for member in members:
            if member in stepping:
                continue
            # at its end: evaluated since its last report, the group waiting for it
            report = running.reports.get(member.key)
            since = now - report.last[0] if report is not None else 0.0
            tail = max(0.0, member_tail_seconds(self.model, member, member.workload.steps) - since)
            left += tail
            evaluating = evaluating or tail > 0
        if not stepping:
            return left
        ratio = self._ratio(running)
        assert ratio is not None

        def step_time(m: int) -> float:
            return ratio * self.model.step_seconds(task.kind, m)

        done = {m.key: self._done(running, m) for m in stepping}
        if not evaluating and running.reports:  # the group stepped on since its last report
            latest = max(r.last[0] for r in running.reports.values())
            ahead = (now - latest) / measured
            done = {k: min(d + ahead, self.members[k].workload.steps) for k, d in done.items()}
        return left + task_seconds(self.model, TaskCost(task.kind, tuple(stepping)), done,
                                   step_time, include_one_off=False)

    def _ratio(self, running: Running) -> float | None:
        """Measured / model step time of a running task (kept in self.ratios), None before a
        rate is measured."""
        measured = self._measured_step(running)
        if measured is None:
            return None
        members = self._measured_members(running)
        ratio = measured / self.model.step_seconds(running.task.kind, members)
        self.ratios[running.task.keys] = ratio
        return ratio

    @staticmethod
    def _measured_members(running: Running) -> int:
        """How many members stepped while the rate was measured (members that left since
        reported no progress)."""
        return max(1, sum(1 for r in running.reports.values() if r.last[1] > r.first[1]))

    def _done(self, running: Running, member: MemberCost) -> float:
        report = running.reports.get(member.key)
        return report.last[1] if report is not None else member.steps_done

    @staticmethod
    def _measured_step(running: Running) -> float | None:
        """Seconds per group step, from the member with the most steps between two reports."""
        best = None
        for report in running.reports.values():
            steps = report.last[1] - report.first[1]
            seconds = report.last[0] - report.first[0]
            if steps > 0 and seconds > 0 and (best is None or steps > best[0]):
                best = (steps, seconds)
        return None if best is None else best[1] / best[0]
