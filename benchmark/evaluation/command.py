"""Score a trained run's newest checkpoint again, with another k, on another number of examples,
or on the training split (evaluate_run), and the `evaluate` subcommand that calls it."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.data import load_dataset
from benchmark.errors import UserError
from benchmark.evaluation.inputs import (
    TRAIN_SUBSET_SEED,
    binary_split,
    evaluation_inputs,
    random_subset,
)
from benchmark.evaluation.likelihood import summarise_nll
from benchmark.evaluation.run import save_npy, score
from benchmark.evaluation.trained_model import load_trained_model
from benchmark.records import (
    EVALUATIONS_DIR,
    atomic_write_json,
    resolve_device,
)


def evaluate_run(run_dir: Path, *, k: int = 5000, n: int | None = None, split: str = "test",
                 data_dir: Path = Path("datasets"), device: torch.device | str = "auto",
                 show_progress: bool = True) -> dict[str, Any]:
    """L_k of a run's newest checkpoint on its test split (the seeded subset of n examples, the
    same for every run; None: all) or on a seeded subset of its training images, binarized as
    the final evaluation binarizes them. Writes evaluations/<split>_k<K>_n<N>.json and the
    per-example values as .npy beside it; returns the summary {"split", "k", "n", "nll", "se",
    "seconds"} (NLL in positive nats, se its standard error over the examples)."""
    if split not in ("test", "train"):
        raise UserError(f"split must be test or train, got {split!r}")
    device = resolve_device(device)
    config, model = load_trained_model(Path(run_dir), device)
    dataset = load_dataset(config.data, Path(data_dir))
    inputs = evaluation_inputs(dataset, config, split_n=n)
    if split == "test":
        x, index = inputs.test[inputs.test_index], inputs.test_index
    else:
        index = random_subset(dataset.train.shape[0], n, TRAIN_SUBSET_SEED)
        x = binary_split(dataset.train[index], dataset.dynamic)
    started = time.perf_counter()
    ll = score(model, x, k, device, show_progress=show_progress)
    est = summarise_nll(ll)
    name = f"{split}_k{k}_n{est.n}"
    out = Path(run_dir) / EVALUATIONS_DIR
    save_npy(out / f"{name}.npy", ll)
    summary = {"split": split, "k": k, "n": est.n, "nll": est.nll, "se": est.se,
               "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_json(out / f"{name}.json", summary)
    return summary


def evaluate_command(args: argparse.Namespace) -> int:
    """`evaluate RUN_DIR [--k K] [--n N] [--split test|train]`: evaluate_run, its summary printed
    as one JSON line (--ais and --bdmc go to benchmark.evaluation.ais_command instead, --test
    and --stage to benchmark.evaluation.binarization_command)."""
    device = resolve_device(args.device)
    if args.test or args.stage is not None:
        from benchmark.evaluation.binarization_command import score_binarizations_command

        return score_binarizations_command(args, device)
    summary = evaluate_run(args.run_dir, k=args.k, n=args.n, split=args.split,
                           data_dir=args.data_dir, device=device)
    print(json.dumps(summary))
    return 0
