"""What a result was computed with: versions, device, git commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import torch

import benchmark
from benchmark.errors import UserError


def resolve_device(name: str | torch.device) -> torch.device:
    """"auto", "cpu" or "cuda" (or a torch.device) as the device to run on; UserError when CUDA
    is asked for and torch sees no GPU."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch sees no CUDA GPU; "
                        "use --device cpu (or auto)")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def git_commit() -> str | None:
    """The commit of the checkout the package runs from, '+dirty' when it has local changes."""
    root = Path(benchmark.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment_record(device: torch.device, dataset_sha256: dict[str, str],
                       dataset_catalogue: str = "built-in") -> dict:
    """dataset_catalogue: "built-in", or the path of the data folder's own catalogue.json that
    the files were verified against (then the checksums are not the canonical ones)."""
    return {
        "package_version": benchmark.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device_description(device),
        "git_commit": git_commit(),
        "dataset_sha256": dict(dataset_sha256),
        "dataset_catalogue": dataset_catalogue,
    }
