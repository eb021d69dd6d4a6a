"""`python -m benchmark oracle`: every case, suite side first (fast), then the authors' code in
float32 and float64 side by side, then the comparison; one record per case in results/oracle/
and a summary.

Working files (draws, snapshots) go to results/oracle/work/ and are removed once a case is
compared, unless --keep-work.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from benchmark.data import DataUnavailable
from benchmark.errors import UserError
from benchmark.oracle import continuation, datapath, lockstep
from benchmark.oracle.authors_run import Job, run_jobs
from benchmark.oracle.cases import Case, ContinuationCase, DataCase, LockstepCase
from benchmark.oracle.compare import Quantity
from benchmark.oracle.environment import oracle_env, oracle_python
from benchmark.oracle.records import write_case_record, write_summary
from benchmark.oracle.sources import fetch_authors_code
from benchmark.training import DataCache


def run_oracle(cases: Sequence[Case], data_dir: Path, results: Path, code_cache: Path,
               from_dir: Path | None, keep_work: bool = False, show_progress: bool = True
               ) -> dict[str, Any]:
    """Runs the cases and writes their records; returns the summary."""
    python = oracle_python()
    code_dir = fetch_authors_code(code_cache, from_dir)
    work = results / "work"
    work.mkdir(parents=True, exist_ok=True)
    theirs_data = datapath.authors_data_dir(data_dir, work / "authors-datasets")
    data = DataCache(data_dir, torch.device("cpu"))
    started = time.perf_counter()
    tasks: dict[str, list[dict]] = {"float32": [], "float64": []}
    prepared: list[Case] = []
    for case in tqdm(cases, desc="suite side", unit="case", disable=not show_progress):
        try:
            case_tasks = _prepare(case, data, work / case.id)
        except DataUnavailable as err:
            raise UserError(f"oracle case {case.id}: {err}") from err
        for float_type, more in case_tasks.items():
            tasks[float_type] += more
        prepared.append(case)
    suite_s = time.perf_counter() - started
    jobs = [Job(t, t, tasks[t], work / f"driver-{t}") for t in tasks if tasks[t]]
    with _AuthorsProgress(jobs, show_progress) as progress:
        run_jobs(python, oracle_env(), code_dir, theirs_data, jobs, progress)
    authors_s = time.perf_counter() - started - suite_s
    records = []
    for case in prepared:
        quantities, curve = _compare(case, data_dir, work / case.id)
        records.append(write_case_record(results, case, quantities, curve,
                                         _timings(work / case.id)))
        if not keep_work:
            shutil.rmtree(work / case.id, ignore_errors=True)
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return write_summary(results, records, {"suite_s": suite_s, "authors_s": authors_s,
                                            "total_s": time.perf_counter() - started})


def _prepare(case: Case, data: DataCache, folder: Path) -> dict[str, list[dict]]:
    if isinstance(case, LockstepCase):
        return lockstep.prepare(case, data, folder)
    if isinstance(case, ContinuationCase):
        return continuation.prepare(case, data, folder)
    return datapath.prepare(case, folder)


def _compare(case: Case, data_dir: Path, folder: Path) -> tuple[list[Quantity], list[dict]]:
    try:
        if isinstance(case, LockstepCase):
            return lockstep.compare(case, folder)
        if isinstance(case, ContinuationCase):
            return continuation.compare(case, folder)
        assert isinstance(case, DataCase)
        return datapath.compare(case, data_dir, folder), []
    except (RuntimeError, FileNotFoundError, KeyError) as err:  # their side failed: say so
        return [Quantity(case.id, "the authors' code ran", 1.0, 0.0, str(err))], []


def _timings(folder: Path) -> dict[str, float]:
    import json

    out = {}
    for result in folder.rglob("result.json"):
        try:
            value = json.loads(result.read_text()).get("wall_s")
        except (OSError, ValueError):
            continue
        if value is not None:
            out[str(result.parent.relative_to(folder))] = float(value)
    return out


class _AuthorsProgress:
    """One bar over every task of every job: steps for training, parts for the others."""

    def __init__(self, jobs: Sequence[Job], show: bool) -> None:
        self.totals: dict[tuple[str, int], tuple[int, int]] = {}
        for job in jobs:
            for i, task in enumerate(job.tasks):
                total = task.get("steps", 0) + task.get("continuation_steps", 0) or 3
                self.totals[(job.label, i)] = (0, total)
        self.bar = tqdm(total=sum(t for _, t in self.totals.values()), unit="step",
                        desc="authors' code (float32 + float64)", disable=not show,
                        smoothing=0.02)

    def __enter__(self) -> _AuthorsProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def __call__(self, label: str, event: dict[str, Any]) -> None:
        key = (label, int(event.get("task", -1)))
        if key not in self.totals:
            return
        done, total = self.totals[key]
        if event.get("event") == "progress":
            new = min(int(event["done"]) * total // max(int(event["total"]), 1), total)
        elif event.get("event") in ("done", "error"):
            new = total
        else:
            return
        self.bar.update(new - done)
        self.totals[key] = (new, total)
