"""metrics.csv: one row per evaluation point of a run's learning curve."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from benchmark.records.fileio import atomic_write_text

CURVES_FILE = "metrics.csv"


@dataclass(frozen=True)
class CurveRow:
    epoch: float
    step: int
    stage: int
    lr: float
    train_bound_nll: float  # -(mean training bound) over the steps since the previous row
    test_nll_subset: float  # -L_k on a small fixed random test subset
    subset_k: int
    subset_n: int
    seconds: float  # optimizer-step seconds so far

    def as_dict(self) -> dict:
        return asdict(self)


def write_curves(run_dir: Path, rows: list[CurveRow]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[f.name for f in fields(CurveRow)])
    writer.writeheader()
    for row in rows:
        writer.writerow(row.as_dict())
    atomic_write_text(Path(run_dir) / CURVES_FILE, out.getvalue())
