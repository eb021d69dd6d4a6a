"""Checkpoints: written atomically with a checksum and checked on disk, the previous verified one
kept beside the newest, so a run killed at any moment (or whose newest checkpoint is corrupted
later) resumes from a checkpoint that verifies.

A checkpoint holds everything an exact resume needs: model and optimizer state, the position in
the schedule, every random generator's state, the learning-curve rows so far, and the time spent.
It is stored as tensors and plain values (checkpoint_format) and read with
torch.load(weights_only=True): opening a run folder from elsewhere never runs code from it. The
pickled checkpoints of older versions are read only on an opt-in (pickled_checkpoints), and then
rewritten in the plain form once.
"""

from __future__ import annotations

import errno
import hashlib
import io
import pickle
import re
import sys
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError
from benchmark.records.checkpoint_format import from_file, to_file
from benchmark.records.fileio import (
    atomic_write_bytes,
    atomic_write_json,
    file_digest,
    read_json,
    remove_temporaries,
)
from benchmark.records.pickled_checkpoints import load_pickled, refusal, trusted
from benchmark.records.record_reader import first_line
from benchmark.records.run_folder import RecordError, inside

CHECKPOINT_DIR = "checkpoints"
# What to do when no checkpoint verifies, for a run still to train; {folder} is the checkpoints.
RESTART_ADVICE = "delete {folder} to train this run again from step 0"
# ... and for a complete run, whose record stands but whose trained model is gone.
LOST_MODEL_ADVICE = ("the run's recorded results stand, but its trained model is lost: to use "
                     "it again, train the same configuration into a new folder")
_NAME = re.compile(r"^step-(\d+)\.pt$")


def _paths(run_dir: Path, step: int) -> tuple[Path, Path]:
    base = Path(run_dir) / CHECKPOINT_DIR / f"step-{step:010d}"
    return base.with_suffix(".pt"), base.with_suffix(".sha256.json")


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the checkpoint files present, newest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps, reverse=True)


def has_checkpoint(run_dir: Path) -> bool:
    return bool(checkpoint_steps(run_dir))


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write the checkpoint of payload["step"] and check it on disk; then remove all but it and
    the newest older one that verifies, so that a checkpoint corrupted later still leaves one to
    resume from. A checkpoint that does not verify after writing is removed and raises OSError
    (the older ones are kept)."""
    step = int(payload["step"])
    if _verified(run_dir, step):  # the same step is the same state: never rewrite it in place
        return
    _write(run_dir, step, payload)
    _remove_older_than_previous(run_dir, step)


def _write(run_dir: Path, step: int, payload: dict[str, Any]) -> None:
    """The checkpoint of `step` in its plain form, with its checksum, checked on disk."""
    buffer = io.BytesIO()
    torch.save(to_file(payload), buffer)
    data = buffer.getvalue()
    pt, checksum = _paths(run_dir, step)
    atomic_write_bytes(pt, data)
    atomic_write_json(checksum, {"file": pt.name, "sha256": hashlib.sha256(data).hexdigest()})
    if not _verified(run_dir, step):
        for path in (pt, checksum):
            path.unlink(missing_ok=True)
        raise OSError(errno.EIO, "the checkpoint just written does not read back as written "
                      "(a storage fault); the previous checkpoint is kept", str(pt))


def _remove_older_than_previous(run_dir: Path, step: int) -> None:
    """Keep `step` and the newest older checkpoint that verifies; remove every other one (newer
    ones too: they are what a resume from an older checkpoint left behind, corrupt ones)."""
    steps = checkpoint_steps(run_dir)
    previous = next((s for s in steps if s < step and _verified(run_dir, s)), None)
    for old in steps:
        if old not in (step, previous):
            for path in _paths(run_dir, old):
                path.unlink(missing_ok=True)


def _verified(run_dir: Path, step: int) -> bool:
    pt, checksum = _paths(run_dir, step)
    try:
        return file_digest(pt) == read_json(checksum)["sha256"]
    except (OSError, KeyError, TypeError, ValueError):  # missing, unreadable, not a checksum
        return False


def remove_checkpoint_temporaries(run_dir: Path) -> list[Path]:
    """The temp files of checkpoint writes that a kill interrupted (see remove_temporaries)."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    return remove_temporaries(folder) if folder.is_dir() else []


def load_latest_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu", *,
                           advice: str = RESTART_ADVICE) -> dict[str, Any] | None:
    """The newest checkpoint that matches its checksum; None when the run has none. When there
    are checkpoints and none verifies, a UserError ends with `advice` (what the caller's user
    can do about it)."""
    steps = checkpoint_steps(run_dir)
    for step in steps:
        if _verified(run_dir, step):
            return _read(run_dir, step, map_location, advice)
        print(f"warning: checkpoint of step {step} in {run_dir} does not match its checksum "
              "(a write cut short, or a file corrupted since); trying an older one",
              file=sys.stderr)
    if steps:
        folder = Path(run_dir) / CHECKPOINT_DIR
        raise UserError(f"none of the {len(steps)} checkpoint(s) in {folder} matches its "
                        f"checksum; {advice.format(folder=folder)}")
    return None


def _read(run_dir: Path, step: int, map_location: str | torch.device, advice: str
          ) -> dict[str, Any]:
    """A verified checkpoint, read without unpickling code; a pickled one only on the opt-in,
    and then converted. UserError in one line for anything else that is not a checkpoint."""
    pt = _paths(run_dir, step)[0]
    try:  # a link to a file elsewhere is not this run's checkpoint, whatever it holds
        inside(run_dir, f"{CHECKPOINT_DIR}/{pt.name}")
    except RecordError as err:
        raise UserError(f"{pt}: {err}") from None
    try:
        data = torch.load(pt, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # the weights-only unpickler met something else
        if not trusted():
            raise refusal(pt) from err
        data = _convert(run_dir, step, map_location)
    except Exception as err:  # a zip or tensor-storage error: a hostile or foreign file
        raise UserError(f"{pt} is not a checkpoint this suite can read ({first_line(err)}); "
                        f"{advice.format(folder=pt.parent)}") from err
    if not isinstance(data, dict):
        raise UserError(f"{pt} is not a checkpoint (it holds a {type(data).__name__})")
    return from_file(data)


def _convert(run_dir: Path, step: int, map_location: str | torch.device) -> Any:
    """A trusted pickled checkpoint, rewritten in the plain form (one notice) so that it never
    needs the opt-in again; read as it is when it cannot be rewritten (a read-only folder)."""
    pt = _paths(run_dir, step)[0]
    payload = load_pickled(pt, map_location="cpu")  # saved from the CPU, whatever the device
    try:
        _write(run_dir, step, from_file(payload))
    except (OSError, TypeError) as err:
        print(f"warning: read the pickled checkpoint {pt} (trusted), but could not rewrite it "
              f"as plain tensors ({first_line(err)})", file=sys.stderr)
        return load_pickled(pt, map_location=map_location)
    print(f"note: rewrote the pickled checkpoint {pt} (trusted) as plain tensors; it is read "
          "without the opt-in from now on", file=sys.stderr)
    return torch.load(pt, map_location=map_location, weights_only=True)
