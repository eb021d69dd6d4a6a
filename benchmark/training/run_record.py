"""The result record of a run as the trainer writes it (schema: benchmark.records.results)."""

from __future__ import annotations

from typing import Any

from benchmark.config import BATCH_SIZE, RunConfig
from benchmark.data import TEST_BINARIZATION_SEED
from benchmark.definitions import find_objective
from benchmark.training.schedule import Plan


def run_record(config: RunConfig, plan: Plan, state: Any, status: str, *,
               run_id: str | None, sweep: str | None, env: dict, n_train: int,
               metrics: dict | None = None, failure: dict | None = None,
               eval_seconds: float | None = None, artifacts: dict | None = None) -> dict:
    """The result record; `state` is anything with .step and .train_seconds (a Member), and
    .resumed_from (the checkpoint steps the run was resumed from, in order) when it has one."""
    stage = plan.stage_at(max(state.step - 1, 0)).index
    plugin = find_objective(config.model).plugin
    record = {
        "run_id": run_id,
        "sweep": sweep,
        "config": {**config.to_dict(), "eval_k": config.effective_eval_k,
                   "eval_n": config.effective_eval_n, "batch_size": BATCH_SIZE,
                   "train_size": n_train, "test_binarization_seed": TEST_BINARIZATION_SEED},
        "status": status,
        "reason": failure["reason"] if failure else None,
        "failure": failure,
        "progress": {"epochs": state.step / plan.steps_per_epoch,
                     "epochs_planned": plan.planned_epochs, "epochs_total": plan.epochs_total,
                     "steps": state.step, "steps_planned": plan.planned_steps, "stage": stage,
                     "resumed_from": list(getattr(state, "resumed_from", []))},
        "metrics": metrics or {},
        "curves": "metrics.csv",
        "artifacts": artifacts or {},
        "environment": env,
        "timing": {"train_s": round(state.train_seconds, 3),
                   "eval_s": None if eval_seconds is None else round(eval_seconds, 3)},
        "command": train_command_line(config, plan),
    }
    if plugin is not None:  # where the objective came from, for people: never imported from here
        record["plugin"] = {"objective": config.model, "module": plugin}
    return record


def train_command_line(config: RunConfig, plan: Plan) -> str:
    parts = ["python -m benchmark train", f"--data {config.data}", f"--model {config.model}"]
    if config.estimator is not None:
        parts.append(f"--estimator {config.estimator}")
    parts += [f"--{name} {value}" for name, value in config.params]
    plugin = find_objective(config.model).plugin
    if plugin is not None:
        parts.append(f"--objective-module {plugin}")
    parts += [f"--k {config.k}", f"--layers {config.layers}", f"--seed {config.seed}",
              f"--fidelity {config.fidelity}", f"--schedule {config.schedule}"]
    for flag in ("stages", "epochs", "steps", "eval_k", "eval_n", "init_from"):
        value = getattr(config, flag)
        if value is not None:
            parts.append(f"--{flag.replace('_', '-')} {value}")
    return " ".join(parts)
