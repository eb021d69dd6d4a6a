"""The report's "Fidelity to the authors' code" section, from the oracle's records when there
are any: the lockstep summary (results/<...>/oracle/summary.json, `python -m benchmark oracle`)
and the independent comparison (independent.json and independent-spread.json,
`python -m benchmark oracle --independent [--spread ...]`)."""

from __future__ import annotations

from pathlib import Path

from benchmark.records import read_json
from benchmark.report.html import Section
from benchmark.report.tableio import Cell, ReportTable

SUMMARY = Path("oracle") / "summary.json"
INDEPENDENT = Path("oracle") / "independent.json"
SPREAD = Path("oracle") / "independent-spread.json"


def oracle_table(summary: dict) -> ReportTable:
    rows = []
    for row in summary["rows"]:
        failing = ", ".join(row["failing"])
        rows.append(((row["quantity"],), (
            Cell(value=str(row["cases"])), Cell(value=_number(row["measured"])),
            Cell(value=_number(row["tolerance"])),
            Cell(value=row["verdict"] + (f" ({failing})" if failing else "")),
            Cell(value=row["worst_case"]))))
    return ReportTable(
        name="oracle", title="Fidelity to the authors' code",
        description="The suite and the authors' released code (github:yburda/iwae "
                    f"{summary['authors_commit'][:7]}) trained in lockstep on the same random "
                    "draws; differences are max-norm relative unless the quantity says "
                    "otherwise; the tolerance is "
                    f"{summary['rounding_factor']:g} x what float32 rounding alone makes of "
                    "the side that rounds more (each side's float32 run against its float64 "
                    "run on the same draws); the two float64 runs must agree 2^-23 times more "
                    "closely.",
        index_columns=("Quantity",),
        value_columns=("Cases", "Measured", "Tolerance", "Verdict", "Closest case"),
        rows=tuple(rows))


def independent_table(summary: dict) -> ReportTable:
    rows = []
    for r in summary["rows"]:
        half = r.get("prediction_half_width")
        authors = r.get("authors_nll")
        rows.append(((r["case"], str(r["steps"])), (
            Cell(value="-" if authors is None else f"{authors:.2f}"),
            Cell(value=" / ".join(f"{v:.2f}" for v in r["suite_nll"])),
            Cell(value=f"{r['suite_mean']:.2f} +- {r['suite_sd']:.2f}"),
            Cell(value="-" if half is None else f"{r['suite_mean'] - half:.2f} - "
                                                 f"{r['suite_mean'] + half:.2f}"),
            Cell(value=f"{r['eval_k']} x {r['eval_n']}"),
            Cell(value=r["verdict"] + ("" if r.get("same_test_set", True)
                                       else " (different test sets)")))))
    return ReportTable(
        name="oracle_independent", title="Independent runs: the authors' code against the "
        "suite's seeds",
        description="Each side trains with its own random stream (their code at its seed 123, "
                    "the suite at seeds 0..S-1); both are scored by L_k on one binary test set "
                    "(the suite's seeded subset, binarized once; what each side scored is "
                    f"checked by hash). NLL in nats. Rule: {summary['rule']}.",
        index_columns=("Configuration", "Steps"),
        value_columns=("Authors' NLL", "Suite NLL per seed", "Suite mean +- sd",
                       "95% prediction interval", "k x images", "Verdict"),
        rows=tuple(rows))


def spread_table(spread: dict) -> ReportTable:
    rows = tuple(((r["case"], f"{r['epochs']:g}"), (
        Cell(value=str(len(r["seeds"]))), Cell(value=f"{r['suite_mean']:.2f}"),
        Cell(value=f"{r['suite_sd']:.2f}"),
        Cell(value=" / ".join(f"{v:.2f}" for v in r["suite_nll"]))))
        for r in spread["rows"])
    notes = []
    for case, est in spread["estimates"].items():
        if est is not None and est["epochs_for_target"] is not None:
            notes.append(f"{case}: sd ~ {est['sd_at_1_epoch']:.2f} x epochs^-"
                         f"{est['exponent']:.2f}, below {est['target']} nats from about "
                         f"{est['epochs_for_target']:.1f} epochs (power law fitted to these "
                         "lengths).")
    return ReportTable(
        name="oracle_spread", title="Spread of the suite's seeds against the training length",
        description="The suite's side only: its seeds trained once and scored (L_k, the same "
                    "test subset) at each length; how long independent runs must be for seeds "
                    "to agree within the target.",
        index_columns=("Configuration", "Epochs"),
        value_columns=("Seeds", "Mean NLL", "sd", "NLL per seed"), rows=rows,
        footnotes=tuple(notes))


def oracle_section(results_dir: Path) -> tuple[Section, list[ReportTable]] | None:
    paths = [Path(results_dir) / p for p in (SUMMARY, INDEPENDENT, SPREAD)]
    if not any(p.exists() for p in paths):
        return None
    tables, intro = [], []
    if paths[0].exists():
        summary = read_json(paths[0])
        tables.append(oracle_table(summary))
        verdict = ("every quantity within its tolerance" if summary["holds"]
                   else "some quantities beyond their tolerance")
        intro.append(f"{len(summary['cases'])} oracle cases ({verdict}); rerun with "
                     f"`make oracle`. Suite commit {summary.get('suite_commit')}.")
    if paths[1].exists():
        independent = read_json(paths[1])
        tables.append(independent_table(independent))
        verdicts = [r["verdict"] for r in independent["rows"]]
        intro.append(f"Independent runs: {verdicts.count('consistent')} of {len(verdicts)} "
                     "configurations consistent with the suite's seeds; rerun with "
                     "`make oracle-independent`.")
    if paths[2].exists():
        tables.append(spread_table(read_json(paths[2])))
    return Section("oracle", "Fidelity to the authors' code", " ".join(intro),
                   tables=tuple(tables)), tables


def _number(x: float | None) -> str:
    if x is None or x == float("inf"):  # None: not measurable, written as null (json_safe)
        return "-"
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1e}"
