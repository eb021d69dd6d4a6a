"""What an objective or a gradient estimator is, described once: the one place every other part
of the suite (run configurations, the command line, run ids and labels, grids, records, the
report, the SNR study) reads it from.

A definition holds facts and references, never tensor code: the bound itself is a function in
benchmark.models.objectives (named here as "module:function", so that the report, which never
imports the models, can still read the definition) or, for a plugin, any callable. The built-in
definitions are in benchmark.builtin_objectives; benchmark.plugins registers a researcher's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmark.builtin_objectives import BUILTINS
from benchmark.objective_types import (
    SAME,
    SAME_AT_K1,
    EstimatorDefinition,
    FunctionRef,
    ObjectiveDefinition,
    Parameter,
    Params,
    PublishedValue,
    SnrRole,
    Value,
)

__all__ = ["SAME", "SAME_AT_K1", "EstimatorDefinition", "FunctionRef", "ObjectiveDefinition",
           "Parameter", "Params", "PublishedValue", "SnrRole", "Value", "register"]
_OBJECTIVES: dict[str, ObjectiveDefinition] = {}
_ESTIMATORS: dict[str, EstimatorDefinition] = {}


def register(definition: ObjectiveDefinition | EstimatorDefinition) -> None:
    """Add a definition; a name already taken is refused (a plugin never replaces one)."""
    table: dict = _OBJECTIVES if isinstance(definition, ObjectiveDefinition) else _ESTIMATORS
    taken = _OBJECTIVES.get(definition.name) or _ESTIMATORS.get(definition.name)
    if taken is not None and taken != definition:
        owner = getattr(taken, "plugin", None) or "the suite"
        raise ValueError(f"the name {definition.name!r} is taken (by {owner})")
    for p in getattr(definition, "parameters", ()):
        clash = [o.name for o in _OBJECTIVES.values() for q in o.parameters
                 if q.name == p.name and q.kind is not p.kind]
        if clash:
            raise ValueError(f"--{p.name} of {definition.name} is {p.kind.__name__}, but "
                             f"{', '.join(clash)} take --{p.name} as another kind: rename it")
    table[definition.name] = definition


def objectives() -> tuple[ObjectiveDefinition, ...]:
    """Every registered objective: the suite's, then plugins', in the order registered."""
    return tuple(_OBJECTIVES.values())


def estimators() -> tuple[EstimatorDefinition, ...]:
    return tuple(_ESTIMATORS.values())


def objective_names() -> tuple[str, ...]:
    return tuple(d.name for d in objectives())


def estimator_names() -> tuple[str, ...]:
    return tuple(d.name for d in estimators())


def paper_objectives() -> tuple[str, ...]:
    """The paper's own objectives (vae, iwae): the models of Tables 1-3."""
    return tuple(d.name for d in objectives() if d.paper)


def find_objective(name: str | None) -> ObjectiveDefinition | None:
    return _OBJECTIVES.get(name or "")


def find_estimator(name: str | None) -> EstimatorDefinition | None:
    return _ESTIMATORS.get(name or "")


def parameters() -> tuple[Parameter, ...]:
    """Every parameter of a registered objective, once each (the --flags)."""
    seen: dict[str, Parameter] = {}
    for definition in objectives():
        for p in definition.parameters:
            seen.setdefault(p.name, p)
    return tuple(seen.values())


def parameter_names() -> tuple[str, ...]:
    return tuple(p.name for p in parameters())


def users_of(parameter: str) -> list[str]:
    return [d.name for d in objectives() if any(p.name == parameter for p in d.parameters)]


def normalise_params(model: str, params: Mapping[str, Any] | Params | None) -> Params:
    """`params` in the definition's parameter order, each coerced to its kind (unknown names
    are kept at the end, for the checks to refuse)."""
    given = dict(params or {})
    definition = find_objective(model)
    ordered: list[tuple[str, Value]] = []
    if definition is not None:
        for p in definition.parameters:
            if p.name in given and given[p.name] is not None:
                ordered.append((p.name, p.coerce(given.pop(p.name))))
    ordered += [(n, v) for n, v in given.items() if v is not None]
    return tuple(ordered)


def objective_checks(model: str, layers: int, estimator: str | None,
                     params: Params) -> list[tuple[bool, str]]:
    """Which objectives take which estimator and parameters: each mistake with the line that
    fixes it."""
    definition = find_objective(model)
    if definition is None:
        return [(False, f"--model must be one of {', '.join(objective_names())} (an objective "
                        f"of your own: load its plugin with --objective-module)")]
    checks: list[tuple[bool, str]] = []
    chosen = find_estimator(estimator)
    if estimator is not None:
        of = chosen.of if chosen is not None else "?"
        checks += [
            (chosen is not None, f"--estimator must be one of {', '.join(estimator_names())}"),
            (chosen is None or of == model,
             f"--estimator {estimator} is a gradient estimator of the {of.upper()} bound: use "
             f"it with --model {of} (got --model {model})"),
            (chosen is None or chosen.max_layers is None or layers <= chosen.max_layers,
             f"--estimator {estimator} is {chosen and chosen.layers_reason}"),
        ]
    given = dict(params)
    mine = {p.name for p in definition.parameters}
    for p in definition.parameters:
        if p.name not in given:
            checks.append((False, f"--model {model} needs --{p.name} {p.name.upper()} "
                                  f"({p.help})"))
        else:
            problem = p.problem(given[p.name])
            checks.append((problem is None, problem or ""))
    for name in given:
        if name not in mine:
            users = users_of(name)
            where = f"--model {' or '.join(users)} only" if users else "no registered objective"
            checks.append((False, f"--{name} applies to {where} (got --model {model})"))
    return checks


def samples_factor(model: str, params: Params) -> int:
    """How many times k the importance samples per example are (M for MIWAE and PIWAE)."""
    definition = find_objective(model)
    if definition is None:
        return 1
    given, factor = dict(params), 1
    for p in definition.parameters:
        if p.multiplies_samples and p.name in given:
            factor *= int(given[p.name])
    return factor


def objective_token(model: str, estimator: str | None, params: Params) -> str:
    """The objective in a run id: iwae, iwae-dreg, miwae_m8, ciwae_beta0.05 (k follows)."""
    token = model if estimator is None else f"{model}-{estimator}"
    return token + "".join(f"_{name}{value:g}" for name, value in params)


def objective_label(model: str, k: int, estimator: str | None = None,
                    params: Params | Mapping[str, Value] | None = None) -> str:
    """How a person reads the objective: IWAE k=50, IWAE-DReG k=50, MIWAE(M=8, K=8),
    CIWAE(β=0.05) k=64, RWS k=5; an objective whose plugin is not loaded: NAME(p=v) k=K."""
    settings = dict(params or {})
    chosen = find_estimator(estimator)
    if chosen is not None:
        return f"{chosen.of.upper()}-{chosen.title} k={k}"
    if estimator is not None:
        return f"{model.upper()}-{estimator} k={k}"
    definition = find_objective(model)
    if definition is None:
        inner = ", ".join(f"{n}={v:g}" for n, v in settings.items())
        return f"{model.upper()}{f'({inner})' if inner else ''} k={k}"
    values = {n: f"{v:g}" for n, v in settings.items()}
    return definition.label.format(title=definition.display, k=k, **values)


def order_key(model: str, estimator: str | None) -> int:
    """Where an objective is listed among those with the same number of samples."""
    chosen = find_estimator(estimator)
    if chosen is not None:
        return chosen.order
    definition = find_objective(model)
    return definition.order if definition is not None and estimator is None else 1000


def listing_order(model: str, k: int, estimator: str | None, params: Params) -> tuple:
    """How the grid and the report list objectives: by importance samples per example, then
    by their definitions' order, their parameters' values, their name."""
    return (k * samples_factor(model, params), order_key(model, estimator),
            tuple(value for _, value in params), model)


def is_plugin(model: str | None) -> bool:
    """True unless the objective is part of the suite (a plugin's, loaded or not)."""
    definition = find_objective(model)
    return definition is None or definition.plugin is not None


def snr_roles() -> dict[str, SnrRole]:
    """Every estimator `diagnose --snr` can measure, by name, in stream order."""
    roles = [(d.name, d.snr) for d in (*objectives(), *estimators()) if d.snr is not None]
    return dict(sorted(roles, key=lambda item: item[1].stream))


def default_snr_estimators() -> tuple[str, ...]:
    """The estimators `diagnose --snr` compares unless told otherwise."""
    return tuple(name for name, role in snr_roles().items() if role.default)


def snr_names() -> dict[str, str]:
    """How a person reads each SNR estimator: IWAE, IWAE-STL, IWAE-DReG, RWS, VAE."""
    return {name: role.name for name, role in snr_roles().items()}


def describe(definition: ObjectiveDefinition | EstimatorDefinition) -> str:
    """How --help names a definition: 'miwae: the mean of M IWAE-K bounds (Rainforth et al.
    2018)'."""
    cited = f" ({definition.reference})" if definition.reference else ""
    return f"{definition.name}: {definition.summary}{cited}"


def describe_objectives() -> str:
    """Every objective for --help, one after the other."""
    return "; ".join(describe(d) for d in objectives())


for _definition in BUILTINS:
    register(_definition)
