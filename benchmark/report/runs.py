"""The runs under a results folder, each read once and classified for the report.

A run counts as a reproduction of the paper's protocol only when it is complete and ran the full
schedule to its last epoch with nothing cut; everything else is shown for what it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.config import CONTINUATION_EPOCHS, GRID_DATA, PROTOCOL_EPOCHS, params_in
from benchmark.definitions import (
    Params,
    is_plugin,
    objective_label,
    paper_objectives,
    samples_factor,
)
from benchmark.records import folder_problems, iter_results, scan_results

PAPER_EVAL_K = 5000
CUT_KEYS = ("stages", "epochs", "steps")
DATA_LABELS = {"mnist-dynamic": "MNIST (dynamic)", "mnist-fixed": "MNIST (fixed)",
               "mnist-dynamic-lm50k": "MNIST (dynamic, LM's 50k images)",
               "omniglot": "OMNIGLOT"}


def format_count(value: float | None) -> str:
    """Epochs and steps as people read them: 3,280 and 12.5, never 3280.0."""
    if value is None or not math.isfinite(value):
        return "?"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def data_label(data: str | None) -> str:
    return DATA_LABELS.get(data or "", data or "unknown data")


def model_label(model: str | None, k: int | None) -> str:
    return f"{(model or '?').upper()} k={k if k is not None else '?'}"


# eq=False: runs are identities (hashable by object), never compared by their record.
@dataclass(frozen=True, eq=False)
class Run:
    run_dir: Path
    record: dict[str, Any]

    def _section(self, name: str) -> dict[str, Any]:
        value = self.record.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def config(self) -> dict[str, Any]:
        return self._section("config")

    @property
    def metrics(self) -> dict[str, Any]:
        return self._section("metrics")

    @property
    def progress(self) -> dict[str, Any]:
        return self._section("progress")

    @property
    def environment(self) -> dict[str, Any]:
        return self._section("environment")

    @property
    def run_id(self) -> str:
        return str(self.record.get("run_id") or self.run_dir.name)

    @property
    def status(self) -> str:
        return str(self.record.get("status") or "unknown")

    @property
    def data(self) -> str | None:
        return self.config.get("data")

    @property
    def model(self) -> str | None:
        return self.config.get("model")

    @property
    def k(self) -> int | None:
        return self.config.get("k")

    @property
    def layers(self) -> int | None:
        return self.config.get("layers")

    @property
    def estimator(self) -> str | None:
        return self.config.get("estimator")

    @property
    def params(self) -> Params:
        """The objective's parameters ((("m", 8),), (("beta", 0.05),), a plugin's own)."""
        return params_in(self.config)

    @property
    def is_plain(self) -> bool:
        """The paper's VAE or IWAE with its own gradient: a run of Tables 1-3 (records written
        before the other objectives existed have none of their fields)."""
        return self.model in paper_objectives() and self.estimator is None and not self.params

    @property
    def is_plugin(self) -> bool:
        """An objective of a researcher's own (benchmark.plugins): not part of the suite."""
        return is_plugin(self.model)

    @property
    def objective_key(self) -> tuple:
        """(data, layers, model, k, estimator, params): which published cell it compares with."""
        return (self.data, self.layers, self.model, self.k, self.estimator, self.params)

    @property
    def samples(self) -> int | None:
        return None if self.k is None else self.k * samples_factor(self.model, self.params)

    def objective_text(self) -> str:
        return objective_label(self.model or "?", self.k if self.k is not None else 0,
                               self.estimator, self.params)

    @property
    def seed(self) -> int | None:
        return self.config.get("seed")

    @property
    def fidelity(self) -> str:
        return str(self.config.get("fidelity") or "code")

    @property
    def schedule(self) -> str | None:
        return self.config.get("schedule")

    @property
    def init_from(self) -> str | None:
        return self.config.get("init_from") or None

    @property
    def is_continuation(self) -> bool:
        return self.init_from is not None

    @property
    def epochs_done(self) -> float | None:
        value = self.progress.get("epochs")
        return float(value) if isinstance(value, int | float) else None

    @property
    def epochs_total(self) -> float:
        # The record always carries the protocol's length; the fallback is for old records.
        value = self.progress.get("epochs_total")
        if isinstance(value, int | float) and value > 0:
            return float(value)
        return float(CONTINUATION_EPOCHS if self.is_continuation else PROTOCOL_EPOCHS)

    def epochs_text(self) -> str:
        return f"{format_count(self.epochs_done)} / {format_count(self.epochs_total)} epochs"

    def cuts(self) -> list[str]:
        """Why this run is not the full protocol (empty for a full-protocol run)."""
        reasons = []
        if self.schedule != "full":
            reasons.append(f"schedule {self.schedule}")
        reasons += [f"--{key} {self.config[key]}" for key in CUT_KEYS
                    if self.config.get(key) is not None]
        done = self.epochs_done
        if done is None or done + 1e-9 < self.epochs_total:
            reasons.append(self.epochs_text())
        return reasons

    @property
    def is_full_protocol(self) -> bool:
        return self.status == "complete" and not self.cuts()

    @property
    def test_nll(self) -> float | None:
        return _finite(self.metrics.get("test_nll"))

    @property
    def test_nll_se(self) -> float | None:
        return _finite(self.metrics.get("test_nll_se"))

    @property
    def train_nll(self) -> float | None:
        return _finite(self.metrics.get("train_nll"))

    @property
    def active_units(self) -> tuple[int, ...] | None:
        units = self.metrics.get("active_units")
        return tuple(units) if isinstance(units, list) and units else None

    @property
    def eval_k(self) -> int | None:
        return self.metrics.get("eval_k") or self.config.get("eval_k")

    @property
    def eval_n(self) -> int | None:
        return self.metrics.get("eval_n") or self.config.get("eval_n")

    @property
    def evaluated_as_paper(self) -> bool:
        """L_5000, as the paper: fewer importance samples bias the estimate upwards."""
        return self.eval_k is not None and self.eval_k >= PAPER_EVAL_K

    @property
    def has_measurement(self) -> bool:
        return self.status == "complete" and self.test_nll is not None

    @property
    def minutes(self) -> float | None:
        timing = self._section("timing")
        seconds = [v for v in (timing.get("train_s"), timing.get("eval_s"))
                   if isinstance(v, int | float)]
        return sum(seconds) / 60.0 if seconds else None

    def status_text(self) -> str:
        """What happened to this run, in one line, reason included."""
        if self.status == "complete" and self.test_nll is None:
            return f"complete, but no finite test NLL recorded ({self.epochs_text()})"
        if self.status == "complete":
            return "complete" if self.is_full_protocol else f"cut: {self.epochs_text()}"
        if self.status == "running":
            return f"running: {self.epochs_text()}"
        if self.status == "failed":
            return self._failure_text()
        if self.status == "unavailable":
            return f"unavailable: {self.record.get('reason') or 'no reason recorded'}"
        return f"unknown status {self.status!r}"

    def _failure_text(self) -> str:
        failure = self.record.get("failure") or {}
        reason = failure.get("reason") or self.record.get("reason") or "no reason recorded"
        step, epoch = failure.get("step"), failure.get("epoch")
        where = f" at step {format_count(step)}" if step is not None else ""
        when = f" (epoch {format_count(epoch)})" if epoch is not None else ""
        return f"failed{where}{when}: {reason}"

    def describe(self) -> str:
        layers = f"{self.layers}L" if self.layers is not None else "?L"
        what = model_label(self.model, self.k) if self.is_plain else self.objective_text()
        return f"{data_label(self.data)} {what} {layers} seed {self.seed}"


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def load_runs(results_dir: Path) -> list[Run]:
    """Every run with a readable result.json under results_dir, in a stable order."""
    return [Run(run_dir, record) for run_dir, record in iter_results(results_dir)]


def unreadable_records(results_dir: Path) -> list[tuple[Path, str]]:
    """(run_dir, why), one line each: the result.json files the records' validating reader
    refuses (load_runs skips them), and what it refuses in the folders of the runs it reads (a
    link leading outside the folder, an array of Python objects)."""
    records, refused = scan_results(results_dir)
    found = [(run_dir, f"unreadable {why}") for run_dir, why in refused]
    for run_dir, record in records:
        found += [(run_dir, f"refused {why}") for why in folder_problems(run_dir, record)]
    return found


def resolve_init_run(run: Run, runs: list[Run], results_dir: Path) -> Run | None:
    """The first-stage run a Section 5.2 continuation started from, if it is in the report."""
    if run.init_from is None:
        return None
    target = Path(run.init_from)
    candidates = [target, Path(results_dir) / target, Path(results_dir).parent / target]
    wanted = {c.resolve() for c in candidates}
    for other in runs:
        if other.run_dir.resolve() in wanted:
            return other
    # Paths recorded on another machine: fall back to the run directory's name.
    return next((o for o in runs if o.run_dir.name == target.name and o is not run), None)


# The paper's objectives the estimators grid trains beside the new ones, at one layer.
ESTIMATOR_GRID_PLAIN_KS = (5, 50, 64)
PAPER_KS = (1, 5, 50)  # the k of Tables 1-3
ESTIMATOR_GRID_LAYERS = 1


def in_grid(run: Run, grid: str | None, continuation_bases: set[Path]) -> bool:
    """Whether a run belongs to a report of one sweep grid: its data conditions (the paper's
    objectives only, except for the estimators grid), and for table2 the continuations and the
    runs they continue from."""
    if grid is None:
        return True
    if grid == "table2":
        return run.init_from is not None or run.run_dir.resolve() in continuation_bases
    if run.init_from is not None or run.data not in GRID_DATA[grid]:
        return False
    if grid == "estimators":
        return run.layers == ESTIMATOR_GRID_LAYERS and (
            not run.is_plain or run.k in ESTIMATOR_GRID_PLAIN_KS)
    return run.is_plain and run.k in PAPER_KS


def select_grid(runs: list[Run], grid: str | None) -> list[Run]:
    bases = {Path(r.init_from).resolve() for r in runs if r.init_from is not None}
    return [r for r in runs if in_grid(r, grid, bases)]

