"""Adam over M stacked members: one optimizer for a whole group, each member with its own state.

Every parameter tensor has a leading member dimension (benchmark.models.network). Members of a group
may have different learning rates (their stage schedules differ when their data conditions do) and
different step counts (they may resume from different checkpoints), so the step size is per member.
Two ways to apply a step:

* exact: the same operations as the single-run optimizer (AuthorsAdam for fidelity `code`,
  torch.optim.Adam for `paper`) with Python-number step sizes. When all members share their step
  size the update runs once over the stacked tensors, otherwise once per member on its slices.
  A group of one is therefore bit-identical to the single-run optimizer.
* fused: the step sizes live in a device tensor (M,) and the whole update is one expression per
  parameter: on the CPU compiled by torch.compile into one pass over memory (an ensemble's
  optimizer state is tens of MB, so the eager seven passes are memory-bound), on a GPU captured
  in the CUDA graph of the step. Same formulas, rounded differently (no fused multiply-add
  guarantees).

Checkpoints hold a member's state in exactly the format of the single-run optimizer's
state_dict, so a member's checkpoint is a single run's checkpoint.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim.adam import adam as torch_adam_functional

from benchmark.training.optim import (
    CODE_BETAS,
    EPSILON,
    PAPER_BETAS,
    authors_adam_update,
    authors_step_size,
    make_optimizer,
)

VARIANTS = {"code": CODE_BETAS, "paper": PAPER_BETAS}
COMPILED_VARIANTS = 64  # compiled kernels kept (parameter lists, ranks); dynamo's default is 8


def _per_member(scale: Tensor, like: Tensor) -> Tensor:
    return scale.view(-1, *([1] * (like.dim() - 1)))


def fused_code_update(params: list[Tensor], grads: list[Tensor], m: list[Tensor],
                      v: list[Tensor], neg_alpha: Tensor, beta1: float, beta2: float,
                      eps: float) -> None:
    """The authors' Adam with a per-member step size neg_alpha (M,) = -alpha_t."""
    for p, g, mm, vv in zip(params, grads, m, v, strict=True):
        p.add_(_per_member(neg_alpha, p) * mm / (vv.sqrt() + eps))  # the lag: old m, v
        mm.mul_(beta1).add_(g, alpha=1.0 - beta1)
        vv.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)


def fused_paper_update(params: list[Tensor], grads: list[Tensor], m: list[Tensor],
                       v: list[Tensor], neg_step: Tensor, bias2_sqrt: Tensor, beta1: float,
                       beta2: float, eps: float) -> None:
    """torch.optim.Adam's update with per-member -lr/(1 - beta1^t) and sqrt(1 - beta2^t)."""
    for p, g, mm, vv in zip(params, grads, m, v, strict=True):
        mm.lerp_(g, 1.0 - beta1)
        vv.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)
        denom = vv.sqrt() / _per_member(bias2_sqrt, p) + eps
        p.add_(_per_member(neg_step, p) * mm / denom)


class MemberAdam:
    """The optimizer of a group of M members; see the module docstring."""

    def __init__(self, params: Sequence[Tensor], members: int, variant: str,
                 lrs: Sequence[float], fused: bool = False, compile_cpu: bool = True) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"unknown fidelity {variant!r}")
        if len(lrs) != members:
            raise ValueError("one learning rate per member")
        self.params = list(params)
        if any(p.shape[0] != members for p in self.params):
            raise ValueError("every parameter must lead with the member dimension")
        self.members, self.variant, self.fused = members, variant, fused
        self.beta1, self.beta2 = VARIANTS[variant]
        self.eps = EPSILON
        self.lrs = [float(lr) for lr in lrs]
        self.taken = [0] * members  # optimizer steps each member has taken
        with torch.no_grad():
            self.m = [torch.zeros_like(p) for p in self.params]
            self.v = [torch.full_like(p, self.first_v) for p in self.params]
        device = self.params[0].device
        # The fused update reads its step sizes from here; a CUDA graph captures these tensors.
        self.step_sizes = torch.zeros(2, members, device=device)
        self._apply_fused = self._choose_fused_kernel(device, compile_cpu) if fused else None

    @property
    def first_v(self) -> float:
        """The second moment every member starts from: 1 in the authors' code, 0 in the paper's
        Adam."""
        return 1.0 if self.variant == "code" else 0.0

    # --- stepping -------------------------------------------------------------------------------
    def set_learning_rates(self, lrs: Sequence[float]) -> None:
        self.lrs = [float(lr) for lr in lrs]

    def step(self) -> None:
        with torch.no_grad():
            if self.fused:
                self.prepare_fused_step()
                self.apply_fused_step()
            else:
                self._exact_step()
            self.advance()

    def advance(self) -> None:
        """Count one step taken by every member (the fused path calls this after a replay)."""
        self.taken = [t + 1 for t in self.taken]

    def prepare_fused_step(self) -> None:
        """Write this step's per-member step sizes into self.step_sizes (no host sync)."""
        rows = []
        for lr, taken in zip(self.lrs, self.taken, strict=True):
            if self.variant == "code":
                rows.append((-authors_step_size(lr, taken + 1, self.beta1, self.beta2), 0.0))
            else:
                step = taken + 1
                rows.append((-lr / (1.0 - self.beta1**step), math.sqrt(1.0 - self.beta2**step)))
        host = torch.tensor(rows, dtype=torch.float32).T.contiguous()  # (2, M)
        self.step_sizes.copy_(host, non_blocking=True)  # pageable source: staged, no sync

    def apply_fused_step(self) -> None:
        """The update from self.step_sizes: what a CUDA graph of the step captures."""
        with torch.no_grad():
            assert self._apply_fused is not None
            grads = self._grads()
            if self.variant == "code":
                self._apply_fused(self.params, grads, self.m, self.v, self.step_sizes[0],
                                  self.beta1, self.beta2, self.eps)
            else:
                self._apply_fused(self.params, grads, self.m, self.v, self.step_sizes[0],
                                  self.step_sizes[1], self.beta1, self.beta2, self.eps)

    def _grads(self) -> list[Tensor]:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("every parameter of a group needs a gradient")
        return grads  # type: ignore[return-value]

    def _exact_step(self) -> None:
        grads = self._grads()
        uniform = len(set(zip(self.lrs, self.taken, strict=True))) == 1
        if uniform:
            self._exact_update(self.params, grads, self.m, self.v, self.lrs[0], self.taken[0])
            return
        for i in range(self.members):
            pick = [t[i] for t in self.params], [g[i] for g in grads]
            self._exact_update(*pick, [t[i] for t in self.m], [t[i] for t in self.v],
                               self.lrs[i], self.taken[i])

    def _exact_update(self, params: list[Tensor], grads: list[Tensor], m: list[Tensor],
                      v: list[Tensor], lr: float, taken: int) -> None:
        if self.variant == "code":
            alpha = authors_step_size(lr, taken + 1, self.beta1, self.beta2)
            authors_adam_update(params, grads, m, v, alpha, self.beta1, self.beta2, self.eps)
            return
        # torch.optim.Adam's own functional step, with the flags its step() would pick
        steps = [torch.tensor(float(taken), dtype=torch.get_default_dtype()) for _ in params]
        torch_adam_functional(params, grads, m, v, [], steps, foreach=None, fused=None,
                              amsgrad=False, beta1=self.beta1, beta2=self.beta2, lr=lr,
                              weight_decay=0.0, eps=self.eps, maximize=False)

    def _choose_fused_kernel(self, device: torch.device, compile_cpu: bool) -> Callable:
        kernel = fused_code_update if self.variant == "code" else fused_paper_update
        if device.type != "cpu" or not compile_cpu:
            return kernel
        return _CompiledOnce(kernel)

    # --- members in and out ---------------------------------------------------------------------
    def member_state_dict(self, i: int) -> dict[str, Any]:
        """Member i's state as the single-run optimizer's state_dict() would hold it."""
        state: dict[int, dict[str, Any]] = {}
        for j, (m, v) in enumerate(zip(self.m, self.v, strict=True)):
            mi, vi = m[i:i + 1].detach().clone(), v[i:i + 1].detach().clone()
            if self.variant == "code":
                state[j] = {"m": mi, "v": vi, "t": self.taken[i] + 1}
            else:
                step = torch.tensor(float(self.taken[i]), dtype=torch.get_default_dtype())
                state[j] = {"step": step, "exp_avg": mi, "exp_avg_sq": vi}
        group = self._param_group_template()
        group.update(lr=self.lrs[i], params=list(range(len(self.params))))
        return {"state": state, "param_groups": [group]}

    def load_member_state_dict(self, i: int, saved: dict[str, Any]) -> None:
        """Member i takes the state a single-run optimizer saved (an empty state: fresh)."""
        with torch.no_grad():
            states = saved["state"]
            self.lrs[i] = float(saved["param_groups"][0]["lr"])
            if not states:  # it never stepped: member i starts as a new optimizer's would
                for m, v in zip(self.m, self.v, strict=True):
                    m[i].zero_()
                    v[i].fill_(self.first_v)
                self.taken[i] = 0
                return
            for j, (m, v) in enumerate(zip(self.m, self.v, strict=True)):
                entry = states[j]
                if self.variant == "code":
                    m[i].copy_(entry["m"][0])
                    v[i].copy_(entry["v"][0])
                else:
                    m[i].copy_(entry["exp_avg"][0])
                    v[i].copy_(entry["exp_avg_sq"][0])
            first = states[0]
            self.taken[i] = int(first["t"]) - 1 if self.variant == "code" else int(first["step"])

    def select(self, keep: Sequence[int], params: Sequence[Tensor]) -> MemberAdam:
        """The optimizer of a group made of the members `keep` (params: that group's)."""
        with torch.no_grad():
            # built unfused, then given this optimizer's kernel: choosing one would build a
            # compiled wrapper only to throw it away
            out = MemberAdam(params, len(keep), self.variant, [self.lrs[i] for i in keep])
            out.fused = self.fused
            index = torch.tensor(list(keep), device=self.params[0].device)
            for dst, src in ((out.m, self.m), (out.v, self.v)):
                for d, s in zip(dst, src, strict=True):
                    d.copy_(s.index_select(0, index))
            out.taken = [self.taken[i] for i in keep]
            out._apply_fused = self._apply_fused  # keep what was compiled
            return out

    def _param_group_template(self) -> dict[str, Any]:
        probe = make_optimizer(self.variant, [torch.zeros(1)], 1e-3)
        group = dict(probe.state_dict()["param_groups"][0])
        group.pop("params")
        return group


class _CompiledOnce:
    """torch.compile of an update function, falling back to eager when compiling fails (no C++
    compiler, an unsupported platform): the fallback is slower, never different in meaning.
    Sizes are dynamic, so groups of any number of members share one compiled kernel."""

    def __init__(self, kernel: Callable) -> None:
        self.kernel = kernel
        self.compiled: Callable | None = torch.compile(kernel, dynamic=True, fullgraph=True)

    def __call__(self, *args: Any) -> None:
        if self.compiled is not None:
            try:
                with torch._dynamo.config.patch(recompile_limit=COMPILED_VARIANTS):
                    return self.compiled(*args)
            except Exception as err:  # noqa: BLE001 - any compiler failure: run eagerly
                warnings.warn(f"torch.compile of the fused Adam failed ({type(err).__name__}); "
                              "using the eager update", RuntimeWarning, stacklevel=2)
                self.compiled = None
        return self.kernel(*args)
