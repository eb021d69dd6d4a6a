"""Where the numbers came from: code versions, environments, data checksums, settings, timing.

Values the runs recorded are tallied rather than assumed equal, so a report mixing two commits
or two torch versions says so instead of printing whichever came first.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import benchmark
from benchmark.records import git_commit
from benchmark.report.runs import Run
from benchmark.report.tableio import Cell, ReportTable

ENVIRONMENT_FIELDS = (("package_version", "package version"), ("git_commit", "git commit"),
                      ("torch", "torch"), ("python", "python"), ("device", "device"),
                      ("dataset_catalogue", "dataset checksums from"))
EXECUTION_FIELDS = (("numerics", "numerics (exact / fast / mixed)"), ("tf32", "TF32 matmuls"),
                    ("group_size", "runs trained per group"))
CONFIG_FIELDS = (("fidelity", "fidelity"), ("schedule", "schedule"), ("seed", "seed"),
                 ("eval_k", "evaluation k"))


@dataclass(frozen=True)
class ReportOrigin:
    """The code that wrote this report (as opposed to the code that trained the runs)."""

    package_version: str
    git_commit: str
    torch_version: str
    command: str


def installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def regenerate_command(results_dir: Path, out_dir: Path, grid: str | None = None) -> str:
    grid_args = ["--grid", grid] if grid else []
    return shlex.join(["python", "-m", "benchmark", "report", "--results", str(results_dir),
                       *grid_args, "--out", str(out_dir)])


def report_origin(results_dir: Path, out_dir: Path, grid: str | None = None) -> ReportOrigin:
    return ReportOrigin(benchmark.__version__,
                        git_commit() or "unknown (not a git checkout, or no commit yet)",
                        installed_version("torch"),
                        regenerate_command(results_dir, out_dir, grid))


def tally(values: Sequence[object]) -> str:
    """'a (3 runs), b (1 run)'; one value shown alone when every run agrees."""
    counts = Counter(str(v) for v in values if v is not None and v != "")
    if not counts:
        return "not recorded"
    if len(counts) == 1:
        value, n = next(iter(counts.items()))
        return f"{value} ({n} runs)" if n > 1 else f"{value} (1 run)"
    return ", ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in counts.most_common())


def provenance_table(runs: Sequence[Run], origin: ReportOrigin) -> ReportTable:
    rows: list[tuple[tuple[str, ...], tuple[Cell, ...]]] = [
        (("report: package version",), (Cell(value=origin.package_version),)),
        (("report: git commit",), (Cell(value=origin.git_commit),)),
        (("report: torch",), (Cell(value=origin.torch_version),)),
        (("report: regenerate with",), (Cell(value=origin.command),)),
    ]
    for key, label in ENVIRONMENT_FIELDS:
        values = [r.environment.get(key) for r in runs if r.status != "unavailable"]
        rows.append(((f"runs: {label}",), (Cell(value=tally(values)),)))
    for key, label in EXECUTION_FIELDS:
        values = [(r.environment.get("execution") or {}).get(key) for r in runs
                  if r.status != "unavailable"]
        rows.append(((f"runs: {label}",), (Cell(value=tally(values)),)))
    for key, label in CONFIG_FIELDS:
        rows.append(((f"runs: {label}",), (Cell(value=tally([r.config.get(key) for r in runs])),)))
    minutes = [r.minutes for r in runs if r.minutes is not None]
    total = f"{sum(minutes):,.0f} minutes over {len(minutes)} runs" if minutes else "not recorded"
    rows.append((("runs: compute time",), (Cell(value=total),)))
    return ReportTable(name="provenance", title="Provenance",
                       description="The report's own code, and what the runs recorded.",
                       index_columns=("Item",), value_columns=("Value",), rows=tuple(rows))


def dataset_checksums(runs: Sequence[Run]) -> dict[str, Counter]:
    """file -> Counter of the sha256 values runs recorded for it (two values: a conflict)."""
    found: dict[str, Counter] = {}
    for run in runs:
        for path, digest in (run.environment.get("dataset_sha256") or {}).items():
            found.setdefault(path, Counter())[digest] += 1
    return found


def checksum_table(runs: Sequence[Run]) -> ReportTable:
    rows = []
    for path, digests in sorted(dataset_checksums(runs).items()):
        for digest, n in digests.most_common():
            status = "" if len(digests) == 1 else "conflict: runs saw different files"
            rows.append(((path,), (Cell(value=digest, status=status), Cell(value=str(n)))))
    return ReportTable(name="datasets", title="Dataset checksums",
                       description="SHA-256 of the dataset files, as the runs recorded them.",
                       index_columns=("File",), value_columns=("SHA-256", "Runs"),
                       rows=tuple(rows))
