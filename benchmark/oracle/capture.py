"""Recording every random draw the suite makes, in order, and serving them again, without
touching its code.

A TorchFunctionMode sees each call of torch's random functions (torch.rand, torch.randn and the
in-place Tensor.normal_ / uniform_ the suite's generators fill with) and keeps a copy of what it
returned. The oracle serves exactly these draws to the authors' code (benchmark.oracle.layout
puts them into the rows their graph consumes) and, through DrawReplay, to the suite's own
float64 twin of the run.
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


class DrawReplay(TorchFunctionMode):
    """with DrawReplay(draws): ... makes each random call of the block return the next recorded
    draw instead of drawing, so a second run of the same code sees the first run's random
    numbers. With promote_to, every float32 the block asks for (a factory's dtype, a .to()) is
    made in that dtype instead: a float64 twin's step then computes nothing in float32 (its
    noise included, whose log-density log q sums)."""

    def __init__(self, draws: list[Draw], promote_to: torch.dtype | None = None) -> None:
        super().__init__()
        self.pending = list(draws)
        self.promote_to = promote_to

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's
        kwargs = dict(kwargs or {})
        if self.promote_to is not None:
            args = tuple(self.promote_to if a is torch.float32 else a for a in args)
            if kwargs.get("dtype") is torch.float32:
                kwargs["dtype"] = self.promote_to
        name = getattr(func, "__name__", "")
        if name not in UNIFORM and name not in NORMAL:
            if name in OTHER_RANDOM:
                raise RuntimeError(f"torch.{name} has no recorded draw to replay")
            return func(*args, **kwargs)
        kind = "uniform" if name in UNIFORM else "normal"
        if not self.pending or self.pending[0].kind != kind:
            raise RuntimeError(f"the replay asked for a {kind} draw, the recording holds "
                               f"{[d.kind for d in self.pending[:1]] or 'no more'}")
        values = torch.from_numpy(self.pending.pop(0).values)
        if name.endswith("_"):  # in place: fill the tensor it was called on
            target = args[0]
            with torch.no_grad():
                target.copy_(values.reshape(target.shape))
            return target
        return values.to(dtype=kwargs.get("dtype") or self.promote_to or torch.float32)

    def __exit__(self, *exc) -> None:  # noqa: ANN002 - torch's
        super().__exit__(*exc)
        if self.pending and exc[0] is None:
            raise RuntimeError(f"the replay left {len(self.pending)} recorded draws unused")
