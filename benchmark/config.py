"""What one run is: the configuration every other module reads, and its protocol constants."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from benchmark.errors import UserError

BATCH_SIZE = 20
PROTOCOL_EPOCHS = 3280  # sum of 3^i for the 8 stages i = 0..7
CONTINUATION_EPOCHS = 3**7  # the Section 5.2 continuation with the other objective
MODELS = ("vae", "iwae")  # the paper's two objectives
# Every objective a run can train (--model): the paper's two, and those that came after it
# (Rainforth et al. 2018: MIWAE, CIWAE, PIWAE; Bornschein & Bengio 2015: reweighted wake-sleep).
OBJECTIVES = (*MODELS, "miwae", "ciwae", "piwae", "rws")
# Gradient estimators of the IWAE bound other than the reparameterisation gradient (--estimator):
# sticking the landing (Roeder et al. 2017) and doubly reparameterised (Tucker et al. 2018).
ESTIMATORS = ("stl", "dreg")
# Fields that older records do not have: left out of to_dict while unset, so that every vae/iwae
# run keeps its config.json, result.json and run id exactly as before they existed.
OPTIONAL_FIELDS = ("estimator", "m", "beta")
FIDELITIES = ("code", "paper")
SCHEDULES = ("full", "quick", "smoke")
# The data conditions (benchmark/data/splits.py says what each holds): the paper's three, and
# dynamic binarization of exactly the 50,000 images behind the fixed training file.
DATA_CONDITIONS = ("mnist-dynamic", "mnist-fixed", "mnist-dynamic-lm50k", "omniglot")
MNIST_CONDITIONS = ("mnist-dynamic", "mnist-fixed", "mnist-dynamic-lm50k")
# The sweep grids (benchmark/sweeps/grids.py says what each trains) and their data conditions.
# binarization-causes trains the three MNIST conditions that take the fixed-vs-dynamic gap
# apart: LM's one draw, fresh draws of the same 50,000 images, fresh draws of the paper's 59,600.
GRID_DATA = {
    "table1": ("mnist-dynamic", "omniglot"),
    "binarization": ("mnist-dynamic", "mnist-fixed"),
    "binarization-causes": ("mnist-fixed", "mnist-dynamic-lm50k", "mnist-dynamic"),
    "table2": ("mnist-dynamic",),
    "estimators": ("mnist-dynamic",),
}
GRIDS = tuple(GRID_DATA)

def default_data_dir() -> Path:
    """$IWAE_DATA_DIR, else datasets/ (where `python -m benchmark fetch` puts the files)."""
    return Path(os.environ.get("IWAE_DATA_DIR", "datasets"))


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
    estimator: str | None = None  # None: the objective's own (reparameterisation) gradient
    m: int | None = None  # MIWAE / PIWAE: the number of IWAE-k bounds averaged
    beta: float | None = None  # CIWAE: the weight of the ELBO

    def __post_init__(self) -> None:
        checks = [
            (self.data in DATA_CONDITIONS, f"--data must be one of {', '.join(DATA_CONDITIONS)}"),
            (self.model in OBJECTIVES, f"--model must be one of {', '.join(OBJECTIVES)}"),
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
            *objective_checks(self.model, self.layers, self.estimator, self.m, self.beta),
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

    @property
    def samples(self) -> int:
        """Importance samples drawn per example and step: k, or M x K for MIWAE and PIWAE."""
        return self.k * (self.m or 1)

    @property
    def is_plain(self) -> bool:
        """A VAE or IWAE with its reparameterisation gradient: a run of the paper's grids."""
        return self.model in MODELS and all(getattr(self, f) is None for f in OPTIONAL_FIELDS)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for name in OPTIONAL_FIELDS:
            if d[name] is None:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def objective_checks(model: str, layers: int, estimator: str | None, m: int | None,
                     beta: float | None) -> list[tuple[bool, str]]:
    """Which objectives take which parameters: each mistake with the line that fixes it."""
    return [
        (estimator is None or estimator in ESTIMATORS,
         f"--estimator must be one of {', '.join(ESTIMATORS)}"),
        (estimator is None or model == "iwae",
         f"--estimator {estimator} is a gradient estimator of the IWAE bound: use it with "
         f"--model iwae (got --model {model})"),
        # Tucker et al.'s estimator is derived for one stochastic layer; the hierarchical form
        # (Bauer & Mnih 2021) is not implemented, so two layers are refused rather than guessed.
        (estimator != "dreg" or layers == 1,
         "--estimator dreg is defined for one stochastic layer (Tucker et al. 2018): use "
         "--layers 1, or --estimator stl for two layers"),
        (model not in ("miwae", "piwae") or m is not None,
         f"--model {model} needs --m M (the number of IWAE-k bounds it averages)"),
        (m is None or model in ("miwae", "piwae"),
         f"--m applies to --model miwae or piwae only (got --model {model})"),
        (m is None or m >= 1, "--m must be at least 1"),
        (model != "ciwae" or beta is not None,
         "--model ciwae needs --beta B (the ELBO's weight, between 0 and 1)"),
        (beta is None or model == "ciwae",
         f"--beta applies to --model ciwae only (got --model {model})"),
        (beta is None or 0.0 <= beta <= 1.0, "--beta must be between 0 and 1"),
    ]


def objective_token(config: RunConfig) -> str:
    """The objective in a run id: the model, then its estimator and parameters, e.g. iwae,
    iwae-dreg, miwae_m8, ciwae_beta0.05 (the k follows in the id)."""
    token = config.model if config.estimator is None else f"{config.model}-{config.estimator}"
    if config.m is not None:
        token += f"_m{config.m}"
    if config.beta is not None:
        token += f"_beta{config.beta:g}"
    return token


ESTIMATOR_LABELS = {"stl": "STL", "dreg": "DReG"}
# How a person reads the gradient estimators that `diagnose --snr` compares (of the IWAE-K
# gradient, and the VAE's): one spelling for the terminal, the figure and the report.
SNR_ESTIMATOR_NAMES = {"iwae": "IWAE", **{e: f"IWAE-{label}" for e, label in
                                          ESTIMATOR_LABELS.items()}, "rws": "RWS", "vae": "VAE"}


def objective_label(model: str, k: int, estimator: str | None = None, m: int | None = None,
                    beta: float | None = None) -> str:
    """How a person reads the objective: IWAE k=50, IWAE-DReG k=50, MIWAE(M=8, K=8),
    CIWAE(beta=0.05) k=64, RWS k=5."""
    name = model.upper()
    if estimator is not None:
        name += f"-{ESTIMATOR_LABELS.get(estimator, estimator)}"
    if m is not None:
        return f"{name}(M={m}, K={k})"
    if beta is not None:
        return f"{name}(β={beta:g}) k={k}"
    return f"{name} k={k}"


def run_id(config: RunConfig) -> str:
    """A readable, stable name, e.g. mnist-dynamic_iwae_k50_L2_s0_code_full, or
    mnist-dynamic_miwae_m8_k8_L1_s0_code_full for an objective beyond the paper's. Cut runs and
    non-default evaluations get a suffix, so they are never mistaken for a full run."""
    if config.init_from is not None:
        base = Path(config.init_from).name
        name = f"{base}_to_{objective_token(config)}_k{config.k}"
    else:
        name = (f"{config.data}_{objective_token(config)}_k{config.k}_L{config.layers}_"
                f"s{config.seed}_{config.fidelity}_{config.schedule}")
    return name + cut_suffix(config)


def cut_suffix(config: RunConfig) -> str:
    """Every flag that makes a run shorter or its evaluation smaller shows in its id."""
    flags = ("stages", "epochs", "steps", "eval_k", "eval_n")
    values = [(flag.replace("_", ""), getattr(config, flag)) for flag in flags]
    return "".join(f"_{name}{value:g}" for name, value in values if value is not None)


# Fields that define what a run is. `device` only says where it runs, so a run trained on a GPU
# is the same run as one asked for with --device auto.
IDENTITY_FIELDS = ("data", "model", "k", "layers", "seed", "fidelity", "schedule", "stages",
                   "epochs", "steps", "estimator", "m", "beta")


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
