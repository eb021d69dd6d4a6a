"""Training one run: the stage schedule, the loop, checkpoints and exact resume.

`train_run` trains (resuming from the run directory's newest checkpoint when there is one),
evaluates, and writes result.json: "running" while it trains, then "complete", or "failed" with
the step and the reason when the training bound stops being finite. The loop never synchronises
with the host inside a step; it checks the bound every CHECK_EVERY steps, at log points and
before every checkpoint, so a checkpoint is only ever written from finite state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.checkpoint import load_latest_checkpoint, save_checkpoint
from benchmark.config import BATCH_SIZE, RunConfig
from benchmark.curves import CurveRow, write_curves
from benchmark.data.binarization import TEST_BINARIZATION_SEED, decoder_bias_mean, make_binarizer
from benchmark.data.splits import Dataset, load_dataset
from benchmark.environment import environment_record, resolve_device
from benchmark.errors import UserError
from benchmark.evaluate import (
    EVAL_NOISE_SEED,
    EVAL_SUBSET_SEED,
    log_likelihood_estimates,
    random_subset,
)
from benchmark.evaluation_run import evaluate_final, evaluation_inputs
from benchmark.fileio import atomic_write_json, read_json
from benchmark.model import IWAEModel
from benchmark.objectives import bound, training_loss
from benchmark.optim import loss_reduction, make_optimizer, set_learning_rate
from benchmark.results import load_result, write_result
from benchmark.schedule import Plan, make_plan
from benchmark.seeding import derive_seed, epoch_permutation, torch_generator

CHECK_EVERY = 100  # steps between host synchronisations (finiteness, progress bar)
LOG_POINTS_PER_STAGE = 4
DEFAULT_CHECKPOINT_SECONDS = 300.0
CURVE_SUBSET_N = 200  # the small fixed random test subset scored at every log point
CURVE_SUBSET_K = 50
CONFIG_FILE = "config.json"

ProgressCallback = Callable[[int, int], None]


@dataclass
class TrainingState:
    """Everything that changes during training and must be restored for an exact resume."""

    model: IWAEModel
    optimizer: torch.optim.Optimizer
    noise: torch.Generator  # the reparameterisation noise
    binarizer: Any
    step: int = 0
    train_seconds: float = 0.0
    curve: list[CurveRow] = field(default_factory=list)

    def payload(self, config: RunConfig) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "noise": self.noise.get_state(),
                "binarizer": self.binarizer.state_dict(),
                "torch_cpu": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "numpy": np.random.get_state(),
            },
            "train_seconds": self.train_seconds,
            "curve": [row.as_dict() for row in self.curve],
        }

    def restore(self, payload: dict[str, Any], *, position: bool = True) -> None:
        """Load model, optimizer and generators; with position, also where the run stood."""
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        rng = payload["rng"]
        self.noise.set_state(rng["noise"].cpu() if hasattr(rng["noise"], "cpu") else rng["noise"])
        self.binarizer.load_state_dict(rng["binarizer"])
        torch.set_rng_state(rng["torch_cpu"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        np.random.set_state(rng["numpy"])
        if position:
            self.step = int(payload["step"])
            self.train_seconds = float(payload["train_seconds"])
            self.curve = [CurveRow(**row) for row in payload["curve"]]


def fresh_state(config: RunConfig, dataset: Dataset, device: torch.device, lr: float
                ) -> TrainingState:
    model = IWAEModel(config.layers, members=1)
    bias = decoder_bias_mean(dataset.train)
    if config.fidelity == "code":
        model.init_authors(bias)
    else:
        model.init_glorot([torch_generator(derive_seed(config.seed, "init"))], bias)
    model.to(device)
    optimizer = make_optimizer(config.fidelity, model.parameters(), lr)
    noise = torch_generator(derive_seed(config.seed, "noise"), device)
    binarizer = make_binarizer(dataset.dynamic, derive_seed(config.seed, "binarize"), device)
    return TrainingState(model, optimizer, noise, binarizer)


def continuation_parent(config: RunConfig) -> dict[str, Any]:
    """The final checkpoint of the run named by --init-from, checked against this run."""
    parent_dir = Path(config.init_from)
    record = load_result(parent_dir)
    if record is None or record.get("status") != "complete":
        raise UserError(f"--init-from {parent_dir}: that run is not complete (status "
                        f"{None if record is None else record.get('status')}); finish it first")
    parent = RunConfig.from_dict(record["config"])
    for name in ("data", "layers", "fidelity"):
        if getattr(parent, name) != getattr(config, name):
            raise UserError(f"--init-from {parent_dir}: its --{name} is {getattr(parent, name)}, "
                            f"this run's is {getattr(config, name)}; they must match")
    payload = load_latest_checkpoint(parent_dir)
    if payload is None:
        raise UserError(f"--init-from {parent_dir}: the run has no checkpoint to continue from")
    return payload


def check_run_dir(run_dir: Path, config: RunConfig) -> None:
    """A run directory belongs to one configuration; the device may change between resumes."""
    path = run_dir / CONFIG_FILE
    if path.exists():
        existing = read_json(path)
        ours = config.to_dict()
        diff = sorted(key for key in ours if key != "device" and existing.get(key) != ours[key])
        if diff:
            details = ", ".join(f"{key}: {existing.get(key)!r} there, {ours[key]!r} here"
                                for key in diff)
            raise UserError(f"{run_dir} holds a different run ({details}); choose another --out")
    else:
        atomic_write_json(path, config.to_dict())


def log_steps(plan: Plan) -> list[int]:
    """A few evenly spaced points in every stage, its end, and the run's last step."""
    points = {plan.planned_steps}
    for stage in plan.stages:
        for j in range(1, LOG_POINTS_PER_STAGE + 1):
            s = stage.first_step + round(stage.steps * j / LOG_POINTS_PER_STAGE)
            if 0 < s <= plan.planned_steps:
                points.add(s)
    return sorted(points)


class MinibatchSource:
    """Training minibatches on the training device, binarized afresh when the data is dynamic.

    `code`: contiguous minibatches in file order, never reshuffled (the authors' train.py);
    `paper`: a seeded reshuffle every epoch."""

    def __init__(self, train: np.ndarray, config: RunConfig, plan: Plan, device: torch.device):
        self.data = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)).to(device)
        self.shuffle = config.fidelity == "paper"
        self.seed = config.seed
        self.per_epoch = plan.steps_per_epoch
        self._epoch = -1
        self._order: torch.Tensor | None = None

    def batch(self, step: int) -> torch.Tensor:
        position = (step % self.per_epoch) * BATCH_SIZE
        if not self.shuffle:
            return self.data[position:position + BATCH_SIZE]
        epoch = step // self.per_epoch
        if epoch != self._epoch:
            perm = epoch_permutation(self.seed, epoch, self.data.shape[0])
            self._order = torch.from_numpy(perm).to(self.data.device)
            self._epoch = epoch
        return self.data[self._order[position:position + BATCH_SIZE]]


def run_record(config: RunConfig, plan: Plan, state: TrainingState, status: str, *,
               run_id: str | None, sweep: str | None, env: dict, n_train: int,
               metrics: dict | None = None, failure: dict | None = None,
               eval_seconds: float | None = None, artifacts: dict | None = None) -> dict:
    stage = plan.stage_at(max(state.step - 1, 0)).index
    return {
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
                     "steps": state.step, "steps_planned": plan.planned_steps, "stage": stage},
        "metrics": metrics or {},
        "curves": "metrics.csv",
        "artifacts": artifacts or {},
        "environment": env,
        "timing": {"train_s": round(state.train_seconds, 3),
                   "eval_s": None if eval_seconds is None else round(eval_seconds, 3)},
        "command": train_command_line(config, plan),
    }


def train_command_line(config: RunConfig, plan: Plan) -> str:
    parts = ["python -m benchmark train", f"--data {config.data}", f"--model {config.model}",
             f"--k {config.k}", f"--layers {config.layers}", f"--seed {config.seed}",
             f"--fidelity {config.fidelity}", f"--schedule {config.schedule}"]
    for flag in ("stages", "epochs", "steps", "eval_k", "eval_n", "init_from"):
        value = getattr(config, flag)
        if value is not None:
            parts.append(f"--{flag.replace('_', '-')} {value}")
    return " ".join(parts)


def train_run(
    config: RunConfig,
    run_dir: Path,
    data_dir: Path,
    *,
    run_id: str | None = None,
    sweep: str | None = None,
    show_progress: bool = True,
    on_progress: ProgressCallback | None = None,
    checkpoint_every_s: float = DEFAULT_CHECKPOINT_SECONDS,
) -> dict:
    """Train and evaluate one run in run_dir; return its result record (see results.py)."""
    run_dir = Path(run_dir)
    dataset = load_dataset(config.data, Path(data_dir))
    device = resolve_device(config.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_run_dir(run_dir, config)
    existing = load_result(run_dir)
    if existing is not None and existing.get("status") == "complete":
        return existing

    plan = make_plan(config, dataset.train.shape[0])
    state = fresh_state(config, dataset, device, plan.stages[0].lr)
    checkpoint = load_latest_checkpoint(run_dir, map_location=device)
    if checkpoint is not None:
        state.restore(checkpoint)
    elif config.init_from is not None:
        state.restore(continuation_parent(config), position=False)
    env = environment_record(device, dataset.source_sha256)
    common = {"run_id": run_id, "sweep": sweep, "env": env, "n_train": dataset.train.shape[0]}

    inputs = evaluation_inputs(dataset, config)
    curve_x = inputs.test[None, _curve_subset(inputs.test.shape[0])].to(device)
    source = MinibatchSource(dataset.train, config, plan, device)
    failure = _train_loop(config, plan, state, source, curve_x, run_dir, common,
                          show_progress, on_progress, checkpoint_every_s)
    if failure is not None:
        record = run_record(config, plan, state, "failed", failure=failure, **common)
        write_result(run_dir, record)
        return record

    started = time.perf_counter()
    metrics, artifacts = evaluate_final(state.model, inputs, config, device, run_dir,
                                        show_progress=show_progress)
    record = run_record(config, plan, state, "complete", metrics=metrics, artifacts=artifacts,
                        eval_seconds=time.perf_counter() - started, **common)
    write_result(run_dir, record)
    return record


def _curve_subset(n_test: int) -> np.ndarray:
    return random_subset(n_test, CURVE_SUBSET_N, EVAL_SUBSET_SEED)


def _train_loop(config: RunConfig, plan: Plan, state: TrainingState, source: MinibatchSource,
                curve_x: torch.Tensor, run_dir: Path, common: dict, show_progress: bool,
                on_progress: ProgressCallback | None, checkpoint_every_s: float) -> dict | None:
    """Train up to plan.planned_steps. Returns None, or the failure when the bound broke."""
    model, optimizer = state.model, state.optimizer
    reduction = loss_reduction(config.fidelity)
    logs = set(log_steps(plan))
    stage_ends = set(plan.stage_ends())
    bounds = torch.empty(CHECK_EVERY, device=curve_x.device)
    pending, bound_sum, bound_count = 0, 0.0, 0
    current_lr = None
    last_checkpoint = time.monotonic()
    write_result(run_dir, run_record(config, plan, state, "running", **common))
    bar = tqdm(total=plan.planned_steps, initial=state.step, unit="step", leave=False,
               desc=common["run_id"] or "train", disable=not show_progress, smoothing=0.05)
    segment = time.perf_counter()
    try:
        while state.step < plan.planned_steps:
            stage = plan.stage_at(state.step)
            if stage.lr != current_lr:
                set_learning_rate(optimizer, stage.lr)
                current_lr = stage.lr
            x = state.binarizer(source.batch(state.step)).unsqueeze(0)  # (1, B, 784)
            log_w = model.log_weights(x, config.k, state.noise)  # (1, k, B)
            per_example = bound(config.model, log_w)
            loss = training_loss(per_example, reduction)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bounds[pending] = per_example.detach().mean()
            pending += 1
            state.step += 1
            step = state.step
            at_log, at_stage_end = step in logs, step in stage_ends
            if not (pending == CHECK_EVERY or at_log or at_stage_end):
                continue

            values = bounds[:pending].cpu().numpy()  # the one host sync per CHECK_EVERY steps
            state.train_seconds += time.perf_counter() - segment
            broken = ~np.isfinite(values)
            if broken.any():
                bad_step = step - pending + int(np.argmax(broken)) + 1
                return {"step": bad_step, "epoch": bad_step / plan.steps_per_epoch,
                        "reason": f"non-finite training bound ({values[broken][0]}) at step "
                                  f"{bad_step}; the last good checkpoint is kept"}
            bound_sum += float(values.sum())
            bound_count += pending
            bar.update(pending)
            pending = 0
            if on_progress is not None:
                on_progress(step, plan.planned_steps)
            if at_log:
                state.curve.append(_curve_row(config, plan, state, curve_x,
                                              -bound_sum / bound_count, current_lr))
                bound_sum, bound_count = 0.0, 0
                write_curves(run_dir, state.curve)
                write_result(run_dir, run_record(config, plan, state, "running", **common))
            due = time.monotonic() - last_checkpoint >= checkpoint_every_s
            if at_stage_end or step == plan.planned_steps or due:
                save_checkpoint(run_dir, state.payload(config))
                last_checkpoint = time.monotonic()
            segment = time.perf_counter()
    finally:
        bar.close()
    return None


def _curve_row(config: RunConfig, plan: Plan, state: TrainingState, curve_x: torch.Tensor,
               train_bound_nll: float, lr: float) -> CurveRow:
    noise = torch_generator(EVAL_NOISE_SEED, curve_x.device)
    ll = log_likelihood_estimates(state.model, curve_x, CURVE_SUBSET_K, noise)
    return CurveRow(
        epoch=state.step / plan.steps_per_epoch, step=state.step,
        stage=plan.stage_at(state.step - 1).index, lr=lr, train_bound_nll=train_bound_nll,
        test_nll_subset=float(-ll.mean()), subset_k=CURVE_SUBSET_K, subset_n=curve_x.shape[1],
        seconds=state.train_seconds,
    )
