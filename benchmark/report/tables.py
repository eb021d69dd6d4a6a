"""The report's tables: measured cells beside the published ones, built from the run summaries.

Tables 1 and 3 follow the paper's layout (dataset x layers x k rows; NLL and active units of the
VAE and the IWAE). Every table is built per fidelity: the two fidelities are different
experiments and never share a table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.report.published import (
    KS,
    LAYERS,
    MODELS,
    TABLE1_DATA,
    TABLE3_DATA,
    ContinuationRow,
    Published,
)
from benchmark.report.runs import Run, data_label, format_count, resolve_init_run
from benchmark.report.summary import (
    CellSummary,
    Measurement,
    Reference,
    format_nll,
    format_signed,
    format_units,
    format_units_diff,
    summarize,
)
from benchmark.report.tableio import Cell, ReportTable
from benchmark.report.tightness import ais_note
from benchmark.report.verdict import COVERAGE

GridKey = tuple[str, int, int, str]  # (data, layers, k, model)
ALL_DATA = (*TABLE1_DATA, *TABLE3_DATA)
PAPER_DATA_NAMES = {"mnist-dynamic": "dynamic MNIST", "omniglot": "OMNIGLOT",
                    "mnist-fixed": "fixed MNIST"}
TEST_SIZES = {"mnist-dynamic": 10_000, "mnist-fixed": 10_000, "omniglot": 8_070}


def fidelities(runs: Sequence[Run]) -> list[str]:
    """Fidelities present, `code` (the default, the one that made the paper's numbers) first."""
    found = {r.fidelity for r in runs} or {"code"}
    return sorted(found, key=lambda f: (f != "code", f))


@dataclass(frozen=True)
class Grid:
    """The Table 1 / Table 3 cells of one fidelity."""

    fidelity: str
    cells: dict[GridKey, CellSummary]

    def __getitem__(self, key: GridKey) -> CellSummary:
        return self.cells[key]


def build_grid(runs: Sequence[Run], published: Published, fidelity: str) -> Grid:
    cells = {}
    for data in ALL_DATA:
        for layers in LAYERS:
            for k in KS:
                for model in MODELS:
                    key = (data, layers, k, model)
                    cell_runs = [r for r in runs if not r.is_continuation and r.is_plain
                                 and r.fidelity == fidelity
                                 and (r.data, r.layers, r.k, r.model) == key]
                    ref = published.cell(*key)
                    reference = Reference(ref.nll, ref.active_units, ref.source.cite())
                    cells[key] = summarize(cell_runs, reference, published.noise)
    return Grid(fidelity, cells)


def eval_notes(m: Measurement) -> list[str]:
    """Say how the value was estimated whenever it is not the paper's L_5000 on all test data."""
    run = m.runs[0]
    notes = []
    if not run.evaluated_as_paper:
        notes.append(f"estimated with L_{run.eval_k}")
    if run.eval_n and run.eval_n < TEST_SIZES.get(run.data or "", 0):
        notes.append(f"on a random {format_count(run.eval_n)} of "
                     f"{format_count(TEST_SIZES[run.data])} test examples")
    return notes


def seed_text(seeds: Sequence[int | None]) -> str:
    """'1 seed', '3 seeds (0, 1, 2)'; repeated seeds are called runs, not seeds."""
    listed = ", ".join(str(s) for s in seeds)
    if len(seeds) == 1:
        return "1 seed"
    if len(set(seeds)) == len(seeds):
        return f"{len(seeds)} seeds ({listed})"
    return f"{len(seeds)} runs (seeds {listed})"


def measured_status(s: CellSummary) -> str:
    m = s.measurement
    assert m is not None
    if not m.full:
        return f"cut: {m.epochs_text}, no verdict"
    seeds = f"complete: {seed_text(m.seeds)}"
    reason = s.no_verdict_reason()
    return f"{seeds}; {reason}" if reason else seeds


def nll_cell(s: CellSummary) -> Cell:
    ref, m = s.reference, s.measurement
    published = format_nll(ref.nll) if ref else ""
    if m is None:
        return Cell(published=published, status=s.status_text())
    verdict = s.nll_verdict()
    return Cell(
        value=format_nll(m.nll),
        spread=format_nll(m.spread) if m.spread is not None else "",
        published=published,
        difference=format_signed(m.nll - ref.nll) if ref else "",
        tolerance=f"±{verdict.tolerance:.2f}" if verdict else "",
        verdict=verdict.outcome if verdict else "",
        status=measured_status(s),
        notes=tuple(eval_notes(m) + ais_notes(m) + s.notes()),
    )


def ais_notes(m: Measurement) -> list[str]:
    """The AIS estimate of the runs behind a value, labelled: the cell's number stays L_k."""
    notes = []
    for run in m.runs:
        note = ais_note(run)
        if note is not None:
            notes.append(f"seed {run.seed}: {note}" if m.n > 1 else note)
    return notes


def units_cell(s: CellSummary) -> Cell:
    ref, m = s.reference, s.measurement
    published = format_units(ref.active_units) if ref else ""
    if m is None:
        return Cell(published=published, status=s.status_text())
    if m.active_units is None:
        return Cell(published=published, status="active units not recorded")
    verdict = s.units_verdict()
    diff = [a - p for a, p in zip(m.active_units, ref.active_units, strict=False)] if ref else []
    return Cell(
        value=format_units(m.active_units),
        published=published,
        difference=format_units_diff(diff),
        tolerance=f"±{verdict.tolerance:.0f}/layer" if verdict else "",
        verdict=verdict.outcome if verdict else "",
        status=measured_status(s),
    )


def _tolerance_footnotes(published: Published) -> tuple[str, ...]:
    noise = published.noise
    return (
        f"Verdicts only for complete runs of the full protocol (3,280 epochs, nothing cut, "
        f"L_5000). NLL agrees when |measured − published| ≤ {COVERAGE:g} × √(σ² + u²), "
        f"σ = {noise.nll_run_to_run_sd:g} nat run-to-run noise of the published single run "
        f"({noise.nll_basis}); u = sd/√n over n ≥ 2 seeds, or √(σ² + s.e.²) for one seed.",
        f"Active units agree when every layer is within ±{noise.active_units_per_layer} "
        f"({noise.active_units_basis}).",
        "Published values are reference data from the paper, never measurements of this suite.",
    )


def paper_table(grid: Grid, published: Published, number: int,
                data_values: tuple[str, ...] | None = None) -> ReportTable:
    """Table 1 (dynamic MNIST, OMNIGLOT) or Table 3 (fixed MNIST) in the paper's layout; with
    data_values, only those datasets' rows (a grid that does not include the others)."""
    every = TABLE1_DATA if number == 1 else TABLE3_DATA
    data_values = data_values or every
    names = " and ".join(PAPER_DATA_NAMES[d] for d in data_values)
    only = "; the paper's other rows are not part of this grid" if data_values != every else ""
    rows = []
    for data in data_values:
        for layers in LAYERS:
            for k in KS:
                cells = []
                for model in MODELS:
                    s = grid[(data, layers, k, model)]
                    cells += [nll_cell(s), units_cell(s)]
                rows.append(((data_label(data), str(layers), str(k)), tuple(cells)))
    what = published.table1 if number == 1 else published.table3
    src = what[0].source
    return ReportTable(
        name=f"table{number}",
        title=f"Table {number}: {names} (fidelity {grid.fidelity}{only})",
        description=f"Test NLL (nats, L_5000) and active units, measured beside "
                    f"{src.cite()}.",
        index_columns=("Dataset", "Layers", "k"),
        value_columns=("VAE NLL", "VAE active units", "IWAE NLL", "IWAE active units"),
        rows=tuple(rows), folder=grid.fidelity, footnotes=_tolerance_footnotes(published))


def continuation_cells(row: ContinuationRow, runs: Sequence[Run], all_runs: Sequence[Run],
                       published: Published, results_dir: Path) -> tuple[Cell, ...]:
    firsts = [f for f in (resolve_init_run(r, list(all_runs), results_dir) for r in runs) if f]
    first_ref = Reference(row.first.nll, row.first.active_units, row.source.cite())
    second_ref = Reference(row.second.nll, row.second.active_units, row.source.cite())
    first = summarize(list({id(f): f for f in firsts}.values()), first_ref, published.noise)
    second = summarize(runs, second_ref, published.noise)
    cells = [nll_cell(first), units_cell(first), nll_cell(second), units_cell(second)]
    if runs and not firsts:
        cells[0] = Cell(published=cells[0].published,
                        status=f"first-stage run not found: {runs[0].init_from}")
    if first.measurement is not None and not first.measurement.full and second.measurement:
        # A continuation of a cut first stage is not Table 2's experiment: drop its verdicts.
        cells[2:] = [_without_verdict(c, "first stage was cut") for c in cells[2:]]
    return tuple(cells)


def _without_verdict(cell: Cell, why: str) -> Cell:
    return Cell(value=cell.value, spread=cell.spread, published=cell.published,
                difference=cell.difference, status=f"{cell.status}; no verdict: {why}",
                notes=cell.notes)


def table2(runs: Sequence[Run], published: Published, fidelity: str,
           results_dir: Path) -> ReportTable | None:
    """Section 5.2 continuations; None when this fidelity has none."""
    conts = [r for r in runs if r.is_continuation and r.is_plain and r.fidelity == fidelity]
    if not conts:
        return None
    rows = []
    for row in published.table2:
        mine = [r for r in conts if (r.data, r.layers, r.model, r.k)
                == (row.data, row.layers, row.second.model, row.second.k)]
        index = (str(row.experiment), f"{row.first.model.upper()} k={row.first.k}",
                 f"{row.second.model.upper()} k={row.second.k}")
        rows.append((index, continuation_cells(row, mine, runs, published, results_dir)))
    return ReportTable(
        name="table2",
        title=f"Table 2: continue training with the other objective (fidelity {fidelity})",
        description=f"MNIST (dynamic), 1 stochastic layer: {published.table2[0].source.cite()}; "
                    f"the second stage runs 2,187 more epochs at learning rate 1e-4.",
        index_columns=("Experiment", "First stage", "Second stage"),
        value_columns=("First-stage NLL", "First-stage active units", "Second-stage NLL",
                       "Second-stage active units"),
        rows=tuple(rows), folder=fidelity, footnotes=_tolerance_footnotes(published)[:2])


def run_cells(run: Run) -> tuple[Cell, ...]:
    se = run.test_nll_se
    evaluation = f"L_{run.eval_k}" if run.eval_k else ""
    if run.eval_n:
        evaluation += f", n={format_count(run.eval_n)}"
    minutes = run.minutes
    layers = f"{run.layers}L" if run.layers is not None else "?L"
    return (
        Cell(value=data_label(run.data)),
        Cell(value=f"{run.objective_text()}, {layers}"),
        Cell(value=str(run.seed)), Cell(value=run.fidelity), Cell(value=str(run.schedule)),
        Cell(value=run.status_text()),
        Cell(value=format_nll(run.test_nll), spread=format_nll(se) if se is not None else ""),
        Cell(value=format_nll(run.train_nll)), Cell(value=format_units(run.active_units)),
        Cell(value=evaluation),
        Cell(value=f"{minutes:.1f}" if minutes is not None else "–"),
        Cell(value=str(run.environment.get("device") or run.config.get("device") or "?")),
    )


def runs_table(runs: Sequence[Run], results_dir: Path) -> ReportTable:
    rows = []
    for run in runs:
        try:
            name = str(run.run_dir.relative_to(results_dir))
        except ValueError:
            name = str(run.run_dir)
        if run.init_from:
            name += f" (from {Path(run.init_from).name})"
        rows.append(((name,), run_cells(run)))
    return ReportTable(
        name="runs",
        title="Every run",
        description="All runs found, whatever their status. Test NLL ± is the estimator's "
                    "standard error; minutes = training + evaluation time; complete runs of the "
                    "full protocol ran 3,280 epochs (2,187 for a continuation).",
        index_columns=("Run",),
        value_columns=("Data", "Model", "Seed", "Fidelity", "Schedule", "Status", "Test NLL",
                       "Train NLL", "Active units", "Evaluation", "Minutes", "Device"),
        rows=tuple(rows))


