"""Checkpoints written before they were plain tensors are pickles: reading one can run any code
the file holds, and a checksum beside it proves only that nobody changed it since, not who wrote
it. They are read only on an explicit opt-in, which says what it trusts: the run folders this
process opens. Without it such a checkpoint is refused in one line that says what to do.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import UserError

TRUST_ENV = "IWAE_TRUST_PICKLED_CHECKPOINTS"
TRUST_FLAG = "--trust-pickled-checkpoints"


def trusted() -> bool:
    return os.environ.get(TRUST_ENV, "") == "1"


def trust_pickled_checkpoints(enabled: bool = True) -> None:
    """The CLI flag: trust this process's run folders, and the processes it starts (a sweep's
    workers inherit the environment)."""
    if enabled:
        os.environ[TRUST_ENV] = "1"


def refusal(path: Path) -> UserError:
    return UserError(
        f"{path} is a pickled checkpoint (written by an older version of this suite, or by "
        f"anyone): reading it could run code it holds, so it is not read; if you trust where "
        f"this run folder came from, run again with {TRUST_FLAG} (or {TRUST_ENV}=1) to read "
        "it once and rewrite it as plain tensors")


def load_pickled(path: Path, map_location: str | torch.device) -> Any:
    """The unpickled checkpoint; only ever called when trusted() says the user opted in."""
    if not trusted():  # a second lock on the door, should a caller forget the first
        raise refusal(path)
    return torch.load(path, map_location=map_location, weights_only=False)
