"""The files the suite and the driver exchange: .npz snapshots and per-slot draw files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {name: f[name] for name in f.files}


def snapshot_path(folder: Path, step: int) -> Path:
    return folder / f"snap_{step:06d}.npz"


class DrawFiles:
    """One memory-mapped .npy per slot, (steps, rows, cols), filled step by step; `segment`
    names a second run's files (<slot>.<segment>.npy) read after the first."""

    def __init__(self, folder: Path, steps: int, segment: int | None = None) -> None:
        self.folder, self.steps, self.segment = folder, steps, segment
        folder.mkdir(parents=True, exist_ok=True)
        self.files: dict[str, np.memmap] = {}

    def write(self, index: int, slots: dict[str, np.ndarray]) -> None:
        for slot, values in slots.items():
            if slot not in self.files:
                name = slot if self.segment is None else f"{slot}.{self.segment}"
                self.files[slot] = np.lib.format.open_memmap(
                    self.folder / f"{name}.npy", mode="w+", dtype=np.float32,
                    shape=(self.steps, *values.shape))
            self.files[slot][index] = values

    def close(self) -> None:
        for f in self.files.values():
            f.flush()
        self.files = {}


def save_slots(folder: Path, slots: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for slot, values in slots.items():
        np.save(folder / f"{slot}.npy", np.ascontiguousarray(values, dtype=np.float32))


def link_draws(draws: Path, folder: Path) -> None:
    """The authors' task folder sees the suite's draws without copying them."""
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "draws"
    if not link.exists():
        link.symlink_to(draws.resolve(), target_is_directory=True)
