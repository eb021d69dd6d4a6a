"""The `train` and `evaluate` subcommands: argument handling around train.py and evaluation."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from benchmark.training.checkpoint import load_latest_checkpoint
from benchmark.config import RunConfig, run_id
from benchmark.data.splits import load_dataset
from benchmark.records.environment import resolve_device
from benchmark.errors import UserError
from benchmark.evaluation.likelihood import TRAIN_SUBSET_SEED, random_subset, summarise_nll
from benchmark.evaluation.run import binary_split, evaluation_inputs, save_npy, score
from benchmark.training.execution import execution_from_args
from benchmark.records.fileio import atomic_write_json
from benchmark.models.network import IWAEModel
from benchmark.records.results import load_result
from benchmark.training.loop import train_run


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        data=args.data, model=args.model, k=args.k, layers=args.layers, seed=args.seed,
        fidelity=args.fidelity, schedule=args.schedule, stages=args.stages, epochs=args.epochs,
        steps=args.steps, eval_k=args.eval_k, eval_n=args.eval_n, device=args.device,
        init_from=str(args.init_from) if args.init_from is not None else None,
    )


def describe(record: dict) -> str:
    m, p = record.get("metrics") or {}, record["progress"]
    if record["status"] != "complete":
        return f"{record['status']}: {record.get('reason')}"
    units = "+".join(str(u) for u in m["active_units"])
    return (f"test NLL {m['test_nll']:.2f} ± {m['test_nll_se']:.2f} (L_{m['eval_k']}, "
            f"{m['eval_n']} examples), train NLL {m['train_nll']:.2f}, active units {units}, "
            f"pruned {m['test_nll_pruned']:.2f}; {p['epochs']:g} of {p['epochs_total']} epochs")


def train_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    rid = run_id(config)
    out = args.out if args.out is not None else Path("results") / "runs" / rid
    record = train_run(config, out, args.data_dir, run_id=rid,
                       checkpoint_every_s=args.checkpoint_every,
                       options=execution_from_args(args))
    print(f"{rid}: {describe(record)}  [{out}]")
    return 0 if record["status"] == "complete" else 1


def load_trained_model(run_dir: Path, device: torch.device) -> tuple[RunConfig, IWAEModel]:
    record = load_result(run_dir)
    if record is None:
        raise UserError(f"{run_dir} holds no result.json; is it a run directory?")
    config = RunConfig.from_dict(record["config"])
    payload = load_latest_checkpoint(run_dir, map_location=device)
    if payload is None:
        raise UserError(f"{run_dir} has no checkpoint to evaluate; train it first")
    model = IWAEModel(config.layers).to(device)
    model.load_state_dict(payload["model"])
    return config, model


def evaluate_command(args: argparse.Namespace) -> int:
    """Score a run's newest checkpoint; writes evaluations/<split>_k<K>_n<N>.json and .npy."""
    device = resolve_device(args.device)
    config, model = load_trained_model(args.run_dir, device)
    dataset = load_dataset(config.data, args.data_dir)
    inputs = evaluation_inputs(dataset, config, split_n=args.n)
    if args.split == "test":
        x, index = inputs.test[inputs.test_index], inputs.test_index
    else:
        index = random_subset(dataset.train.shape[0], args.n, TRAIN_SUBSET_SEED)
        x = binary_split(dataset.train[index], dataset.dynamic)
    started = time.perf_counter()
    ll = score(model, x, args.k, device, show_progress=True)
    est = summarise_nll(ll)
    name = f"{args.split}_k{args.k}_n{est.n}"
    out = Path(args.run_dir) / "evaluations"
    save_npy(out / f"{name}.npy", ll)
    summary = {"split": args.split, "k": args.k, "n": est.n, "nll": est.nll, "se": est.se,
               "seconds": round(time.perf_counter() - started, 3)}
    atomic_write_json(out / f"{name}.json", summary)
    print(json.dumps(summary))
    return 0
