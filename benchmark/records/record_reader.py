"""The one reader of what a run folder holds: result.json, config.json, metrics.csv and the
per-example arrays, each read inside the folder (run_folder), bounded in size, and validated
(record_schema) before anything uses it. Whatever is refused raises RecordError in one line; the
report lists it and goes on with the other runs.

Arrays are read with allow_pickle=False: an object array is a pickle, and loading one runs code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmark.records.curves import CURVES_FILE, CurveRow
from benchmark.records.record_schema import RESULT_FILE, validate_config, validate_record
from benchmark.records.run_folder import RecordError, inside, links_leading_out

CONFIG_FILE = "config.json"
MAX_JSON_BYTES = 4 << 20  # a record with every evaluation is tens of kilobytes
MAX_CSV_BYTES = 16 << 20  # a learning curve is a few hundred rows
MAX_ARRAY_BYTES = 1 << 30  # per-example values and a few images; no run writes a gigabyte
CURVE_COLUMNS = tuple(CurveRow.__dataclass_fields__)


def read_record(run_dir: Path) -> dict[str, Any]:
    """The validated result record of a run; RecordError when there is none or it is refused."""
    return _read_validated(run_dir, RESULT_FILE, validate_record)


def read_config(run_dir: Path) -> dict[str, Any]:
    """The validated run configuration (config.json) of a run."""
    return _read_validated(run_dir, CONFIG_FILE, validate_config)


def _read_validated(run_dir: Path, name: str, validate: Callable[[Any], None]) -> Any:
    value = read_run_json(run_dir, name)
    try:
        validate(value)
    except RecordError as err:
        raise RecordError(f"{name}: {err}") from None
    return value


def read_run_json(run_dir: Path, name: str, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file of the run folder (name relative to it), of at most `limit` bytes, parsed;
    RecordError in one line otherwise. The caller checks what it holds."""
    path = _bounded(run_dir, name, limit)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise RecordError(f"{name}: {first_line(err)}") from None


def read_curves(run_dir: Path, name: str = CURVES_FILE) -> pd.DataFrame:
    """The learning curve: the known columns, as numbers (a cell that is not one is NaN)."""
    path = _bounded(run_dir, name, MAX_CSV_BYTES)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as err:
        raise RecordError(f"{name}: {first_line(err)}") from None
    missing = [c for c in ("epoch", "train_bound_nll") if c not in frame.columns]
    if missing:
        raise RecordError(f"{name}: no column {missing[0]}")
    return pd.DataFrame({c: pd.to_numeric(frame[c], errors="coerce")
                         for c in CURVE_COLUMNS if c in frame.columns})


def read_array(run_dir: Path, name: str, *, header_only: bool = False) -> np.ndarray:
    """A per-example .npy array of numbers, never unpickled; header_only maps the file instead
    of reading it (enough to check what it holds)."""
    path = _bounded(run_dir, name, MAX_ARRAY_BYTES)
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r" if header_only else None)
    except (OSError, ValueError, EOFError) as err:
        reason = first_line(err)
        if "allow_pickle" in reason or "Python objects" in reason:
            reason = "an array of Python objects (a pickle), which is never loaded"
        raise RecordError(f"{name}: {reason}") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise RecordError(f"{name}: not a numeric .npy array")
    return array


def folder_problems(run_dir: Path, record: dict[str, Any]) -> list[str]:
    """What in a run folder whose record is readable is refused: links leading outside it,
    and recorded arrays and curves that do not read (one line each)."""
    problems = [f"a link leading outside the run folder, never followed: {link}"
                for link in links_leading_out(run_dir)]
    names = [*(record.get("artifacts") or {}).values()]
    for name in sorted({n for n in names if isinstance(n, str) and n.endswith(".npy")}):
        if (Path(run_dir) / name).exists() or (Path(run_dir) / name).is_symlink():
            try:
                read_array(run_dir, name, header_only=True)
            except RecordError as err:
                problems.append(str(err))
    return problems


def _bounded(run_dir: Path, name: str, limit: int) -> Path:
    """The path of `name` inside run_dir, when it is a file of at most `limit` bytes."""
    try:
        path = inside(run_dir, name)
        size = path.stat().st_size
    except RecordError as err:
        raise RecordError(f"{name}: {err}") from None
    except OSError as err:
        raise RecordError(f"{name}: {first_line(err)}") from None
    if not path.is_file():
        raise RecordError(f"{name}: not a file")
    if size > limit:
        raise RecordError(f"{name}: {size / 1e6:,.1f} MB, more than the {limit / 1e6:,.1f} MB "
                          "such a file may hold; not read")
    return path


def first_line(err: BaseException) -> str:
    """The first line of an error's message, at most 300 characters: a message for one line."""
    lines = str(err).strip().splitlines()
    return lines[0][:300] if lines else type(err).__name__
