"""The `train` subcommand: its flags to a RunConfig, the run trained, one line of results."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmark.config import RunConfig, run_id
from benchmark.definitions import parameter_names
from benchmark.training.execution import execution_from_args
from benchmark.training.loop import train_run


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(
        data=args.data, model=args.model, k=args.k, layers=args.layers, seed=args.seed,
        fidelity=args.fidelity, schedule=args.schedule, stages=args.stages, epochs=args.epochs,
        steps=args.steps, eval_k=args.eval_k, eval_n=args.eval_n, device=args.device,
        init_from=str(args.init_from) if args.init_from is not None else None,
        estimator=args.estimator, params=objective_params(args),
    )


def objective_params(args: argparse.Namespace) -> dict:
    """The objective parameters given on the command line (a flag per parameter of every
    registered objective), by name."""
    return {name: getattr(args, name) for name in parameter_names()
            if getattr(args, name, None) is not None}


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


