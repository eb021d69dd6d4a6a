"""What one run is: the configuration every other module reads, and its protocol constants."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

BATCH_SIZE = 20
PROTOCOL_EPOCHS = 3280  # sum of 3^i for the 8 stages i = 0..7
CONTINUATION_EPOCHS = 3**7  # the Section 5.2 continuation with the other objective
MODELS = ("vae", "iwae")
FIDELITIES = ("code", "paper")
SCHEDULES = ("full", "quick", "smoke")
DATA_CONDITIONS = ("mnist-dynamic", "mnist-fixed", "omniglot")

# Evaluation defaults per schedule: the protocol's L_5000 on the whole test set, except the smoke
# schedule, which exists to exercise the machinery in seconds.
SMOKE_STEPS = 60
SMOKE_EVAL_K = 100
SMOKE_EVAL_N = 200


@dataclass(frozen=True)
class RunConfig:
    data: str
    model: str
    k: int
    layers: int
    seed: int = 0
    fidelity: str = "code"
    schedule: str = "full"
    stages: int | None = None
    epochs: float | None = None
    steps: int | None = None
    eval_k: int | None = None
    eval_n: int | None = None
    device: str = "auto"
    init_from: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.data in DATA_CONDITIONS, f"--data must be one of {', '.join(DATA_CONDITIONS)}"),
            (self.model in MODELS, "--model must be vae or iwae"),
            (self.k >= 1, "--k must be at least 1"),
            (self.layers in (1, 2), "--layers must be 1 or 2"),
            (self.fidelity in FIDELITIES, "--fidelity must be code or paper"),
            (self.schedule in SCHEDULES, "--schedule must be full, quick or smoke"),
            (self.stages is None or 1 <= self.stages <= 8, "--stages must be between 1 and 8"),
            (self.epochs is None or (self.epochs > 0 and math.isfinite(self.epochs)),
             "--epochs must be a positive finite number"),
            (self.steps is None or self.steps > 0, "--steps must be positive"),
            (self.eval_k is None or self.eval_k >= 1, "--eval-k must be at least 1"),
            (self.eval_n is None or self.eval_n >= 1, "--eval-n must be at least 1"),
            (self.device in ("auto", "cpu", "cuda"), "--device must be auto, cpu or cuda"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def effective_eval_k(self) -> int:
        if self.eval_k is not None:
            return self.eval_k
        return SMOKE_EVAL_K if self.schedule == "smoke" else 5000

    @property
    def effective_eval_n(self) -> int | None:
        """None means the whole test set."""
        if self.eval_n is not None:
            return self.eval_n
        return SMOKE_EVAL_N if self.schedule == "smoke" else None

    @property
    def is_cut(self) -> bool:
        """True when the run stops before its schedule's natural end (never a reproduction)."""
        return any(v is not None for v in (self.stages, self.epochs, self.steps))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def run_id(config: RunConfig) -> str:
    """A readable, stable name, e.g. mnist-dynamic_iwae_k50_L2_s0_code_full. Cut runs and
    non-default evaluations get a suffix, so they are never mistaken for a full run."""
    if config.init_from is not None:
        base = Path(config.init_from).name
        name = f"{base}_to_{config.model}_k{config.k}"
    else:
        name = (f"{config.data}_{config.model}_k{config.k}_L{config.layers}_s{config.seed}_"
                f"{config.fidelity}_{config.schedule}")
    return name + cut_suffix(config)


def cut_suffix(config: RunConfig) -> str:
    """Every flag that makes a run shorter or its evaluation smaller shows in its id."""
    flags = ("stages", "epochs", "steps", "eval_k", "eval_n")
    values = [(flag.replace("_", ""), getattr(config, flag)) for flag in flags]
    return "".join(f"_{name}{value:g}" for name, value in values if value is not None)


# Fields that define what a run is. `device` only says where it runs, so a run trained on a GPU
# is the same run as one asked for with --device auto.
IDENTITY_FIELDS = ("data", "model", "k", "layers", "seed", "fidelity", "schedule", "stages",
                   "epochs", "steps")


def identity_of(config: RunConfig) -> dict[str, Any]:
    ident: dict[str, Any] = {name: getattr(config, name) for name in IDENTITY_FIELDS}
    ident["eval_k"] = config.effective_eval_k
    ident["eval_n"] = config.effective_eval_n
    # The base run by its id: the results folder may be reached by another path next time.
    ident["init_from"] = Path(config.init_from).name if config.init_from else None
    return ident


def config_differences(recorded: Any, requested: RunConfig) -> list[str]:
    """'field: recorded -> requested' for every identity field that differs, comparing a
    configuration stored in a record or a checkpoint (a dict) with the one asked for."""
    if not isinstance(recorded, dict):
        return [f"unreadable config ({type(recorded).__name__}, not an object)"]
    try:
        recorded_config = RunConfig.from_dict(recorded)
    except (UserError, TypeError, ValueError) as err:
        return [f"unreadable config ({err})"]
    old, new = identity_of(recorded_config), identity_of(requested)
    return [f"{name}: {old[name]!r} -> {new[name]!r}" for name in new if old[name] != new[name]]
