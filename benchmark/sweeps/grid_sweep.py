"""A grid swept from Python: the plan, the executor and the driver, without the command line.

sweep_grid is what `python -m benchmark sweep` does once its flags are parsed: expand the grid
into runs, record the unselected conditions whose data is missing, and train every run that is
not complete yet on a local process pool (or Ray), grouping compatible runs. score_grid is its
`--tests` step: every complete MNIST run of the grid scored on binarizations of the MNIST test
images (benchmark.sweeps.test_scoring).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from benchmark.errors import UserError
from benchmark.plugins import loaded_plugins
from benchmark.records import resolve_device
from benchmark.sweeps.availability import record_unselected_unavailable
from benchmark.sweeps.driver import SweepReport, run_sweep
from benchmark.sweeps.executors import (
    Executor,
    available_cores,
    check_gpus_per_run,
    import_ray,
    make_executor,
)
from benchmark.sweeps.grids import GRIDS, SweepOptions, expand_grid
from benchmark.sweeps.test_scoring import TestScoring, score_runs
from benchmark.training import ExecutionOptions


def sweep_options(*, schedule: str = "full", fidelity: str = "code",
                  data: Sequence[str] | None = None, seeds: int = 1,
                  cells: Sequence[str] | None = None, device: str = "auto",
                  stages: int | None = None, epochs: float | None = None,
                  steps: int | None = None, eval_k: int | None = None,
                  eval_n: int | None = None) -> SweepOptions:
    """SweepOptions from plain values; cells are written as in a run id (vae_k1_L1, and in the
    estimators grid iwae-dreg_k5 or miwae_m8_k8)."""
    return SweepOptions(
        schedule=schedule, fidelity=fidelity, data=tuple(data) if data else None, seeds=seeds,
        device=device, stages=stages, epochs=epochs, steps=steps, eval_k=eval_k, eval_n=eval_n,
        cells=tuple(cells) if cells else None)


def sweep_grid(grid: str, options: SweepOptions, results: Path, data_dir: Path, *,
               executor: str = "local", workers: int | None = None,
               address: str | None = None, gpus_per_run: float = 0.0, group: bool = True,
               execution: ExecutionOptions | None = None) -> SweepReport:
    """Train and evaluate every run of `grid` under results/ that is not complete yet; return
    how each ended. executor "local" runs a process pool sized to this machine (workers: how
    many runs at a time); "ray" runs each task on Ray (address: a cluster, None: a local
    instance; gpus_per_run: GPUs per task). group=False trains every run alone."""
    if grid not in GRIDS:
        raise UserError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    results = Path(results)
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results} is a file, not a folder; choose a folder")
    if executor == "local" and (address or gpus_per_run):
        raise UserError("--address and --gpus-per-run need --executor ray")
    if executor == "ray":
        check_gpus_per_run(gpus_per_run)
        import_ray()
    plan = expand_grid(grid, options, results)
    if loaded_plugins():  # a plugin's objective that cannot train fails here, not in a worker
        from benchmark.training import check_plugin_objectives

        check_plugin_objectives([run.config for run in plan])
    uses_gpu = resolve_device(options.device).type == "cuda"

    def executor_factory(n_runs: int) -> Executor:
        return make_executor(executor, n_runs=n_runs, workers=workers, address=address,
                             gpus_per_run=gpus_per_run, uses_gpu=uses_gpu)

    record_unselected_unavailable(grid, options, plan, results, Path(data_dir))
    return run_sweep(grid, plan, data_dir=Path(data_dir), executor_factory=executor_factory,
                     group=group, options=execution)


def score_grid(grid: str, options: SweepOptions, results: Path, data_dir: Path,
               tests: Sequence[str], stage_k: int | None = None, workers: int | None = None,
               say: Callable[[str], None] = print) -> dict[str, str]:
    """Score every complete MNIST run of the grid on the test binarizations `tests` (lm,
    dynamic, resampled:R) and on its training images, with its own evaluation k and images;
    with stage_k, also at every stage end with L_stage_k. Returns {run label: why it could not
    be scored}; scores already on disk are read back."""
    plan = expand_grid(grid, options, Path(results))
    device = str(resolve_device(options.device))
    return score_runs(plan, TestScoring(tuple(tests), stage_k), Path(data_dir), device,
                      workers or available_cores(), say)
