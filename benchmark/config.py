"""What one run is: the configuration every other module reads, and its protocol constants."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
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
            (self.epochs is None or self.epochs > 0, "--epochs must be positive"),
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
        from pathlib import Path

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
