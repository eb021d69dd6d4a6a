"""The mark of the tests that need a CUDA GPU: they run with `pytest -m cuda` (or `make doctor`,
or `make gpu-check`) on a machine with one, and skip elsewhere, saying so."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import pytest
import torch

F = TypeVar("F", bound=Callable)
CUDA_SKIP = ("needs a CUDA GPU; on a machine with one run `make gpu-check`, `make doctor` or "
             "`pytest -m cuda`")


def needs_cuda(test: F) -> F:
    """Marked `cuda`, and skipped with CUDA_SKIP when torch sees no GPU."""
    skip = pytest.mark.skipif(not torch.cuda.is_available(), reason=CUDA_SKIP)
    return pytest.mark.cuda(skip(test))
