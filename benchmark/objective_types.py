"""The kinds of definition (benchmark.definitions reads and registers them): a parameter, an
objective, a gradient estimator, the role of either in the SNR study, and a published value."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Value = int | float
# A bound or surrogate: a callable, or "package.module:function" resolved when first needed.
FunctionRef = str | Callable[..., Any]
# A run's objective parameters, in the definition's order: (("m", 8),), (("beta", 0.05),).
Params = tuple[tuple[str, Value], ...]
SAME, SAME_AT_K1 = "same", "same at k=1"  # what SNR's agreement test expects of a mean


@dataclass(frozen=True)
class Parameter:
    """One parameter of an objective. Its name is the flag (--name), the key in config.json and
    the run-id token (_<name><value:g>, e.g. _m8, _beta0.05)."""

    name: str
    kind: type  # int or float
    help: str
    minimum: float | None = None
    maximum: float | None = None
    multiplies_samples: bool = False  # MIWAE's M: M x K importance samples per example

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"parameter name {self.name!r}: a lower-case identifier")
        if self.kind not in (int, float):
            raise ValueError(f"parameter {self.name}: kind must be int or float")

    def problem(self, value: Any) -> str | None:
        """Why `value` is not a valid setting of this parameter, or None."""
        kinds = (int,) if self.kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
            return f"--{self.name} must be {'an integer' if self.kind is int else 'a number'}"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not low <= value <= high:
            return f"--{self.name} must be between {low:g} and {high:g}"
        if low is not None and value < low:
            return f"--{self.name} must be at least {low:g}"
        if high is not None and value > high:
            return f"--{self.name} must be at most {high:g}"
        return None

    def coerce(self, value: Any) -> Value:
        """The value as the parameter's kind (a float parameter given 1 keeps 1.0)."""
        return float(value) if self.kind is float and not isinstance(value, bool) else value


@dataclass(frozen=True)
class SnrRole:
    """How `diagnose --snr` treats an estimator of the IWAE-K gradient (or the ELBO's).

    stream: its index in the seed derivation of the draws (fixed forever: changing it changes
    every measured draw). predictions: (network, "falls" | "rises" | "does not fall", source).
    means: network -> SAME or SAME_AT_K1 (biased otherwise), what the test of the means against
    IWAE's expects; a network not named carries no expectation."""

    stream: int
    name: str
    color: str
    default: bool = False
    predictions: tuple[tuple[str, str, str], ...] = ()
    means: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedValue:
    """A published test NLL of this objective on another protocol: reference data, never a
    measurement. source: {"paper", "table", "page", "location"} as the report cites it."""

    data: str
    layers: int
    k: int
    nll: float
    source: Mapping[str, Any]
    protocol: str
    differences: str
    params: Mapping[str, Value] = field(default_factory=dict)
    spread: float | None = None  # the quoted +/- over runs, when the source gives one
    quoted_from: str | None = None  # the paper a secondary source quotes the number from


@dataclass(frozen=True)
class ObjectiveDefinition:
    """One objective. bound(log_w, **params) maps log-weights (M, S, B), S importance samples
    per example, to each member's bound per example (M, B); autograd through it is the
    objective's gradient unless encoder_bound or terms say otherwise."""

    name: str
    summary: str  # what --help says of it
    bound: FunctionRef
    parameters: tuple[Parameter, ...] = ()
    title: str | None = None  # the label's name; default: NAME
    label: str = "{title} k={k}"  # str.format with title, k and every parameter
    order: int = 100  # its place among objectives of the same number of samples
    reference: str = ""  # the paper it comes from; --help cites it
    # PIWAE: the encoder follows this bound's gradient, the decoder the bound's.
    encoder_bound: FunctionRef | None = None
    # Full control: terms(log_joint, log_q, log_w, **params) -> (bound, surrogate, encoder
    # surrogate or None), each (M, B); for objectives that are not autograd through a bound.
    terms: FunctionRef | None = None
    stops_samples: bool = False  # RWS: the samples' path is cut (wake-phase update of q)
    paper: bool = False  # VAE and IWAE: Table 1's objectives, on the paper's exact code path
    grid: tuple[tuple[int, Mapping[str, Value]], ...] = ()  # (k, params) the estimators grid trains
    published: tuple[PublishedValue, ...] = ()
    snr: SnrRole | None = None
    plugin: str | None = None  # None: part of the suite; else the plugin that registered it

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum() or self.name != self.name.lower():
            raise ValueError(f"objective name {self.name!r}: lower-case letters, digits and _")
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"objective {self.name}: a parameter is named twice")

    @property
    def display(self) -> str:
        return self.title or self.name.upper()


@dataclass(frozen=True)
class EstimatorDefinition:
    """A gradient estimator of another objective's bound (--estimator): the bound reported is
    that objective's; the network routing below changes its gradient (benchmark.models)."""

    name: str
    summary: str
    title: str
    of: str  # the objective whose bound it estimates the gradient of
    stops_q_params: bool = False  # q's parameters stopped inside log q (STL, DReG)
    reweights_sample_gradients: bool = False  # DReG: the samples' gradient scaled by w~
    max_layers: int | None = None
    layers_reason: str = ""
    order: int = 100
    reference: str = ""
    grid: tuple[int, ...] = ()  # the ks at which the estimators grid trains it
    published: tuple[PublishedValue, ...] = ()
    snr: SnrRole | None = None
