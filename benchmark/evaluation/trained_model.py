"""A trained run read back for evaluation: the configuration in its record, and the model of
its newest verified checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.models import IWAEModel
from benchmark.records import (
    LOST_MODEL_ADVICE,
    RESTART_ADVICE,
    load_latest_checkpoint,
    load_result,
)


def recorded_config(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The configuration in a run's record, and the record; UserError when there is none."""
    record = load_result(run_dir)
    if record is None:
        raise UserError(f"{run_dir} holds no result.json; is it a run directory?")
    try:
        return RunConfig.from_dict(record.get("config")), record
    except (AttributeError, TypeError, UserError) as err:
        raise UserError(f"{run_dir}/result.json holds no readable run configuration ({err}); "
                        "is it a run directory?") from err


def load_trained_model(run_dir: Path, device: torch.device) -> tuple[RunConfig, IWAEModel]:
    config, record = recorded_config(run_dir)
    payload = load_latest_checkpoint(run_dir, map_location=device,
                                     advice=LOST_MODEL_ADVICE if record.get("status") == "complete"
                                     else RESTART_ADVICE)
    if payload is None:
        raise UserError(f"{run_dir} has no checkpoint to evaluate; train it first")
    model = IWAEModel(config.layers).to(device)
    model.load_state_dict(payload["model"])
    return config, model
