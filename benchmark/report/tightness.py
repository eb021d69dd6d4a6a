""""How tight is L_5000?": the AIS estimate of every run that has one beside its L_k bound on
the same examples, and the BDMC sandwich against the number of intermediate distributions.

Read from result.json only (metrics.ais and metrics.bdmc, written by `evaluate --ais/--bdmc`).
The Table 1 cells keep L_5000, the paper's estimator; the AIS value is a labelled note there.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmark.report.runs import Run, data_label, format_count
from benchmark.report.summary import format_nll, format_signed
from benchmark.report.tableio import Cell, ReportTable

AIS_HINT = ("No run here has an AIS evaluation yet. Add one with `python -m benchmark evaluate "
            "RUN_DIR --ais --n 100` (and `--bdmc` for the sandwich on simulated data).")


def ais_record(run: Run) -> dict[str, Any] | None:
    value = run.metrics.get("ais")
    return value if isinstance(value, dict) and "nll" in value else None


def bdmc_record(run: Run) -> dict[str, Any] | None:
    value = run.metrics.get("bdmc")
    return value if isinstance(value, dict) and value.get("rows") else None


def ais_setting(ais: dict[str, Any]) -> str:
    return (f"T={format_count(ais.get('intermediate'))}, {ais.get('chains')} chains, "
            f"{ais.get('leapfrog')} leapfrog, from the {ais.get('start')}")


def ais_note(run: Run) -> str | None:
    """The labelled AIS value a Table 1 cell shows beside its L_5000."""
    ais = ais_record(run)
    if ais is None:
        return None
    se = f" ± {format_nll(ais.get('se'))}" if ais.get("se") is not None else ""
    return (f"AIS NLL {format_nll(ais['nll'])}{se} on {format_count(ais.get('n'))} test "
            f"examples ({ais_setting(ais)}); L_{ais.get('bound_k')} on the same examples "
            f"{format_nll(ais.get('bound_nll'))}")


def _name(run: Run, results_dir: Path) -> str:
    try:
        return str(run.run_dir.relative_to(results_dir))
    except ValueError:
        return str(run.run_dir)


def _with_se(value: float | None, se: float | None, signed: bool = False) -> Cell:
    text = format_signed(value) if signed else format_nll(value)
    return Cell(value=text, spread=format_nll(se) if se is not None else "")


def runs_with_ais(runs: Sequence[Run]) -> list[Run]:
    return [r for r in runs if r.status == "complete" and ais_record(r) is not None]


def ais_evaluations(run: Run) -> list[dict[str, Any]]:
    """Every AIS evaluation of a run (metrics.ais_evaluations), fewest distributions first;
    the headline alone for records that hold only it."""
    listed = run.metrics.get("ais_evaluations")
    found = [v for v in listed.values() if isinstance(v, dict) and "nll" in v] \
        if isinstance(listed, dict) else []
    headline = ais_record(run)
    if not found and headline is not None:
        found = [headline]
    return sorted(found, key=lambda a: (a.get("intermediate") or 0, a.get("chains") or 0,
                                        a.get("n") or 0))


def ais_table(runs: Sequence[Run], results_dir: Path) -> ReportTable:
    rows = []
    for run in runs_with_ais(runs):
        for ais in ais_evaluations(run):
            rows.append(((_name(run, results_dir), format_count(ais.get("intermediate"))),
                         _ais_cells(run, ais)))
    return ReportTable(
        name="ais",
        title="How tight is L_5000? AIS beside L_k on the same test examples",
        description="Test NLL (nats) of each run with an AIS evaluation: the L_k bound of the "
                    "paper's protocol and the annealed-importance-sampling estimate (Wu et al. "
                    "2017) with T intermediate distributions on the same seeded test examples; "
                    "AIS − L_k is the log-likelihood that L_k misses (positive: L_k is loose by "
                    "that much), ± its paired standard error over examples. Both are stochastic "
                    "lower bounds of log p(x), so the largest T is the tightest; a negative "
                    "difference says T was too small. Cut runs are shown for what they are, "
                    "never as reproductions.",
        index_columns=("Run", "T"),
        value_columns=("Model", "Status", "L_k NLL", "AIS NLL", "AIS − L_k (nats)",
                       "AIS setting", "HMC acceptance", "AIS minutes", "Check"),
        rows=tuple(rows))


def _ais_cells(run: Run, ais: dict[str, Any]) -> tuple[Cell, ...]:
    flag = "AIS below the bound: too few distributions?" if ais.get("below_bound") else ""
    acceptance = ais.get("acceptance") or {}
    seconds = ais.get("seconds")
    setting = (f"{ais.get('chains')} chains, {ais.get('leapfrog')} leapfrog, from the "
               f"{ais.get('start')}; n={format_count(ais.get('n'))}, L_{ais.get('bound_k')}")
    return (
        Cell(value=f"{data_label(run.data)} {(run.model or '?').upper()} k={run.k}, "
                   f"{run.layers}L"),
        Cell(value=run.status_text()),
        _with_se(ais.get("bound_nll"), ais.get("bound_se")),
        _with_se(ais["nll"], ais.get("se")),
        _with_se(ais.get("gap"), ais.get("gap_se"), signed=True),
        Cell(value=setting),
        Cell(value=f"{acceptance['mean']:.2f}" if "mean" in acceptance else "–"),
        Cell(value=f"{seconds / 60:.1f}" if isinstance(seconds, int | float) else "–"),
        Cell(value=flag),
    )


def bdmc_table(runs: Sequence[Run], results_dir: Path) -> ReportTable:
    rows = []
    for run in runs:
        bdmc = bdmc_record(run)
        if run.status != "complete" or bdmc is None:
            continue
        for row in bdmc["rows"]:
            cells = (
                Cell(value=f"{bdmc.get('simulated')} simulated, {bdmc.get('chains')} chains, "
                           f"{bdmc.get('leapfrog')} leapfrog, from the {bdmc.get('start')}"),
                _with_se(row.get("lower"), row.get("lower_se")),
                _with_se(row.get("upper"), row.get("upper_se")),
                _with_se(row.get("gap"), row.get("gap_se")),
                Cell(value=_acceptance_pair(row)),
                Cell(value=f"{row['seconds'] / 60:.1f}" if "seconds" in row else "–"),
            )
            rows.append(((_name(run, results_dir), format_count(row.get("intermediate"))),
                         cells))
    return ReportTable(
        name="bdmc",
        title="BDMC on data simulated from each model: how many distributions are enough",
        description="Mean log p(x) (nats, higher is better) of examples drawn from the model "
                    "itself: forward AIS gives a stochastic lower bound, reverse AIS from the "
                    "exact posterior sample an upper bound (Grosse et al. 2015). Their gap "
                    "bounds the error of forward AIS with T distributions on such data.",
        index_columns=("Run", "T"),
        value_columns=("Setting", "Lower (forward AIS)", "Upper (reverse AIS)", "Gap",
                       "Acceptance (forward / reverse)", "Minutes"),
        rows=tuple(rows))


def _acceptance_pair(row: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return f"{value:.2f}" if isinstance(value, int | float) else "–"

    return f"{text(row.get('forward_acceptance'))} / {text(row.get('reverse_acceptance'))}"


def bdmc_curves(runs: Sequence[Run]) -> list[tuple[str, list[tuple[int, float, float]]]]:
    """(label, [(T, gap, gap_se)]) for every complete run with BDMC rows."""
    curves = []
    for run in runs:
        bdmc = bdmc_record(run)
        if run.status != "complete" or bdmc is None:
            continue
        points = [(int(r["intermediate"]), float(r["gap"]), float(r.get("gap_se") or 0.0))
                  for r in bdmc["rows"] if "gap" in r and "intermediate" in r]
        label = f"{(run.model or '?').upper()} k={run.k} {run.layers}L ({run.status_text()})"
        curves.append((label, sorted(points)))
    return curves
