"""Tables that set measurements against each other rather than against one published cell: the
fixed minus dynamic binarization shift (beside Table 3 − Table 1) and the train − test gap
(beside the published range for each condition)."""

from __future__ import annotations

from benchmark.report.published import KS, LAYERS, MODELS, Published
from benchmark.report.runs import data_label
from benchmark.report.summary import CellSummary, Measurement, format_nll, format_signed
from benchmark.report.tableio import Cell, ReportTable
from benchmark.report.tables import ALL_DATA, Grid, nll_cell


def comparable(a: Measurement, b: Measurement) -> bool:
    """Two measurements may be subtracted only at the same training length and estimator."""
    ra, rb = a.runs[0], b.runs[0]
    return a.full == b.full and ra.epochs_done == rb.epochs_done and ra.eval_k == rb.eval_k


def _side_cell(s: CellSummary) -> Cell:
    cell = nll_cell(s)
    return Cell(value=cell.value, spread=cell.spread, published=cell.published,
                status=cell.status, notes=cell.notes)


def shift_cell(dyn: CellSummary, fix: CellSummary) -> Cell:
    """Fixed minus dynamic test NLL, measured beside Table 3 − Table 1."""
    published = fix.reference.nll - dyn.reference.nll
    pub_text = format_signed(published)
    md, mf = dyn.measurement, fix.measurement
    if not dyn.runs and not fix.runs:
        return Cell(published=pub_text, status="not run")
    if md is None or mf is None:
        missing = [f"{name}: {s.status_text()}" for name, s in (("dynamic", dyn), ("fixed", fix))
                   if s.measurement is None]
        return Cell(published=pub_text, status="needs both; " + "; ".join(missing))
    if not comparable(md, mf):
        return Cell(published=pub_text, status=f"not comparable: dynamic {md.epochs_text}, "
                                                f"fixed {mf.epochs_text}")
    shift = mf.nll - md.nll
    status = "complete" if md.full else f"cut: both {md.epochs_text}"
    return Cell(value=format_signed(shift), published=pub_text,
                difference=format_signed(shift - published), status=status)


def binarization_table(grid: Grid) -> ReportTable:
    rows = []
    for model in MODELS:
        for layers in LAYERS:
            for k in KS:
                dyn = grid[("mnist-dynamic", layers, k, model)]
                fix = grid[("mnist-fixed", layers, k, model)]
                cells = (_side_cell(dyn), _side_cell(fix), shift_cell(dyn, fix))
                rows.append(((model.upper(), str(layers), str(k)), cells))
    return ReportTable(
        name="binarization",
        title=f"Fixed minus dynamic binarization, MNIST test NLL (fidelity {grid.fidelity})",
        description="Measured fixed − dynamic test NLL beside the published Table 3 − Table 1 "
                    "(derived from the paper's numbers). Positive: fixed binarization is worse.",
        index_columns=("Model", "Layers", "k"),
        value_columns=("Dynamic test NLL", "Fixed test NLL", "Fixed − dynamic"),
        rows=tuple(rows), folder=grid.fidelity,
        footnotes=("A difference is only taken between runs of the same training length and "
                   "estimator; cut runs are compared with cut runs, never with the paper.",))


def gap_cells(s: CellSummary, published: Published, data: str) -> tuple[Cell, Cell, Cell]:
    gap_ref = published.gap(data)
    pub_text = gap_ref.describe() if gap_ref else ""
    if gap_ref and not gap_ref.source.paper.startswith("arXiv"):
        pub_text += " (authors' README, not the paper)"
    m = s.measurement
    if m is None:
        return (Cell(status=s.status_text()), Cell(status=s.status_text()),
                Cell(published=pub_text, status=s.status_text()))
    status = "complete" if m.full else f"cut: {m.epochs_text}"
    train = Cell(value=format_nll(m.train_nll), status=status)
    test = Cell(value=format_nll(m.nll), status=status)
    if m.train_nll is None:
        return train, test, Cell(published=pub_text, status="train NLL not recorded")
    gap = m.nll - m.train_nll
    verdict = ""
    if m.full and gap_ref and gap_ref.low is not None and gap_ref.high is not None:
        verdict = "inside range" if gap_ref.low <= gap <= gap_ref.high else "outside range"
    return train, test, Cell(value=format_nll(gap), published=pub_text, verdict=verdict,
                             status=status)


def gap_table(grid: Grid, published: Published) -> ReportTable:
    rows, unavailable = [], {}
    for data in ALL_DATA:
        for layers in LAYERS:
            for k in KS:
                for model in MODELS:
                    s = grid[(data, layers, k, model)]
                    if s.runs and all(r.status == "unavailable" for r in s.runs):
                        unavailable[data] = unavailable.get(data, 0) + 1
                    elif s.runs:
                        index = (data_label(data), str(layers), str(k), model.upper())
                        rows.append((index, gap_cells(s, published, data)))
    footnotes = [f"{data_label(d)}: {n} cell(s) left out, their data is unavailable "
                 f"(reasons in Tables 1 and 3)." for d, n in unavailable.items()]
    footnotes += [f"{data_label(g.data)}: “{g.quote}” ({g.source.cite()})"
                  for g in published.gaps]
    return ReportTable(
        name="train_test_gap",
        title=f"Train − test gap (fidelity {grid.fidelity})",
        description="How much higher the training-set log-likelihood is than the test one "
                    "(test NLL − train NLL, nats), beside the published range for the condition. "
                    "Cells without any run, or whose data is unavailable, are left out here; "
                    "Tables 1 and 3 show them.",
        index_columns=("Dataset", "Layers", "k", "Model"),
        value_columns=("Train NLL", "Test NLL", "Test − train"),
        rows=tuple(rows), folder=grid.fidelity, footnotes=tuple(footnotes))
