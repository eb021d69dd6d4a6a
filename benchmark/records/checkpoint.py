"""Checkpoints: written atomically with a checksum, the previous one kept until the new one is
complete, so a run killed at any moment resumes from a checkpoint that verifies.

A checkpoint holds everything an exact resume needs: model and optimizer state, the position in
the schedule, every random generator's state, the learning-curve rows so far, and the time spent.
"""

from __future__ import annotations

import hashlib
import io
import re
import sys
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError
from benchmark.records.fileio import atomic_write_bytes, atomic_write_json, file_digest, read_json

CHECKPOINT_DIR = "checkpoints"
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
    """Write the checkpoint of payload["step"], then remove the older ones."""
    step = int(payload["step"])
    if _verified(run_dir, step):  # the same step is the same state: never rewrite it in place
        return
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    pt, checksum = _paths(run_dir, step)
    atomic_write_bytes(pt, data)
    atomic_write_json(checksum, {"file": pt.name, "sha256": hashlib.sha256(data).hexdigest()})
    for old in checkpoint_steps(run_dir):
        if old != step:
            for path in _paths(run_dir, old):
                path.unlink(missing_ok=True)


def _verified(run_dir: Path, step: int) -> bool:
    pt, checksum = _paths(run_dir, step)
    try:
        return file_digest(pt) == read_json(checksum)["sha256"]
    except (FileNotFoundError, KeyError, ValueError):
        return False


def load_latest_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu"
                           ) -> dict[str, Any] | None:
    """The newest checkpoint that matches its checksum; None when the run has none."""
    steps = checkpoint_steps(run_dir)
    for step in steps:
        if _verified(run_dir, step):
            return torch.load(_paths(run_dir, step)[0], map_location=map_location,
                              weights_only=False)
        print(f"warning: checkpoint of step {step} in {run_dir} fails its checksum "
              "(interrupted write); trying an older one", file=sys.stderr)
    if steps:
        raise UserError(f"no checkpoint in {Path(run_dir) / CHECKPOINT_DIR} verifies; delete that "
                        "folder to restart the run from scratch")
    return None
