"""`sweep ... --tests lm,dynamic [--stage-k K]`: once a sweep's runs are trained, score every
complete MNIST run on those binarizations of the MNIST test images and on its training images
(benchmark.evaluation.score_binarizations), with its final model at the run's own evaluation
k and images, and with --stage-k at the end of every stage with L_K on the same images.
Runs are scored in parallel processes, one torch thread each; scores already on disk are read
back, so an interrupted scoring resumes where it stopped."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from benchmark.config import MNIST_CONDITIONS
from benchmark.errors import UserError
from benchmark.records import stage_snapshot_stages
from benchmark.sweeps.grids import PlannedRun
from benchmark.sweeps.run_state import is_complete


@dataclass(frozen=True)
class TestScoring:
    tests: tuple[str, ...]  # lm, dynamic, resampled:R
    stage_k: int | None = None  # None: the final model only


def score_one(run_dir: str, tests: Sequence[str], k: int, n: int | None, stage_k: int | None,
              data_dir: str, device: str) -> str:
    """One run, in a worker process (so it imports torch there, with one thread)."""
    import torch

    from benchmark.evaluation import images_to_score, score_images_at

    torch.set_num_threads(1)
    # the images are loaded once for the final model and every stage end
    config, sets = images_to_score(Path(run_dir), tests, train=True, n=n,
                                   data_dir=Path(data_dir))
    score_images_at(Path(run_dir), config, sets, k=k, device=device)
    if stage_k is not None and stage_snapshot_stages(Path(run_dir)):  # none before a stage end
        score_images_at(Path(run_dir), config, sets, k=stage_k, stage="all", device=device)
    return run_dir


def score_runs(plan: Sequence[PlannedRun], scoring: TestScoring, data_dir: Path, device: str,
               workers: int, say: Callable[[str], None]) -> dict[str, str]:
    """Score every complete MNIST run of the plan; returns {run label: why it failed}."""
    runs = [run for run in plan if run.config.data in MNIST_CONDITIONS and is_complete(run)]
    if not runs:
        return {}
    say(f"scoring {len(runs)} run(s) on {', '.join(scoring.tests)} and their training images"
        + (f", at every stage end with L_{scoring.stage_k}" if scoring.stage_k else ""))
    failures: dict[str, str] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context) as pool:
        futures = {pool.submit(score_one, str(run.run_dir), scoring.tests,
                               run.config.effective_eval_k, run.config.effective_eval_n,
                               scoring.stage_k, str(data_dir), device): run for run in runs}
        for future in as_completed(futures):
            run = futures[future]
            try:
                future.result()
                say(f"{run.label}  scored")
            except UserError as err:
                failures[run.label] = str(err)
                say(f"{run.label}  not scored: {err}")
    return failures
