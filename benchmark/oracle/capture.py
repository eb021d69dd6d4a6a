"""Recording every random draw the suite makes, in order, without touching its code.

A TorchFunctionMode sees each call of torch's random functions (torch.rand, torch.randn and the
in-place Tensor.normal_ / uniform_ the suite's generators fill with) and keeps a copy of what it
returned. The oracle serves exactly these draws to the authors' code (benchmark.oracle.layout
puts them into the rows their graph consumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

UNIFORM = {"rand", "rand_like", "uniform_"}
NORMAL = {"randn", "randn_like", "normal_"}
OTHER_RANDOM = {"bernoulli", "bernoulli_", "multinomial", "randint", "randperm", "exponential_"}


@dataclass(frozen=True)
class Draw:
    kind: str  # "uniform" or "normal"
    values: np.ndarray  # float32, the shape torch returned


class DrawRecorder(TorchFunctionMode):
    """with DrawRecorder() as rec: ...; rec.draws lists every draw, oldest first."""

    def __init__(self) -> None:
        super().__init__()
        self.draws: list[Draw] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in UNIFORM or name in NORMAL:
            kind = "uniform" if name in UNIFORM else "normal"
            self.draws.append(Draw(kind, out.detach().to("cpu", torch.float32).numpy().copy()))
        elif name in OTHER_RANDOM:
            raise RuntimeError(f"the suite drew with torch.{name}, which the oracle cannot "
                               "serve to the authors' code")
        return out

    def take(self) -> list[Draw]:
        """The draws so far, forgetting them."""
        draws, self.draws = self.draws, []
        return draws
