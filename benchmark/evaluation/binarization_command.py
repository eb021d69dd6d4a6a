"""`evaluate RUN --test lm,dynamic,resampled:R [--split train] [--stage all|S]`: an MNIST run
scored on the binarizations of the MNIST test images, and on its own training images, with its
final model or at the end of every stage (benchmark.evaluation.test_scores says what is saved).
A complete run's record keeps every final score under metrics.tests and every stage's under
metrics.stages, each with its standard error."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import (
    BinarizedTestSet,
    binarized_test_images,
    load_dataset,
    parse_test_binarization,
)
from benchmark.errors import UserError
from benchmark.evaluation.inputs import (
    TRAIN_SUBSET_N,
    TRAIN_SUBSET_SEED,
    binary_split,
    random_subset,
)
from benchmark.evaluation.test_scores import (
    ScoredImages,
    require_mnist,
    score_and_save,
    test_images,
)
from benchmark.evaluation.trained_model import load_trained_model, recorded_config
from benchmark.models import IWAEModel
from benchmark.records import (
    load_result,
    load_stage_snapshot,
    resolve_device,
    stage_snapshot_stages,
    write_result,
)


def train_images(config: RunConfig, data_dir: Path) -> ScoredImages:
    """The run's training images as its final evaluation scores them when cut short: the seeded
    random subset of TRAIN_SUBSET_N, binarized once with the test seed when the data is dynamic
    (fixed data: its own draw, the one it was trained on)."""
    dataset = load_dataset(config.data, data_dir)
    index = random_subset(dataset.train.shape[0], TRAIN_SUBSET_N, TRAIN_SUBSET_SEED)
    images = binary_split(dataset.train[index], dataset.dynamic).numpy()
    return ScoredImages("train", [images], np.arange(len(index)))


def stages_asked(run_dir: Path, stage: str | None) -> list[int | None]:
    """None stands for the final model; 'all' is every stage with a snapshot."""
    if stage is None or stage == "final":
        return [None]
    available = stage_snapshot_stages(run_dir)
    if stage == "all":
        if not available:
            raise UserError(f"{run_dir} has no stage snapshots (stages/stage-<s>.pt): it was "
                            "trained before they were kept, or has not finished a stage yet")
        return list(available)
    if not stage.isdigit() or int(stage) not in available:
        raise UserError(f"--stage {stage}: choose all, final or one of the stages with a "
                        f"snapshot in {run_dir}/stages ({available or 'none yet'})")
    return [int(stage)]


def model_at(run_dir: Path, stage: int | None, config: RunConfig, device: torch.device
             ) -> tuple[IWAEModel, int, float]:
    """(model, its step, its epoch) at the end of `stage`, or the final one. A stage snapshot
    is read alone, so a run still training is never touched beyond its finished stages."""
    if stage is None:
        model = load_trained_model(run_dir, device)[1]
        progress = (load_result(run_dir) or {}).get("progress") or {}
        return model, int(progress.get("steps", -1)), float(progress.get("epochs", -1.0))
    snapshot = load_stage_snapshot(run_dir, stage, map_location=device)
    staged = IWAEModel(config.layers).to(device)
    staged.load_state_dict(snapshot.model)
    return staged, snapshot.step, snapshot.epoch


def record_scores(run_dir: Path, scores: dict[int | None, dict[str, dict[str, Any]]]) -> bool:
    """Add the scores to a complete run's record; False (nothing written) for other runs."""
    record = load_result(run_dir)
    if record is None or record.get("status") != "complete":
        return False
    metrics = record.setdefault("metrics", {})
    for stage, by_name in scores.items():
        if stage is None:
            metrics["tests"] = {**(metrics.get("tests") or {}), **by_name}
        else:
            stages = dict(metrics.get("stages") or {})
            stages[str(stage)] = {**(stages.get(str(stage)) or {}), **by_name}
            metrics["stages"] = dict(sorted(stages.items(), key=lambda kv: int(kv[0])))
    write_result(run_dir, record)
    return True


def images_to_score(run_dir: Path, tests: Sequence[BinarizedTestSet | str], *,
                    train: bool = False, n: int | None = None,
                    data_dir: Path = Path("datasets")) -> tuple[RunConfig, list[ScoredImages]]:
    """An MNIST run's configuration and the images it is scored on: each test binarization (n
    of the test images: a seeded subset, all when None) and, with train=True, TRAIN_SUBSET_N of
    its training images. Loaded once, they serve every stage and every k."""
    specs = [parse_test_binarization(t) if isinstance(t, str) else t for t in tests]
    config = recorded_config(Path(run_dir))[0]
    require_mnist(config, "--test")
    if not specs and not train:
        raise UserError("nothing to score: name test binarizations (--test lm,dynamic,...) "
                        "and/or the training images (--split train)")
    sets = [test_images(spec, binarized_test_images(spec, data_dir), n) for spec in specs]
    if train:
        sets.append(train_images(config, data_dir))
    return config, sets


def score_images_at(run_dir: Path, config: RunConfig, sets: Sequence[ScoredImages], *,
                    k: int, stage: str | None = None, device: torch.device | str = "cpu",
                    echo: bool = False) -> dict[int | None, dict[str, dict[str, Any]]]:
    """L_k of every image set with the final model (stage None or "final"), one stage's ("S")
    or every stage's ("all"); returns stage (None: final) -> score name -> summary, and a
    complete run's record keeps them."""
    run_dir, device = Path(run_dir), resolve_device(device)
    scores: dict[int | None, dict[str, dict[str, Any]]] = {}
    for at in stages_asked(run_dir, stage):
        model, step, epoch = model_at(run_dir, at, config, device)
        for scored in sets:
            summary = score_and_save(model, scored, k, device, run_dir, at, step, epoch)
            scores.setdefault(at, {})[scored.name] = summary
            if echo:
                print(json.dumps(summary))
    record_scores(run_dir, scores)
    return scores


def score_binarizations(run_dir: Path, tests: Sequence[BinarizedTestSet | str] = ("lm",
                                                                              "dynamic"),
                        *, train: bool = False, k: int = 5000, n: int | None = None,
                        stage: str | None = None, data_dir: Path = Path("datasets"),
                        device: torch.device | str = "cpu", echo: bool = False,
                        ) -> dict[int | None, dict[str, dict[str, Any]]]:
    """Score an MNIST run on test binarizations and, with train=True, its training images
    (images_to_score), with its final model, one stage's or every stage's (score_images_at)."""
    config, sets = images_to_score(run_dir, tests, train=train, n=n, data_dir=data_dir)
    return score_images_at(run_dir, config, sets, k=k, stage=stage, device=device, echo=echo)


def score_binarizations_command(args: argparse.Namespace, device: torch.device) -> int:
    score_binarizations(args.run_dir, args.test or (), train=args.split == "train", k=args.k,
                        n=args.n, stage=args.stage, data_dir=args.data_dir, device=device,
                        echo=True)
    return 0
