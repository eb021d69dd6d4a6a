"""The result record on disk (results/<sweep>/<run-id>/result.json) and loading many of them.

Every record is read through benchmark.records.record_reader, which checks it against
record_schema (the types of the fields below, finite numbers, bounded strings, file names that
stay inside the run folder) before anything uses it: a refused record reads as None here, and
scan_results says why.

Schema (docs/result-record.md explains every field); optional keys are absent or null when not
applicable:

    {"run_id": str, "sweep": str | None,
     "config": {"data", "model", "k", "layers", "seed", "fidelity", "schedule", "stages",
                "epochs", "steps", "eval_k", "eval_n", "device", "init_from", "batch_size",
                "train_size", "test_binarization_seed",
                "estimator" | absent, and the objective's parameters by name (m, beta, ...)},
     "status": "complete" | "running" | "failed" | "unavailable",
     "reason": str | None,                       # why failed / unavailable
     "failure": {"step", "epoch", "reason"} | None,
     "progress": {"epochs", "epochs_planned", "epochs_total", "steps", "steps_planned", "stage",
                  "resumed_from": [the checkpoint step of every resume, in order]},
     "metrics": {"test_nll", "test_nll_se", "train_nll", "train_nll_se", "train_eval_n",
                 "active_units": [per layer, bottom first], "unit_variances": [[...], ...],
                 "test_nll_pruned", "eval_k", "eval_n",
                 "ais": {...} | absent,              # evaluate --ais: the headline evaluation
                 "ais_evaluations": {name: {...}},   #   every one, by name (see below)
                 "bdmc": {...} | absent},            # evaluate --bdmc
     "curves": "metrics.csv",
     "artifacts": {"test_loglik": "loglik_test.npy", "samples": "samples.npy",
                   "reconstructions": "reconstructions.npy"},
     "environment": {"package_version", "torch", "python", "device", "git_commit",
                     "dataset_sha256": {relpath: sha256},
                     "dataset_catalogue": "built-in" | path of a data folder's catalogue.json,
                     "execution": {"numerics": "exact" | "fast" | "mixed", "group_size", "threads",
                                   "compiled", "cuda_graphs", "tf32", "flush_denormal",
                                   "numerics_segments": [{"from_step", "numerics"}, ...]}},
     "timing": {"train_s", "eval_s"},
     "command": str,
     "plugin": {"objective", "module"} | absent}  # the objective came from a plugin

An AIS evaluation (benchmark.evaluation.ais_command) is {"name", "nll", "se", "n",
"intermediate", "chains", "leapfrog", "start", "batch", "seed", "schedule", "hmc": {...},
"acceptance": {"mean", "min_example", "max_example"}, "chain_se_mean", "bound_k", "bound_nll",
"bound_se", "bound_source", "gap", "gap_se", "below_bound", "seconds", "seconds_per_example",
"resumed_batches", "file"}: AIS on the seeded test subset beside L_k on the same examples, gap =
AIS - L_k in log-likelihood (nats); metrics.ais is the one with the most intermediate
distributions, then chains, then examples. metrics.bdmc is {"name", "simulated", "chains",
"leapfrog", "start", "batch", "seed", "schedule", "hmc", "rows": [{"intermediate", "lower",
"lower_se", "upper", "upper_se", "gap", "gap_se", "forward_acceptance", "reverse_acceptance",
"seconds"}, ...]}, log p(x) of the simulated examples (higher is better), one row per T.

`epochs_total` is always the full protocol's 3,280 epochs (2,187 for a Section 5.2 continuation), so
a cut run can never be mistaken for a reproduction; `epochs_planned` is where this run was asked to
stop. NLL values are positive nats (lower is better). `execution` says how the run was computed
(benchmark.training.execution), which its id does not: "mixed" numerics when a run was resumed with
other numerics than it started with, the segments saying which steps ran how ("unrecorded" for steps
checkpointed before segments were recorded). `threads` is the torch thread count the run was
started with and resumed with, always (matmuls round differently on another count).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.records.fileio import atomic_write_json
from benchmark.records.record_reader import read_record
from benchmark.records.record_schema import RESULT_FILE, STATUSES
from benchmark.records.run_folder import RecordError, find_files


def write_result(run_dir: Path, record: dict[str, Any]) -> None:
    if record.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {record.get('status')!r}")
    atomic_write_json(Path(run_dir) / RESULT_FILE, record)


def load_result(run_dir: Path) -> dict[str, Any] | None:
    """The record of one run, or None when the run has none yet or it is not a readable record:
    cut short, not UTF-8, not a JSON object, not a file, or refused by the validating reader
    (benchmark.records.record_reader; the report lists those with the reason)."""
    try:
        return read_record(Path(run_dir))
    except RecordError:
        return None


def scan_results(results_dir: Path) -> tuple[list[tuple[Path, dict[str, Any]]],
                                             list[tuple[Path, str]]]:
    """Every record below results_dir, in a stable order: (run_dir, record) of those that read,
    and (run_dir, why) of those refused."""
    records, refused = [], []
    for path in find_files(Path(results_dir), RESULT_FILE):
        try:
            records.append((path.parent, read_record(path.parent)))
        except RecordError as err:
            refused.append((path.parent, str(err)))
    return records, refused


def iter_results(results_dir: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every (run_dir, record) below results_dir that reads, in a stable order."""
    yield from scan_results(results_dir)[0]


def flatten_record(record: dict[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """One flat row: config.* and metrics.* lifted to the top, lists kept as lists."""
    row: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "sweep": record.get("sweep"),
        "status": record.get("status"),
        "reason": record.get("reason"),
        "run_dir": str(run_dir) if run_dir is not None else None,
    }
    for section in ("config", "metrics", "progress", "timing"):
        for key, value in (record.get(section) or {}).items():
            row[f"{section}.{key}" if section in ("progress", "timing") else key] = value
    return row


def load_results_frame(results_dir: Path) -> pd.DataFrame:
    """All records under results_dir as a DataFrame, one row per run."""
    rows = [flatten_record(rec, run_dir) for run_dir, rec in iter_results(results_dir)]
    return pd.DataFrame(rows)
