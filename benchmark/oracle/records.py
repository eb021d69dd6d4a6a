"""results/oracle/: one record per case (<case>.json: every quantity with its measured
difference, tolerance and verdict, and the lockstep curve) and summary.json / summary.txt, the
one-screen table `make oracle` prints."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmark.oracle.cases import Case
from benchmark.oracle.compare import LINEAR_LIMIT, ROUNDING_FACTOR, Quantity
from benchmark.oracle.sources import COMMIT
from benchmark.records import atomic_write_json, atomic_write_text, git_commit

SUMMARY_JSON = "summary.json"
SUMMARY_TEXT = "summary.txt"


def write_case_record(results: Path, case: Case, quantities: Sequence[Quantity],
                      curve: list[dict], timings: dict[str, float]) -> dict[str, Any]:
    record = {"case": case.id, "kind": type(case).__name__, "spec": asdict(case),
              "holds": all(q.holds for q in quantities),
              "quantities": [q.as_dict() for q in quantities], "curve": curve,
              "timings_s": timings}
    atomic_write_json(results / f"{case.id}.json", json_safe(record))
    return record


def json_safe(obj: Any) -> Any:
    """obj with every non-finite float as None: JSON has no infinity, and a quantity that could
    not be measured (arrays missing or of another shape) is infinitely far off; its verdict
    already says DIFFERS."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {key: json_safe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    return obj


def write_summary(results: Path, records: Sequence[dict], timings: dict[str, float]
                  ) -> dict[str, Any]:
    rows = summary_rows(records)
    summary = {"authors_commit": COMMIT, "suite_commit": git_commit(),
               "rounding_factor": ROUNDING_FACTOR, "cases": [r["case"] for r in records],
               "holds": all(r["holds"] for r in records), "rows": rows, "timings_s": timings}
    atomic_write_json(results / SUMMARY_JSON, json_safe(summary))
    atomic_write_text(results / SUMMARY_TEXT, format_summary(summary))
    return summary


def summary_rows(records: Sequence[dict]) -> list[dict[str, Any]]:
    """Per quantity (grouped over cases): the case closest to its tolerance, and the verdict."""
    groups: dict[str, list[dict]] = {}
    for record in records:
        for q in record["quantities"]:
            groups.setdefault(_group(q["name"]), []).append(q)
    rows = []
    for name, qs in groups.items():
        tight = max(qs, key=lambda q: _ratio(q))
        rows.append({"quantity": name, "cases": len(qs), "measured": tight["measured"],
                     "tolerance": tight["tolerance"], "worst_case": tight["case"],
                     "verdict": "agrees" if all(q["verdict"] == "agrees" for q in qs)
                     else "DIFFERS", "failing": [q["case"] for q in qs
                                                 if q["verdict"] != "agrees"]})
    return rows


def _group(name: str) -> str:
    return name.split(", steps ")[0]


def _ratio(q: dict) -> float:
    if q["verdict"] != "agrees":
        return float("inf")
    return q["measured"] / q["tolerance"] if q["tolerance"] not in (0, float("inf")) else 0.0


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"Fidelity to the authors' code (github:yburda/iwae {COMMIT[:7]}): "
             f"{len(summary['cases'])} cases; tolerance = {summary['rounding_factor']:g} x what "
             "float32 rounding makes of the side that rounds more (each side's float32 against "
             "its float64 run); float64 runs: 2^-23 of that, while float32 rounding is below "
             f"{LINEAR_LIMIT:g}",
             f"{'quantity':<52} {'cases':>5} {'measured':>10} {'tolerance':>10}  verdict"]
    for row in summary["rows"]:
        lines.append(f"{row['quantity'][:52]:<52} {row['cases']:>5} {_num(row['measured']):>10} "
                     f"{_num(row['tolerance']):>10}  {row['verdict']}"
                     + (f" ({', '.join(row['failing'][:3])})" if row["failing"] else ""))
    verdict = "all quantities within tolerance" if summary["holds"] else "SOME DIFFER"
    lines.append(f"{verdict}; {summary['timings_s']['total_s'] / 60:.1f} min")
    return "\n".join(lines) + "\n"


def _num(x: float) -> str:
    if x == float("inf"):
        return "-"
    if x == int(x) and abs(x) < 1e6:
        return f"{int(x)}"
    return f"{x:.1e}"


def load_summary(results: Path) -> dict[str, Any] | None:
    path = results / SUMMARY_JSON
    return json.loads(path.read_text()) if path.exists() else None
