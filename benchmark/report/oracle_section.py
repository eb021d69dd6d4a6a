"""The report's "Fidelity to the authors' code" section, from the oracle's summary record
(results/<...>/oracle/summary.json, written by `python -m benchmark oracle`), when there is one."""

from __future__ import annotations

from pathlib import Path

from benchmark.records import read_json
from benchmark.report.html import Section
from benchmark.report.tableio import Cell, ReportTable

SUMMARY = Path("oracle") / "summary.json"


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
                    "their own code (their float32 against their float64 run).",
        index_columns=("Quantity",),
        value_columns=("Cases", "Measured", "Tolerance", "Verdict", "Closest case"),
        rows=tuple(rows))


def oracle_section(results_dir: Path) -> tuple[Section, ReportTable] | None:
    path = Path(results_dir) / SUMMARY
    if not path.exists():
        return None
    summary = read_json(path)
    table = oracle_table(summary)
    verdict = ("every quantity within its tolerance" if summary["holds"]
               else "some quantities beyond their tolerance")
    intro = (f"{len(summary['cases'])} oracle cases ({verdict}); rerun with `make oracle`. "
             f"Suite commit {summary.get('suite_commit')}.")
    return Section("oracle", "Fidelity to the authors' code", intro, tables=(table,)), table


def _number(x: float) -> str:
    if x == float("inf"):
        return "-"
    return f"{int(x)}" if float(x).is_integer() else f"{x:.1e}"
