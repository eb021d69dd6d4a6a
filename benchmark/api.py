"""The suite from Python: what a notebook needs, each name a thin layer over the stage that does
the work (the command line calls the same functions).

    import benchmark

    config = benchmark.RunConfig(data="mnist-dynamic", model="iwae", k=5, layers=1,
                                 schedule="smoke")
    run = benchmark.train(config, out="results/runs/demo")       # train and evaluate one run
    benchmark.evaluate(run, k=1000, n=500)                        # L_1000 on 500 test images
    benchmark.sweep("table1", schedule="smoke", data=["mnist-dynamic"])   # a grid of runs
    frame = benchmark.load_results("results")                     # one row per run
    benchmark.build_report("results", grid="table1")              # reports/results/index.html

Paths may be str or Path. data_dir defaults to $IWAE_DATA_DIR, else datasets/; nothing here
downloads data (fetch it first: `python -m benchmark fetch`). Errors a user can cause raise
benchmark.errors.UserError with one line that says what to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.config import RunConfig, default_data_dir, run_id
from benchmark.data import BinarizedTestSet
from benchmark.definitions import ObjectiveDefinition, Parameter, PublishedValue
from benchmark.errors import UserError
from benchmark.evaluation import evaluate_run, evaluate_run_ais, evaluate_run_bdmc
from benchmark.evaluation import score_binarizations as score_run_binarizations
from benchmark.plugins import load_plugins
from benchmark.records import load_result, load_results_frame, resolve_device
from benchmark.report import build_report as build_html_report
from benchmark.sweeps import SweepReport, score_grid, sweep_grid, sweep_options
from benchmark.training import ExecutionOptions, train_run

__all__ = ["ObjectiveDefinition", "Parameter", "PublishedValue", "Run", "RunConfig",
           "SweepReport", "ais", "bdmc", "build_report", "evaluate", "load_objectives",
           "load_results", "score_binarizations", "sweep", "train"]

PathLike = str | os.PathLike[str]


def _data_dir(data_dir: PathLike | None) -> Path:
    return Path(data_dir) if data_dir is not None else default_data_dir()


@dataclass(frozen=True)
class Run:
    """A run directory and its result record (result.json; docs/result-record.md)."""

    dir: Path
    record: dict[str, Any]

    @classmethod
    def load(cls, run_dir: PathLike) -> Run:
        record = load_result(Path(run_dir))
        if record is None:
            raise UserError(f"{run_dir} holds no readable result.json; is it a run directory?")
        return cls(Path(run_dir), record)

    @property
    def run_id(self) -> str | None:
        return self.record.get("run_id")

    @property
    def status(self) -> str:
        """complete, running, failed or unavailable."""
        return self.record["status"]

    @property
    def metrics(self) -> dict[str, Any]:
        """test_nll, test_nll_se, train_nll, active_units, test_nll_pruned, eval_k, eval_n..."""
        return self.record.get("metrics") or {}


def _run_dir(run: Run | PathLike) -> Path:
    return run.dir if isinstance(run, Run) else Path(run)


def load_objectives(*plugins: PathLike) -> tuple[str, ...]:
    """Register the objectives of plugins (a .py file or an importable module holding
    OBJECTIVES; docs/objectives.md) and return their names. Runs then take model=<name> and
    params={...}; sweeps hand the plugins to their workers (local processes and Ray)."""
    return load_plugins([str(p) for p in plugins])


def train(config: RunConfig, *, out: PathLike | None = None, data_dir: PathLike | None = None,
          numerics: str = "exact", show_progress: bool = True) -> Run:
    """Train and evaluate one run (resumed from its newest checkpoint when `out` already holds
    it; returned as recorded when it is complete). out defaults to results/runs/<run id>.
    numerics "exact" is the reference arithmetic, "fast" fused kernels within float rounding
    of it. The run's status may be "failed": read run.status and run.record["reason"]."""
    rid = run_id(config)
    run_dir = Path(out) if out is not None else Path("results") / "runs" / rid
    record = train_run(config, run_dir, _data_dir(data_dir), run_id=rid,
                       show_progress=show_progress,
                       options=ExecutionOptions(numerics=numerics))
    return Run(run_dir, record)


def sweep(grid: str, *, schedule: str = "full", fidelity: str = "code",
          data: Sequence[str] | None = None, seeds: int = 1, cells: Sequence[str] | None = None,
          results: PathLike = "results", data_dir: PathLike | None = None,
          executor: str = "local", workers: int | None = None, device: str = "auto",
          numerics: str = "exact", steps: int | None = None, epochs: float | None = None,
          stages: int | None = None, eval_k: int | None = None, eval_n: int | None = None,
          group: bool = True, tests: Sequence[str] = (), stage_k: int | None = None
          ) -> SweepReport:
    """Train every run of a grid (table1, binarization, binarization-causes, table2, estimators)
    that is not complete yet, under results/<sweep>/<run id>/, on a local process pool
    (executor "ray": on Ray). data: a subset of the grid's data conditions; cells: cells as
    in a run id (vae_k1_L1, iwae_k50_L2; in the estimators grid iwae-dreg_k5, miwae_m8_k8).
    tests (e.g. ["lm", "dynamic"]): then score every complete MNIST run on those test
    binarizations and its training images, and with stage_k at every stage end too
    (docs/data.md). report.ok says whether every selected run
    completed (and was scored); report.summary_line() says how each ended."""
    if stage_k is not None and not tests:
        raise UserError("stage_k scores the stage snapshots on the test binarizations: "
                        "name them too, e.g. tests=['lm', 'dynamic']")
    options = sweep_options(schedule=schedule, fidelity=fidelity, data=data, seeds=seeds,
                            cells=cells, device=device, stages=stages, epochs=epochs,
                            steps=steps, eval_k=eval_k, eval_n=eval_n)
    report = sweep_grid(grid, options, Path(results), _data_dir(data_dir), executor=executor,
                        workers=workers, group=group,
                        execution=ExecutionOptions(numerics=numerics))
    if tests:
        failures = score_grid(grid, options, Path(results), _data_dir(data_dir), tests, stage_k,
                              workers)
        report.failed.update({label: f"not scored on the test binarizations: {why}"
                              for label, why in failures.items()})
    return report


def evaluate(run: Run | PathLike, *, k: int = 5000, n: int | None = None, split: str = "test",
             data_dir: PathLike | None = None, device: str = "auto",
             show_progress: bool = True) -> dict[str, Any]:
    """L_k of a run's newest checkpoint on a seeded subset of n test images (None: all), or of
    its training images with split="train". Returns {"split", "k", "n", "nll", "se",
    "seconds"} (NLL in positive nats) and saves it with the per-example values under
    RUN_DIR/evaluations/. For the binarizations of the MNIST test images use
    score_binarizations; for AIS and BDMC, ais and bdmc."""
    return evaluate_run(_run_dir(run), k=k, n=n, split=split, data_dir=_data_dir(data_dir),
                        device=device, show_progress=show_progress)


def score_binarizations(run: Run | PathLike,
                        tests: Sequence[str | BinarizedTestSet] = ("lm", "dynamic"), *,
                        train: bool = False, k: int = 5000, n: int | None = None,
                        stage: str | None = None, data_dir: PathLike | None = None,
                        device: str = "auto") -> dict[int | None, dict[str, dict[str, Any]]]:
    """An MNIST run scored on binarizations of the MNIST test images: "lm" (the
    Larochelle-Murray test file), "dynamic" (the suite's seed-123 draw), "resampled:R" (the
    mean over R fresh draws); train=True adds its own training images. stage: None or "final"
    (the final model), "S" (the end of stage S), "all" (every stage). Returns stage (None:
    final) -> name -> summary; a complete run's record keeps them (metrics.tests,
    metrics.stages; docs/data.md, docs/result-record.md)."""
    return score_run_binarizations(_run_dir(run), tests, train=train, k=k, n=n, stage=stage,
                                   data_dir=_data_dir(data_dir), device=resolve_device(device))


def ais(run: Run | PathLike, *, intermediate: Sequence[int] | None = None, chains: int = 16,
        leapfrog: int = 10, start: str = "prior", n: int | None = None, k: int = 5000,
        data_dir: PathLike | None = None, device: str = "auto") -> list[dict[str, Any]]:
    """Annealed importance sampling of log p(x) on a complete run's seeded test subset, one
    evaluation per number of intermediate distributions (default 10,000), each beside L_k on
    the same examples (docs/evaluation.md). Recorded in the run's result.json."""
    return evaluate_run_ais(_run_dir(run), intermediate=intermediate, chains=chains,
                            leapfrog=leapfrog, start=start, n=n, k=k,
                            data_dir=_data_dir(data_dir), device=device)


def bdmc(run: Run | PathLike, *, intermediate: Sequence[int] | None = None,
         simulated: int | None = None, chains: int = 16, leapfrog: int = 10,
         start: str = "prior", device: str = "auto") -> dict[str, Any]:
    """Bidirectional Monte Carlo on examples simulated from a complete run's model: lower and
    upper bounds of log p(x) and their gap for every number of intermediate distributions
    (default 100, 1,000, 10,000), recorded in the run's result.json (docs/evaluation.md)."""
    return evaluate_run_bdmc(_run_dir(run), intermediate=intermediate, simulated=simulated,
                             chains=chains, leapfrog=leapfrog, start=start, device=device)


def load_results(results: PathLike = "results") -> pd.DataFrame:
    """Every result record under `results` as a DataFrame, one row per run: run_id, sweep,
    status, reason, run_dir, the config's fields (data, model, k, layers, seed, fidelity,
    schedule, ...) and the metrics (test_nll, test_nll_se, train_nll, active_units, ...) as
    columns, progress.* and timing.* prefixed (docs/result-record.md)."""
    return load_results_frame(Path(results))


def build_report(results: PathLike = "results", *, out: PathLike | None = None,
                 grid: str | None = None) -> Path:
    """Write the HTML report of a results folder (with a grid: only that grid's runs and
    tables) and its tables as CSV, Markdown and LaTeX; return the path of index.html (default
    out: reports/<name of the results folder>)."""
    return build_html_report(Path(results), Path(out) if out is not None else None, grid)
