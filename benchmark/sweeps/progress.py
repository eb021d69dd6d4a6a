"""What a person watching a sweep sees: one bar for the sweep, one per running run, one line per
finished run. Bars go to stderr; the finished-run lines go to stdout.

The sweep's ETA comes from benchmark.sweeps.eta.ModelEta: the cost model for the tasks not yet
started, the measured step rate for the running ones. Without a cost model (its timing failed)
it falls back to StepEta here: every run reports (steps done, steps planned) while it trains, and
the aggregate rate of all runs in flight, applied to the steps still to do, gives the time left
(optimistic when the cheap runs go first, and by the evaluations still to come).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from tqdm import tqdm


@dataclass
class RunSteps:
    baseline: int = 0  # steps already done before this sweep started the run
    done: int = 0
    planned: int | None = None
    finished: bool = False


@dataclass
class StepEta:
    """Seconds left for a set of runs, from the aggregate step rate measured so far."""

    clock: Callable[[], float] = time.monotonic
    runs: dict[str, RunSteps] = field(default_factory=dict)
    started_at: float | None = None

    def expect(self, key: str, steps_done_before: int = 0) -> None:
        self.runs[key] = RunSteps(baseline=steps_done_before, done=steps_done_before)

    def start_clock(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    def update(self, key: str, done: int, planned: int) -> None:
        run = self.runs.setdefault(key, RunSteps())
        run.done, run.planned = max(run.done, done), planned
        # A resumed run whose first report is below the recorded baseline restarted further back.
        run.baseline = min(run.baseline, run.done)

    def task_started(self, task_key: str, run_keys: list[str]) -> None:
        pass  # the measured rate does not care which runs share a task

    def task_ended(self, task_key: str) -> None:
        pass

    def finish(self, key: str) -> None:
        run = self.runs.setdefault(key, RunSteps())
        run.finished = True
        if run.planned is not None:
            run.done = run.planned

    def steps_measured(self) -> int:
        return sum(run.done - run.baseline for run in self.runs.values())

    def steps_left(self) -> float | None:
        known = [run.planned for run in self.runs.values() if run.planned is not None]
        if not known:
            return None
        typical = sum(known) / len(known)
        left = 0.0
        for run in self.runs.values():
            if run.finished:
                continue
            left += (run.planned if run.planned is not None else typical) - run.done
        return max(0.0, left)

    def seconds_left(self) -> float | None:
        if self.started_at is None:
            return None
        elapsed, measured = self.clock() - self.started_at, self.steps_measured()
        left = self.steps_left()
        if measured <= 0 or elapsed <= 0 or left is None:
            return None
        return left / (measured / elapsed)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 60:
        return f"{int(seconds)}s"
    minutes = int(round(seconds / 60))
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    return f"{hours / 24:.1f}d"


def format_active_units(units: Iterable[Any] | None) -> str:
    return "+".join(str(u) for u in units) if units else "?"


def finished_line(run_id: str, record: dict[str, Any] | None, seconds: float) -> str:
    """run id, test NLL, active units (bottom layer first, e.g. 26+7), minutes."""
    metrics = (record or {}).get("metrics") or {}
    nll = metrics.get("test_nll")
    nll_text = f"{nll:.2f}" if isinstance(nll, int | float) else "?"
    units = format_active_units(metrics.get("active_units"))
    return (f"{run_id}  test NLL {nll_text}  active units {units}  "
            f"{seconds / 60:.1f} min")


TICK_S = 1.0  # the ETA is recomputed at least this often while nothing reports
SWEEP_BAR_FORMAT = "{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed}{postfix}"


class SweepDisplay:
    """The bars and lines of one sweep (driver side)."""

    def __init__(self, name: str, total: int, already_done: int, *, stream: TextIO | None = None,
                 out: TextIO | None = None, eta: Any = None) -> None:
        self._stream = stream or sys.stderr
        self._out = out or sys.stdout
        self.eta = eta or StepEta()  # or benchmark.sweeps.eta.ModelEta: the same calls
        self._sweep_bar = tqdm(total=total, initial=already_done, desc=f"sweep {name}",
                               unit="run", position=0, file=self._stream, dynamic_ncols=True,
                               bar_format=SWEEP_BAR_FORMAT)
        self._run_bars: dict[str, tqdm] = {}
        self._run_ids: dict[str, str] = {}
        self._last_refresh = 0.0
        self._refresh_eta()

    def run_started(self, key: str, run_id: str) -> None:
        self.eta.start_clock()
        self._run_ids[key] = run_id

    def progress(self, key: str, done: int, planned: int) -> None:
        self.eta.update(key, done, planned)
        bar = self._run_bars.get(key)
        if bar is None and key in self._run_ids:
            # Created at the first report, so that its rate leaves out the worker's start-up.
            bar = self._run_bars[key] = tqdm(
                total=planned, initial=min(done, planned), desc=self._run_ids[key], unit="step",
                leave=False, file=self._stream, dynamic_ncols=True)
        elif bar is not None:
            bar.total = planned
            bar.update(min(done, planned) - bar.n)
        self._refresh_eta()

    def run_finished(self, key: str, counts_as_done: bool = True) -> None:
        self.eta.finish(key)
        self._run_ids.pop(key, None)
        bar = self._run_bars.pop(key, None)
        if bar is not None:
            bar.close()
        if counts_as_done:
            self._sweep_bar.update(1)
        self._refresh_eta()

    def task_started(self, task_key: str, run_keys: list[str]) -> None:
        self.eta.task_started(task_key, run_keys)

    def task_ended(self, task_key: str) -> None:
        self.eta.task_ended(task_key)
        self._refresh_eta()

    def tick(self) -> None:
        """The driver's periodic call: the ETA moves on between progress reports too."""
        now = time.monotonic()
        if now - self._last_refresh >= TICK_S:
            self._refresh_eta()

    def line(self, text: str, *, error: bool = False) -> None:
        tqdm.write(text, file=self._stream if error else self._out)

    def _refresh_eta(self) -> None:
        self._last_refresh = time.monotonic()
        self._sweep_bar.set_postfix_str(f"ETA {format_duration(self.eta.seconds_left())}")

    def close(self) -> None:
        for bar in self._run_bars.values():
            bar.close()
        self._run_bars.clear()
        self._sweep_bar.close()
