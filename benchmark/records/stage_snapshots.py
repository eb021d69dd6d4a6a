"""The model at the end of every stage of the schedule: stages/stage-<i>.pt, weights only.

Checkpoints keep only the newest two, which is what resuming needs; a stage snapshot keeps the
trained parameters at each stage end, so that a run's learning can be scored again later at the
points the paper's schedule marks (for instance the train-minus-test gap stage by stage). A
snapshot holds tensors and plain numbers only and is read with torch.load(weights_only=True),
beside a checksum.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.records.fileio import atomic_write_bytes, atomic_write_json, file_digest, read_json
from benchmark.records.run_folder import RecordError, inside

STAGES_DIR = "stages"
_NAME = re.compile(r"^stage-(\d+)\.pt$")


@dataclass(frozen=True)
class StageSnapshot:
    stage: int  # index of the stage that ended (0-based)
    step: int
    epoch: float
    model: dict[str, torch.Tensor]  # an IWAEModel(members=1) state_dict


def _paths(run_dir: Path, stage: int) -> tuple[Path, Path]:
    base = Path(run_dir) / STAGES_DIR / f"stage-{stage}"
    return base.with_suffix(".pt"), base.with_suffix(".sha256.json")


def save_stage_snapshot(run_dir: Path, stage: int, step: int, epoch: float,
                        model: dict[str, torch.Tensor]) -> None:
    """Write the snapshot of one stage's end (atomically, with its checksum)."""
    buffer = io.BytesIO()
    torch.save({"stage": int(stage), "step": int(step), "epoch": float(epoch),
                "model": {name: t.detach().cpu().contiguous() for name, t in model.items()}},
               buffer)
    data = buffer.getvalue()
    pt, checksum = _paths(run_dir, stage)
    atomic_write_bytes(pt, data)
    atomic_write_json(checksum, {"file": pt.name, "sha256": hashlib.sha256(data).hexdigest()})


def stage_snapshot_stages(run_dir: Path) -> list[int]:
    """The stages with a snapshot file, in order."""
    folder = Path(run_dir) / STAGES_DIR
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)))


def load_stage_snapshot(run_dir: Path, stage: int,
                        map_location: str | torch.device = "cpu") -> StageSnapshot:
    """One verified snapshot; UserError when it is missing, altered, not a snapshot, or a link
    leading out of the run folder."""
    pt, checksum = _paths(run_dir, stage)
    for path in (pt, checksum):  # a link leading out of the run folder is never followed
        try:
            inside(run_dir, path.relative_to(run_dir).as_posix())
        except RecordError as err:
            raise UserError(f"{path}: {err}") from None
    try:
        ok = file_digest(pt) == read_json(checksum)["sha256"]
    except (OSError, KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UserError(f"{pt} is missing or does not match its checksum; train the run again "
                        "to recreate its stage snapshots")
    try:
        payload = torch.load(pt, map_location=map_location, weights_only=True)
        return StageSnapshot(stage=int(payload["stage"]), step=int(payload["step"]),
                             epoch=float(payload["epoch"]), model=dict(payload["model"]))
    except Exception as err:  # an unpickler refusal, a missing key: not a snapshot
        raise UserError(f"{pt} is not a stage snapshot ({err})") from err
