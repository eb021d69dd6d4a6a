"""What a result record (result.json) and a run configuration (config.json) may hold, checked
before anything reads them: a record from another machine is data to validate, not to trust.

Two checks. plain_json_problem walks every value: strings bounded, numbers finite (the writer
refuses NaN, so a NaN was put there by something else), nesting bounded. The schema then gives the
known fields their types (benchmark.records.results documents them) and rejects unknown top-level
keys; unknown keys inside a section are allowed, so that a newer evaluation's additions do not
make older readers refuse a record. Recorded file names must stay inside the run folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from benchmark.records.run_folder import RecordError, relative_name_problem

RESULT_FILE = "result.json"
EVALUATIONS_DIR = "evaluations"  # a run's later evaluations: summaries and per-example values
STATUSES = ("complete", "running", "failed", "unavailable")
MAX_STRING_CHARS = 16_384  # a reason, a command line, a path: far longer is not a record's
MAX_DEPTH = 32


@dataclass(frozen=True)
class Opt:  # the value may also be null
    spec: Any


@dataclass(frozen=True)
class ListOf:
    spec: Any


@dataclass(frozen=True)
class MapOf:  # an object whose keys are names and whose values all follow spec
    spec: Any


@dataclass(frozen=True)
class OneOf:
    choices: tuple[str, ...]


NUM, INT, STR, BOOL, PATH, ANY = "number", "integer", "string", "boolean", "file name", "any"
_OPT_NUM, _OPT_INT, _OPT_STR = Opt(NUM), Opt(INT), Opt(STR)

CONFIG = {"data": STR, "model": STR, "k": INT, "layers": INT, "seed": INT, "fidelity": STR,
          "schedule": STR, "stages": _OPT_INT, "epochs": _OPT_NUM, "steps": _OPT_INT,
          "eval_k": _OPT_INT, "eval_n": _OPT_INT, "device": STR, "init_from": _OPT_STR,
          "estimator": _OPT_STR, "m": _OPT_INT, "beta": _OPT_NUM, "batch_size": INT,
          "train_size": INT, "test_binarization_seed": INT}
_EVALUATION = {"name": STR, "file": Opt(PATH)}  # an AIS summary; its numbers pass the walk
_SCORE = {"loglik": PATH, "index": PATH}  # a test-binarization score (evaluate --test)
METRICS = {"test_nll": _OPT_NUM, "test_nll_se": _OPT_NUM, "train_nll": _OPT_NUM,
           "train_nll_se": _OPT_NUM, "train_eval_n": _OPT_INT, "active_units": ListOf(INT),
           "unit_variances": ListOf(ListOf(NUM)), "test_nll_pruned": _OPT_NUM,
           "eval_k": _OPT_INT, "eval_n": _OPT_INT, "ais": Opt(_EVALUATION),
           "ais_evaluations": MapOf(_EVALUATION), "bdmc": Opt({"rows": ListOf({})}),
           "tests": MapOf(_SCORE), "stages": MapOf(MapOf(_SCORE))}
RECORD = {
    "run_id": _OPT_STR, "sweep": _OPT_STR, "config": CONFIG, "status": OneOf(STATUSES),
    "reason": _OPT_STR,
    "failure": Opt({"step": _OPT_INT, "epoch": _OPT_NUM, "reason": _OPT_STR}),
    "progress": Opt({"epochs": _OPT_NUM, "epochs_planned": _OPT_NUM, "epochs_total": _OPT_NUM,
                     "steps": _OPT_INT, "steps_planned": _OPT_INT, "stage": _OPT_INT,
                     "resumed_from": ListOf(INT)}),
    "metrics": Opt(METRICS), "curves": Opt(PATH), "artifacts": Opt(MapOf(PATH)),
    "environment": Opt({"package_version": _OPT_STR, "torch": _OPT_STR, "python": _OPT_STR,
                        "device": _OPT_STR, "git_commit": _OPT_STR,
                        "dataset_sha256": MapOf(STR), "dataset_catalogue": _OPT_STR,
                        "execution": Opt({})}),
    "timing": Opt({"train_s": _OPT_NUM, "eval_s": _OPT_NUM}),
    "command": _OPT_STR,
    "plugin": Opt({"objective": STR, "module": STR}),  # an objective of a researcher's own
}


def validate_record(record: Any) -> None:
    """RecordError (one line) unless `record` is a result record."""
    _check_plain(record)
    if not isinstance(record, dict):
        raise RecordError(f"a JSON {_kind(record)}, not a record")
    unknown = sorted(set(record) - set(RECORD))
    if unknown:
        raise RecordError(f"unknown top-level key {unknown[0][:80]!r}")
    if "status" not in record:
        raise RecordError("no status")
    _check(record, RECORD, "")


def validate_config(config: Any) -> None:
    """RecordError (one line) unless `config` is a run configuration (config.json)."""
    _check_plain(config)
    if not isinstance(config, dict):
        raise RecordError(f"a JSON {_kind(config)}, not a run configuration")
    _check(config, CONFIG, "")


def _check_plain(value: Any) -> None:
    problem = plain_json_problem(value)
    if problem:
        raise RecordError(problem)


def plain_json_problem(value: Any, where: str = "", depth: int = 0) -> str | None:
    """Why a parsed JSON value is not a plain record value (None when it is one)."""
    if depth > MAX_DEPTH:
        return f"{where or 'the value'} is nested more than {MAX_DEPTH} deep"
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        return (f"{where or 'a value'} is a string of {len(value):,} characters, more than "
                f"the {MAX_STRING_CHARS:,} a record's strings may have")
    if isinstance(value, float) and not math.isfinite(value):
        return f"{where or 'a value'} is {value}, where a record's numbers are finite"
    items = value.items() if isinstance(value, dict) else enumerate(value) \
        if isinstance(value, list) else ()
    for key, item in items:
        name = f"{where}.{key}" if where else str(key)
        if isinstance(key, str) and len(key) > MAX_STRING_CHARS:
            return f"{where or 'the record'} has a key of {len(key):,} characters"
        problem = plain_json_problem(item, name[:200], depth + 1)
        if problem:
            return problem
    return None


def _check(value: Any, spec: Any, where: str) -> None:
    """RecordError naming the first field of `value` that does not follow `spec`."""
    if isinstance(spec, Opt):
        if value is None:
            return
        spec = spec.spec
    if not _fits(value, spec):
        raise RecordError(f"{where or 'the record'} is {_describe(value)}, not "
                          f"{_expected(spec)}")
    if spec == PATH:
        problem = relative_name_problem(value)
        if problem:
            raise RecordError(f"{where}: {problem}")
    elif isinstance(spec, dict):
        for key, sub in spec.items():
            if key in value:
                _check(value[key], sub, f"{where}.{key}" if where else key)
    elif isinstance(spec, MapOf | ListOf):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            _check(item, spec.spec, f"{where}[{str(key)[:80]!r}]")


def _fits(value: Any, spec: Any) -> bool:
    if isinstance(spec, OneOf):
        return isinstance(value, str) and value in spec.choices
    if isinstance(spec, dict | MapOf):
        return isinstance(value, dict)
    if isinstance(spec, ListOf):
        return isinstance(value, list)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return {NUM: number, INT: number and isinstance(value, int), STR: isinstance(value, str),
            PATH: isinstance(value, str), BOOL: isinstance(value, bool)}.get(spec, True)


def _expected(spec: Any) -> str:
    if isinstance(spec, OneOf):
        return "one of " + ", ".join(spec.choices)
    if isinstance(spec, dict | MapOf):
        return "an object"
    if isinstance(spec, ListOf):
        return "a list"
    return f"an {spec}" if spec[0] in "aeiou" else f"a {spec}"


def _kind(value: Any) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the string {value[:40]!r}" + ("..." if len(value) > 40 else "")
    return f"a JSON {_kind(value)}"
