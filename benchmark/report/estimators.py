"""The estimators comparison: test NLL and active units per objective and k on Burda's protocol,
beside the published values where they exist (each from another protocol, named with its
source), and the gradient SNR diagnostics found under the results folder.

Rows come from the runs present and from the published cells, so a published value without a
run shows as "not run"; the paper's VAE and IWAE rows carry Table 1's values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmark.definitions import (
    is_plugin,
    listing_order,
    objective_label,
    paper_objectives,
    samples_factor,
    snr_names,
)
from benchmark.records import read_json
from benchmark.report.published import EstimatorCell, Published
from benchmark.report.runs import Run, data_label
from benchmark.report.summary import Reference, summarize
from benchmark.report.tableio import Cell, ReportTable
from benchmark.report.tables import nll_cell, units_cell

SNR_FILE = "snr.json"
NETWORK_NAMES = {"encoder": "inference (q)", "decoder": "generative (p)"}

Key = tuple  # (data, layers, model, k, estimator, params)
PLUGIN_MARK = " (plugin: not part of the suite)"


def _samples(key: Key) -> int:
    _, _, model, k, _, params = key
    return k * samples_factor(model, params)


def _order(key: Key) -> tuple:
    data, layers, model, k, estimator, params = key
    return (data or "", layers or 0, *listing_order(model, k, estimator, params))


def _label(key: Key) -> str:
    _, _, model, k, estimator, params = key
    return objective_label(model, k, estimator, params) + (PLUGIN_MARK if is_plugin(model)
                                                           else "")


def estimator_rows(runs: Sequence[Run], published: Published) -> list[Key]:
    """Every objective to list: those run (first stages only) and those published."""
    keys = {r.objective_key for r in runs if not r.is_continuation and r.model is not None
            and r.k is not None}
    keys |= {c.key for c in published.estimators}
    return sorted(keys, key=_order)


def _reference(key: Key, published: Published) -> tuple[Reference | None, str | None]:
    """The published value a row compares with and its footnote text, or (None, None)."""
    data, layers, model, k, estimator, params = key
    cell: EstimatorCell | None = published.estimator_cell(key)
    if cell is not None:
        note = (f"{cell.cite()}. Protocol: {cell.protocol}. How it differs from this suite's: "
                f"{cell.differences}.")
        if cell.spread is not None:
            note += f" Quoted spread ±{cell.spread:.2f}."
        return Reference(cell.nll, (), cell.cite()), note
    if model in paper_objectives() and estimator is None and not params:
        paper = published.cell(data, layers, k, model)
        if paper is not None:
            note = (f"{paper.source.cite()}: the paper's own run, the protocol this suite "
                    f"follows.")
            return Reference(paper.nll, paper.active_units, paper.source.cite()), note
    return None, None


@dataclass(frozen=True)
class SourceNotes:
    """Footnotes numbered in order of first use."""

    texts: list[str]

    def mark(self, text: str) -> int:
        if text not in self.texts:
            self.texts.append(text)
        return self.texts.index(text) + 1


def estimators_table(runs: Sequence[Run], published: Published, fidelity: str
                     ) -> ReportTable:
    mine = [r for r in runs if r.fidelity == fidelity and not r.is_continuation]
    notes = SourceNotes([])
    rows = []
    for key in estimator_rows(mine, published):
        cell_runs = [r for r in mine if r.objective_key == key]
        reference, note = _reference(key, published)
        nll = nll_cell(summarize(cell_runs, reference, published.noise))
        if note is not None:
            nll = replace(nll, notes=(*nll.notes, f"published value: source [{notes.mark(note)}]"))
        with_units = reference if reference is not None and reference.active_units else None
        units = units_cell(summarize(cell_runs, with_units, published.noise))
        data, layers = key[0], key[1]
        rows.append(((data_label(data), str(layers), str(_samples(key)), _label(key)),
                     (nll, units)))
    footnotes = tuple(f"[{i}] {text}" for i, text in enumerate(notes.texts, start=1))
    footnotes += (
        "Verdicts only for complete runs of the full protocol (3,280 epochs, L_5000), with the "
        "tolerance of Tables 1-3. Published values other than the paper's come from other "
        "protocols (see each source): a difference there may be the protocol's, not the "
        "objective's.",
        "Published values are reference data, never measurements of this suite.",
    )
    return ReportTable(
        name="estimators",
        title=f"Objectives and estimators on Burda's protocol (fidelity {fidelity})",
        description="Test NLL (nats, L_5000) and active units per objective and number of "
                    "importance samples per example (k, or M x K), beside the published value "
                    "where one exists.",
        index_columns=("Dataset", "Layers", "Samples", "Objective"),
        value_columns=("Test NLL", "Active units"),
        rows=tuple(rows), folder=fidelity, footnotes=footnotes)


# --- gradient SNR diagnostics --------------------------------------------------------------------

@dataclass(frozen=True)
class SnrRecord:
    folder: Path  # where snr.json (and snr.png) live
    record: dict

    @property
    def where(self) -> str:
        source = self.record.get("source") or {}
        if "run_id" in source:
            return f"{source['run_id']} at step {source.get('step')}"
        return f"initialisation ({source.get('initialisation', '?')})"

    def png(self) -> bytes | None:
        try:
            return (self.folder / "snr.png").read_bytes()
        except OSError:
            return None


def find_snr_records(results_dir: Path) -> list[SnrRecord]:
    """Every gradient SNR record under the results folder, in path order."""
    found = []
    for path in sorted(Path(results_dir).glob(f"**/{SNR_FILE}")):
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("kind") == "gradient_snr":
            found.append(SnrRecord(path.parent, record))
    return found


def snr_table(snr: SnrRecord, index: int) -> ReportTable:
    record = snr.record
    ks = sorted({r["k"] for r in record.get("results", [])})
    slopes = {(s["estimator"], s["network"]): s for s in record.get("slopes", [])}
    lines: dict[tuple[str, str], dict[int, dict]] = {}
    for r in record.get("results", []):
        lines.setdefault((r["estimator"], r["network"]), {})[r["k"]] = r
    rows = []
    for (estimator, network), by_k in lines.items():
        cells = []
        for k in ks:
            r = by_k.get(k)
            cells.append(Cell(value=f"{r['median']:.3g}", status=f"[{r['q1']:.3g}, "
                                                               f"{r['q3']:.3g}]")
                         if r else Cell(value="–"))
        cells.append(slope_cell(slopes.get((estimator, network))))
        rows.append(((snr_names().get(estimator, estimator),
                      NETWORK_NAMES.get(network, network)), tuple(cells)))
    minibatch = record.get("minibatch", {})
    return ReportTable(
        name=f"snr_{index}",
        title=f"Gradient SNR: {snr.where}",
        description=f"Median over each network's parameter coordinates of |mean| / sd of the "
                    f"gradient estimate, from {record.get('draws')} independent draws on a fixed "
                    f"minibatch of {minibatch.get('n')} training images (quartiles below the "
                    f"median); slope: least-squares exponent a of SNR ~ K^a, with its "
                    f"confidence interval below it where the record has one.",
        index_columns=("Estimator", "Network"),
        value_columns=(*(f"K={k}" for k in ks), "Slope"),
        rows=tuple(rows),
        footnotes=(f"Excluded coordinates: {record.get('exclusion_rule')}.",
                   f"Expected shape: {record.get('expected')}",
                   *prediction_footnotes(record),
                   *regime_footnotes(record.get("weights")),
                   f"Each sd carries a relative standard error of about "
                   f"{record.get('std_relative_error', float('nan')):.1%} from the number of "
                   f"draws.",
                   *noise_floor_footnotes(record),
                   *agreement_footnotes(record)))


def agreement_footnotes(record: dict) -> tuple[str, ...]:
    """Records written before the diagnostic tested the estimators' means say so (the others
    have a table of their own: means_table)."""
    if record.get("agreement") is None:
        return ("Estimator means: not checked against IWAE's in this record (rerun diagnose "
                "--snr).",)
    return ()


def means_table(snr: SnrRecord, index: int) -> ReportTable | None:
    """Whether each estimator's mean gradient is IWAE's, per K, beside what the literature
    says; None for records without the test."""
    agreement = snr.record.get("agreement")
    if not agreement or not agreement.get("rows"):
        return None
    ks = sorted({r["k"] for r in agreement["rows"]})
    lines: dict[tuple[str, str], dict[int, dict]] = {}
    for r in agreement["rows"]:
        lines.setdefault((r["estimator"], r["network"]), {})[r["k"]] = r
    rows = []
    for (estimator, network), by_k in lines.items():
        cells = tuple(means_cell(by_k.get(k)) for k in ks)
        rows.append(((snr_names().get(estimator, estimator),
                      NETWORK_NAMES.get(network, network)), cells))
    return ReportTable(
        name=f"snr_means_{index}",
        title=f"Do the estimators' means match IWAE's? {snr.where}",
        description="On the draws of the SNR table above: per K, whether the estimator's mean "
                    "gradient differs from IWAE-K's (the test's reading; below it its p-value "
                    "and what the literature expects: Tucker et al. 2018, DReG unbiased, STL "
                    "biased for K > 1; every decoder row is IWAE's own estimator drawn twice, a "
                    "control).",
        index_columns=("Estimator", "Network"),
        value_columns=tuple(f"K={k}" for k in ks),
        rows=tuple(rows),
        footnotes=(f"Test: {agreement['rule']}.",))


def means_cell(row: dict | None) -> Cell:
    """The test's reading; below it the p-value and what the literature expects (the share of
    coordinates whose own z passes 5% stays in the record and the terminal: descriptive only)."""
    if row is None:
        return Cell(value="–")
    expects = "expects same" if row["expected"].startswith("same") else "expects bias"
    if row.get("test") is None:
        return Cell(value="too few draws", status=expects)
    value = row["reading"] + ("" if row["as_expected"] else " (not as expected)")
    return Cell(value=value, status=f"p = {row['test']['p']:.2g}; {expects}")


def noise_floor_footnotes(record: dict) -> tuple[str, ...]:
    floor = record.get("noise_floor")
    if floor is None:
        return ()
    return (f"Noise floor: a coordinate whose gradient has mean 0 shows a median SNR of "
            f"{floor:.3g} from {record.get('draws')} draws; medians near it are mostly noise.",)


def slope_cell(slope: dict | None) -> Cell:
    if slope is None:
        return Cell(value="–")
    interval = slope.get("interval")
    # three decimals: the slopes of trained checkpoints are a few hundredths
    status = (f"[{interval[0]:+.3f}, {interval[1]:+.3f}] {slope['trend']}" if interval
              else "")
    return Cell(value=f"{slope['slope']:+.3f}", status=status)


def prediction_footnotes(record: dict) -> tuple[str, ...]:
    """Each published prediction against this record's slope (records written before the
    slopes had intervals say so)."""
    checks = record.get("predictions")
    if checks is None:
        return ("Predictions: not checked in this record (its slopes have no intervals; rerun "
                "diagnose --snr).",)
    lines = []
    for check in checks:
        what = (f"{snr_names().get(check['estimator'], check['estimator'])} "
                f"{NETWORK_NAMES.get(check['network'], check['network'])}: SNR "
                f"{check['predicted']} with K ({check['source']})")
        if check.get("interval") is None:
            lines.append(f"Prediction, {what}: slope {check['slope']:+.3f}, no interval.")
            continue
        low, high = check["interval"]
        lines.append(f"Prediction, {what}: measured {check['slope']:+.3f} "
                     f"[{low:+.3f}, {high:+.3f}], {check['trend']}: "
                     f"{'holds' if check['holds'] else 'does not hold'}.")
    return tuple(lines)


def regime_footnotes(weights: dict | None) -> tuple[str, ...]:
    """The record's effective-sample-size line (records written before it was measured have
    none: then the report says that the regime is unknown)."""
    if not weights:
        return ("Regime: not measured in this record (rerun diagnose --snr to measure the "
                "effective sample size of the weights).",)
    return (f"Regime: {weights['summary']}.", f"ESS: {weights['rule']}.")
