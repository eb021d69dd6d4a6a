"""A training process killed at a chosen checkpoint, for the tests of exact resume."""

from __future__ import annotations

import pytest


def kill_after_checkpoint(monkeypatch: pytest.MonkeyPatch, step: int) -> None:
    """The trainer raises RuntimeError("killed") right after writing its checkpoint of `step`,
    as a process killed there would leave the run folder (monkeypatch.undo() lifts it)."""
    import benchmark.training.loop as loop

    real_save = loop.save_checkpoint

    def save_then_die(run_dir, payload):
        real_save(run_dir, payload)
        if payload["step"] == step:
            raise RuntimeError("killed")

    monkeypatch.setattr(loop, "save_checkpoint", save_then_die)
