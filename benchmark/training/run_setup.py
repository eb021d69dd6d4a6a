"""Setting runs up to train: each run directory checked against its configuration, each data
condition loaded once per group, and each run made a Member, resumed from its newest checkpoint
or, for a continuation, started from its parent's final one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.config import RunConfig, config_differences
from benchmark.data import Dataset, load_dataset
from benchmark.errors import UserError
from benchmark.evaluation import (
    EVAL_SUBSET_SEED,
    EvaluationInputs,
    evaluation_inputs,
    evaluation_key,
    random_subset,
)
from benchmark.records import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOST_MODEL_ADVICE,
    RESULT_FILE,
    RecordError,
    atomic_write_json,
    environment_record,
    load_latest_checkpoint,
    load_result,
    read_config,
    remove_checkpoint_temporaries,
)
from benchmark.training.execution import ExecutionOptions, numerics_of, numerics_segments
from benchmark.training.group import Member, StackedState, member_generators
from benchmark.training.minibatches import MinibatchSource
from benchmark.training.schedule import Plan, make_plan

LOG_POINTS_PER_STAGE = 4
CURVE_SUBSET_N = 200  # the small fixed random test subset scored at every log point


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
    payload = load_latest_checkpoint(parent_dir, advice=LOST_MODEL_ADVICE)
    if payload is None:
        raise UserError(f"--init-from {parent_dir}: the run has no checkpoint to continue from")
    return payload


def check_run_dir(run_dir: Path, config: RunConfig) -> None:
    """A run directory belongs to one configuration: its config.json, and the configuration in
    any result.json found there, must be this run's (the device may change between resumes).
    Leftovers of another run are refused before anything of theirs is used."""
    path = run_dir / CONFIG_FILE
    if path.exists() or path.is_symlink():
        try:
            existing = read_config(run_dir)
        except RecordError as err:
            raise UserError(f"{path} is not a readable run configuration ({err}); move it away "
                            "or choose another --out") from err
        ours = config.to_dict()
        # Both sides' keys: an unset optional field (estimator, m, beta) is absent from one.
        keys = (set(ours) | set(existing)) - {"device"}
        diff = sorted(key for key in keys if existing.get(key) != ours.get(key))
        if diff:
            details = ", ".join(f"{key}: {existing.get(key)!r} there, {ours.get(key)!r} here"
                                for key in diff)
            raise UserError(f"{run_dir} holds a different run ({details}); choose another --out")
    record = load_result(run_dir)
    if record is not None:
        refuse_foreign(run_dir / RESULT_FILE, record.get("config"), config)
    if not path.exists():
        atomic_write_json(path, config.to_dict())


def refuse_foreign(path: Path, recorded: Any, config: RunConfig) -> None:
    """UserError when the configuration stored in `path` (a record, a checkpoint) is not
    config's."""
    diffs = config_differences(recorded, config)
    if diffs:
        raise UserError(f"{path} belongs to another run ({'; '.join(diffs)}, there -> here); "
                        "move it away or choose another --out")


def log_steps(plan: Plan) -> list[int]:
    """A few evenly spaced points in every stage, its end, and the run's last step."""
    points = {plan.planned_steps}
    for stage in plan.stages:
        for j in range(1, LOG_POINTS_PER_STAGE + 1):
            s = stage.first_step + round(stage.steps * j / LOG_POINTS_PER_STAGE)
            if 0 < s <= plan.planned_steps:
                points.add(s)
    return sorted(points)


class DataCache:
    """Each data condition loaded, and put on the device, once per group."""

    def __init__(self, data_dir: Path, device: torch.device) -> None:
        self.data_dir, self.device = data_dir, device
        self.datasets: dict[str, Dataset] = {}
        self.on_device: dict[str, torch.Tensor] = {}
        self.inputs: dict[tuple, EvaluationInputs] = {}

    def dataset(self, name: str) -> Dataset:
        if name not in self.datasets:
            self.datasets[name] = load_dataset(name, self.data_dir)
        return self.datasets[name]

    def train_tensor(self, name: str) -> torch.Tensor:
        if name not in self.on_device:
            train = np.ascontiguousarray(self.dataset(name).train, dtype=np.float32)
            self.on_device[name] = torch.from_numpy(train).to(self.device)
        return self.on_device[name]

    def evaluation_inputs(self, config: RunConfig) -> EvaluationInputs:
        key = evaluation_key(config)
        if key not in self.inputs:
            self.inputs[key] = evaluation_inputs(self.dataset(config.data), config)
        return self.inputs[key]


def new_member(config: RunConfig, run_dir: Path, run_id: str | None, sweep: str | None,
                data: DataCache, device: torch.device, options: ExecutionOptions,
                group_size: int) -> Member:
    dataset = data.dataset(config.data)
    plan = make_plan(config, dataset.train.shape[0])
    inputs = data.evaluation_inputs(config)
    env = environment_record(device, dataset.source_sha256, dataset.catalogue)
    env["execution"] = options.describe(device.type, group_size)
    noise, binarizer = member_generators(config, dataset.dynamic, device)
    return Member(
        config=config, run_dir=run_dir, plan=plan, dataset=dataset,
        log_points=frozenset(log_steps(plan)), stage_end_points=frozenset(plan.stage_ends()),
        source=MinibatchSource(dataset.train, config, plan, device,
                               data=data.train_tensor(config.data)),
        inputs=inputs, inputs_key=evaluation_key(config),
        curve_x=inputs.test[curve_subset(inputs.test.shape[0])].to(device),
        common={"run_id": run_id, "sweep": sweep, "env": env,
                "n_train": dataset.train.shape[0]},
        noise=noise, binarizer=binarizer,
    )


def resume_member(state: StackedState, i: int, member: Member, device: torch.device, single: bool
                  ) -> None:
    """Member i from its newest verified checkpoint (refused when it holds another run), or a
    continuation from its parent's final one; a fresh member is left as it is."""
    remove_checkpoint_temporaries(member.run_dir)  # the caller holds the run's training lock
    checkpoint = load_latest_checkpoint(member.run_dir, map_location=device)
    if checkpoint is not None:
        refuse_foreign(member.run_dir / CHECKPOINT_DIR, checkpoint.get("config"), member.config)
        state.restore(i, member, checkpoint, global_rng=single)
    elif member.config.init_from is not None:
        state.restore(i, member, continuation_parent(member.config), position=False,
                      global_rng=single)


def record_numerics(member: Member, numerics: str) -> None:
    """The numerics this run was trained with so far, now including this process's."""
    member.numerics_segments = numerics_segments(member.numerics_segments, member.step, numerics)
    execution = member.common["env"]["execution"]
    execution["numerics"] = numerics_of(member.numerics_segments)
    execution["numerics_segments"] = member.numerics_segments


def curve_subset(n_test: int) -> np.ndarray:
    return random_subset(n_test, CURVE_SUBSET_N, EVAL_SUBSET_SEED)
