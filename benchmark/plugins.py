"""A researcher's own objectives, defined outside the tree and loaded by name.

A plugin is a Python file or an importable module that holds OBJECTIVES, a sequence of
benchmark.definitions.ObjectiveDefinition whose bound is a callable of its own (see
examples/renyi_objective.py). It is loaded from

  - `--objective-module PATH_OR_MODULE` on the command line (repeatable), or plugins=[...] in
    the Python API;
  - $IWAE_OBJECTIVE_MODULES (paths or modules separated by the platform's path separator);
  - the entry point group `iwae_benchmark.objectives` of an installed package (the entry
    point names the module).

Code is never imported from a run folder: a record names its objective's plugin for people to
read, and opening a run of a plugin's objective without loading the plugin gets an error that
says which flag to add. Sweep workers (local processes and Ray tasks) load the same plugins
before they read a run's configuration (benchmark.sweeps.tasks).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import fields, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from benchmark.definitions import ObjectiveDefinition, register
from benchmark.errors import UserError

PLUGIN_FLAG = "--objective-module"
PLUGIN_ENV = "IWAE_OBJECTIVE_MODULES"
ENTRY_POINT_GROUP = "iwae_benchmark.objectives"
# The plugins loaded in this process: the spec as given (what records and labels name) -> where
# another process finds it (a file's absolute path: a worker may run in another directory).
_LOADED: dict[str, str] = {}
Plugin = tuple[str, str]  # (the spec as given, where it is)


def loaded_plugins() -> tuple[Plugin, ...]:
    """The plugins loaded in this process, as a worker process should load them."""
    return tuple(_LOADED.items())


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def _import(spec: str) -> tuple[ModuleType, str]:
    """The module and the spec that reaches it from any working directory."""
    if not _is_path(spec):
        return importlib.import_module(spec), spec
    path = Path(spec).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    name = f"iwae_objective_plugin_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name], str(path)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"{path} is not a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module, str(path)


def _definitions_of(module: ModuleType, spec: str) -> list[ObjectiveDefinition]:
    found = getattr(module, "OBJECTIVES", None)
    if found is None or isinstance(found, str | bytes) or not isinstance(found, Iterable):
        raise UserError(f"objective plugin {spec}: defines no objective; give the module "
                        f"OBJECTIVES = [ObjectiveDefinition(...), ...]")
    definitions = list(found)
    if not definitions:
        raise UserError(f"objective plugin {spec}: OBJECTIVES is empty")
    reserved = {f.name for f in _run_config_fields()}
    for i, definition in enumerate(definitions):
        where = f"objective plugin {spec}: OBJECTIVES[{i}]"
        if not isinstance(definition, ObjectiveDefinition):
            raise UserError(f"{where} is a {type(definition).__name__}, not an "
                            f"ObjectiveDefinition")
        if definition.bound is None and definition.terms is None:
            raise UserError(f"{where} ({definition.name}) defines no bound: give it bound=<a "
                            f"function of the log-weights (members, samples, examples)>")
        functions = {"bound": definition.bound, "encoder_bound": definition.encoder_bound,
                     "terms": definition.terms}
        for role, function in functions.items():
            if function is not None and not callable(function):
                raise UserError(f"{where} ({definition.name}): its {role} is not a function "
                                f"(got {type(function).__name__})")
        if definition.snr is not None:
            raise UserError(f"{where} ({definition.name}): the SNR study's estimators are the "
                            f"suite's (their seed streams are fixed); leave snr unset")
        if definition.paper:
            raise UserError(f"{where} ({definition.name}): only the paper's VAE and IWAE are "
                            f"paper=True")
        clash = [p.name for p in definition.parameters if p.name in reserved]
        if clash:
            raise UserError(f"{where} ({definition.name}): parameter name "
                            f"{', '.join(clash)} is a run setting already; rename it")
        try:  # the label names only the title, k and the parameters
            definition.label.format(title="T", k=1, **{p.name: 1 for p in definition.parameters})
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise UserError(f"{where} ({definition.name}): its label {definition.label!r} may "
                            f"name {{title}}, {{k}} and its parameters only ({err!r})") from err
    return definitions


def _run_config_fields():  # late: benchmark.config reads the definitions this module feeds
    from benchmark.config import RunConfig

    return fields(RunConfig)


def load_plugin(spec: str, location: str | None = None) -> tuple[str, ...]:
    """Load one plugin (from `location` when given: a worker loads the driver's file wherever it
    runs) and register its objectives under the spec as given; the names registered. Loading
    the same plugin twice is a no-op. Any failure: one UserError naming the plugin and the fix."""
    spec = spec.strip()
    if spec in _LOADED:
        return ()
    try:
        module, portable = _import(location or spec)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of foreign code, told in one line
        detail = f"{type(err).__name__}: {err}".splitlines()[0]
        raise UserError(f"objective plugin {spec} could not be loaded ({detail}); pass "
                        f"{PLUGIN_FLAG} a .py file or an importable module that defines "
                        f"OBJECTIVES") from err
    names = []
    for definition in _definitions_of(module, spec):
        try:
            register(replace(definition, plugin=spec))
        except ValueError as err:
            raise UserError(f"objective plugin {spec}: {err}") from err
        names.append(definition.name)
    _LOADED[spec] = portable
    return tuple(names)


def environment_plugins() -> list[str]:
    return [s for s in os.environ.get(PLUGIN_ENV, "").split(os.pathsep) if s.strip()]


def entry_point_plugins() -> list[str]:
    return [ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP)]


def load_plugins(specs: Sequence[str | Plugin] = ()) -> tuple[str, ...]:
    """Every plugin installed (entry points), named in $IWAE_OBJECTIVE_MODULES, and in specs
    (a spec, or a (spec, location) pair of loaded_plugins()); the objective names registered."""
    names: list[str] = []
    for spec in (*entry_point_plugins(), *environment_plugins(), *specs):
        names += load_plugin(*spec) if isinstance(spec, tuple) else load_plugin(spec)
    return tuple(names)
