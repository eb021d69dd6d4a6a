"""Runs grouped into the cells of a published table, with what each cell can honestly claim.

A cell's measured value is the mean over seeds of its full-protocol runs; only when it has none
does it show its furthest cut run, marked with the epochs it got through and given no verdict.
Runs are never averaged across fidelities, data conditions, evaluation k or training lengths.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from benchmark.report.published import Noise
from benchmark.report.runs import Run, format_count
from benchmark.report.verdict import Verdict, active_units_verdict, nll_tolerance, nll_verdict


@dataclass(frozen=True)
class Reference:
    """A published value as the cell compares against it."""

    nll: float
    active_units: tuple[int, ...]
    cite: str


@dataclass(frozen=True)
class Measurement:
    runs: tuple[Run, ...]
    nll: float
    nll_sd: float | None  # over seeds, when there are at least two
    nll_se: float | None  # the estimator's standard error, for a single seed
    train_nll: float | None
    active_units: tuple[float, ...] | None  # mean per layer
    full: bool

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def seeds(self) -> list[int | None]:
        return [r.seed for r in self.runs]

    @property
    def eval_k(self) -> int | None:
        return self.runs[0].eval_k

    @property
    def epochs_text(self) -> str:
        return self.runs[0].epochs_text()

    @property
    def spread(self) -> float | None:
        return self.nll_sd if self.n >= 2 else self.nll_se


def _mean_or_none(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _mean_units(runs: Sequence[Run]) -> tuple[float, ...] | None:
    units = [r.active_units for r in runs]
    if any(u is None for u in units) or len({len(u) for u in units}) != 1:
        return None
    return tuple(statistics.fmean(layer) for layer in zip(*units, strict=True))


def measure(runs: Sequence[Run]) -> Measurement:
    """Aggregate runs that share one protocol (the caller groups them)."""
    values = [r.test_nll for r in runs if r.test_nll is not None]
    sd = statistics.stdev(values) if len(values) >= 2 else None
    se = runs[0].test_nll_se if len(runs) == 1 else None
    return Measurement(tuple(runs), statistics.fmean(values), sd, se,
                       _mean_or_none(r.train_nll for r in runs), _mean_units(runs),
                       full=all(r.is_full_protocol for r in runs))


def pick_measured_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs whose mean a cell shows: full-protocol runs first, else the furthest cut runs."""
    measured = [r for r in runs if r.has_measurement]
    full = [r for r in measured if r.is_full_protocol]
    pool = full or measured
    if not pool:
        return []
    # Same training length and the same estimator only: averaging L_50 with L_5000, or 40 epochs
    # with 13, would produce a number no protocol gives.
    def key(r: Run) -> tuple[float, int]:
        return (r.epochs_done or 0.0, r.eval_k or 0)

    best = max(key(r) for r in pool)
    return sorted((r for r in pool if key(r) == best), key=lambda r: (r.seed is None, r.seed or 0))


@dataclass(frozen=True)
class CellSummary:
    runs: tuple[Run, ...]
    measurement: Measurement | None
    reference: Reference | None
    noise: Noise

    @property
    def others(self) -> list[Run]:
        """Runs of this cell not behind the measured value: shown as notes, never dropped."""
        used = set(self.measurement.runs) if self.measurement else set()
        return [r for r in self.runs if r not in used]

    def status_text(self) -> str:
        """What stands in the cell when there is no measured value."""
        if not self.runs:
            return "not run"
        return "; ".join(_seed_prefix(r, self.runs) + r.status_text() for r in self.runs)

    def notes(self) -> list[str]:
        if self.measurement is None:
            return []
        return [_seed_prefix(r, self.runs, always=True) + r.status_text() for r in self.others]

    def no_verdict_reason(self) -> str | None:
        m = self.measurement
        if m is None or self.reference is None:
            return None
        if not m.full:
            return f"no verdict: cut run, {m.epochs_text}"
        if not m.runs[0].evaluated_as_paper:
            return f"no verdict: evaluated with L_{m.eval_k}, the paper uses L_5000"
        return None

    def nll_verdict(self) -> Verdict | None:
        m = self.measurement
        if m is None or self.reference is None or self.no_verdict_reason() is not None:
            return None
        tol = nll_tolerance(m.nll_sd, m.n, m.nll_se, self.noise.nll_run_to_run_sd)
        return nll_verdict(m.nll, self.reference.nll, tol)

    def units_verdict(self) -> Verdict | None:
        m = self.measurement
        if m is None or m.active_units is None or self.reference is None:
            return None
        if self.no_verdict_reason() is not None:
            return None
        return active_units_verdict(m.active_units, self.reference.active_units,
                                    self.noise.active_units_per_layer)


def _seed_prefix(run: Run, runs: Sequence[Run], always: bool = False) -> str:
    return f"seed {run.seed}: " if always or len(runs) > 1 else ""


def summarize(runs: Sequence[Run], reference: Reference | None, noise: Noise) -> CellSummary:
    picked = pick_measured_runs(runs)
    measurement = measure(picked) if picked else None
    ordered = sorted(runs, key=lambda r: (r.seed is None, r.seed or 0, r.run_id))
    return CellSummary(tuple(ordered), measurement, reference, noise)


def format_nll(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.2f}"


def format_signed(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "–"
    text = f"{value:+.{digits}f}"
    return text.replace("-", "−")


def format_units(units: Sequence[float] | None) -> str:
    """Active units as the paper writes them: 26+7; means over seeds keep one decimal."""
    if not units:
        return "–"
    return "+".join(format_count(round(u, 1)) for u in units)


def format_units_diff(diff: Sequence[float]) -> str:
    return " / ".join(format_signed(d, 0 if float(d).is_integer() else 1) for d in diff)
