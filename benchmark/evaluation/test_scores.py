"""A run scored on the MNIST test binarizations (lm, dynamic, resampled:R) and on its training
images, with its final model or at the end of any stage of its schedule.

Each score is saved as per-image log-likelihoods (.npy, float64) beside a JSON summary with the
image indices it covers (.index.npy: positions in MNIST's test order, or in the run's training
split), so any two runs, stages or test binarizations pair image by image:

    evaluations/<name>_k<K>_n<N>.json / .npy / .index.npy            the final model
    evaluations/stage-<s>/<name>_k<K>_n<N>.json / .npy / .index.npy  the end of stage s

where <name> is test-lm, test-dynamic, test-resampled<R> or train. A score already on disk for
the same model, k and examples is read back rather than computed again, so an interrupted
evaluation of many stages resumes where it stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import MNIST_CONDITIONS, RunConfig
from benchmark.data import BinarizedTestSet
from benchmark.errors import UserError
from benchmark.evaluation.inputs import EVAL_SUBSET_SEED, random_subset
from benchmark.evaluation.likelihood import summarise_nll
from benchmark.evaluation.run import save_npy, score
from benchmark.models import IWAEModel
from benchmark.records import (
    EVALUATIONS_DIR,
    RecordError,
    atomic_write_json,
    read_array,
    read_run_json,
)


@dataclass(frozen=True)
class ScoredImages:
    """What one score covers: a name (test-lm, train, ...) and the binary images by index."""

    name: str
    images: list[np.ndarray]  # one (N_total, 784) float32 array per draw
    index: np.ndarray  # which rows of `images` are scored

    def rows(self, draw: int) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.images[draw][self.index]))


def require_mnist(config: RunConfig, what: str) -> None:
    if config.data not in MNIST_CONDITIONS:
        raise UserError(f"{what} scores MNIST runs on the MNIST test images; this run's data is "
                        f"{config.data}")


def test_images(spec: BinarizedTestSet, draws: list[np.ndarray], n: int | None) -> ScoredImages:
    """A test binarization's images, restricted to the seeded random subset of n (all: None)."""
    return ScoredImages(f"test-{spec.token}", draws,
                        random_subset(len(draws[0]), n, EVAL_SUBSET_SEED))


def output_paths(run_dir: Path, stage: int | None, name: str, k: int, n: int
                 ) -> tuple[Path, Path, Path]:
    folder = Path(run_dir) / EVALUATIONS_DIR
    if stage is not None:
        folder = folder / f"stage-{stage}"
    stem = folder / f"{name}_k{k}_n{n}"
    return stem.with_suffix(".json"), stem.with_suffix(".npy"), stem.with_suffix(".index.npy")


def saved_score(run_dir: Path, paths: tuple[Path, Path, Path], index: np.ndarray,
                model_step: int) -> dict[str, Any] | None:
    """The summary of a score already on disk for these examples and this model, else None;
    read through the records' reader (inside the run folder, never unpickled)."""
    summary_path, values_path, index_path = (str(p.relative_to(run_dir)) for p in paths)
    try:
        summary = read_run_json(run_dir, summary_path)
        saved_index = read_array(run_dir, index_path)
        values = read_array(run_dir, values_path)
    except RecordError:
        return None
    if not isinstance(summary, dict) or summary.get("model_step") != model_step:
        return None
    if not np.array_equal(saved_index, index) or values.shape != index.shape:
        return None
    return summary


def score_images(model: IWAEModel, scored: ScoredImages, k: int, device: torch.device
                 ) -> np.ndarray:
    """Per-image L_k, averaged over the draws (one draw: its L_k). float64 (n,)."""
    total = np.zeros(len(scored.index), dtype=np.float64)
    for draw in range(len(scored.images)):
        total += score(model, scored.rows(draw), k, device, show_progress=True)
    return total / len(scored.images)


def score_and_save(model: IWAEModel, scored: ScoredImages, k: int, device: torch.device,
                   run_dir: Path, stage: int | None, model_step: int,
                   epoch: float) -> dict[str, Any]:
    """Score (or read back) one set of images and return its summary."""
    paths = output_paths(run_dir, stage, scored.name, k, len(scored.index))
    existing = saved_score(Path(run_dir), paths, scored.index, model_step)
    if existing is not None:
        return existing
    started = time.perf_counter()
    values = score_images(model, scored, k, device)
    estimate = summarise_nll(values)
    summary_path, values_path, index_path = paths
    save_npy(values_path, values)
    save_npy(index_path, scored.index)
    summary = {"name": scored.name, "stage": stage, "model_step": model_step,
               "epoch": round(epoch, 6), "k": k, "n": estimate.n, "draws": len(scored.images),
               "nll": estimate.nll, "se": estimate.se, "loglik": values_path.name,
               "index": index_path.name, "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_json(summary_path, summary)
    return summary
