"""Adam as the paper states it (fidelity `paper`) and as the authors' code ran it (`code`)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

PAPER_BETAS = (0.9, 0.999)
CODE_BETAS = (0.99, 0.999)  # optimizers.Adam's default beta_1 in the authors' code
EPSILON = 1e-4  # both the paper and the code; added to sqrt(v) in the code


class AuthorsAdam(torch.optim.Optimizer):
    """The Adam of the authors' released code (optimizers.py), quirks included:

    * beta1 = 0.99, beta2 = 0.999, epsilon 1e-4 added to sqrt(v);
    * m starts at zeros but v starts at ones, and the timestep t starts at 1;
    * the bias correction is folded into the step size:
      alpha_t = lr sqrt(1 - beta2^t) / (1 - beta1^t);
    * all updates were one Theano function, which evaluates every update on the values from
      before the call: the parameter step at iteration t uses m_{t-1} and v_{t-1} (so the first
      step moves nothing) while m, v and t advance;
    * the state is never reset when the learning rate changes between stages.
    """

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3,
                 betas: tuple[float, float] = CODE_BETAS, eps: float = EPSILON) -> None:
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        with torch.no_grad():
            if closure is not None:
                raise ValueError("AuthorsAdam does not take a closure")
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if not params:
                    continue
                beta1, beta2 = group["betas"]
                m, v = [], []
                for p in params:
                    state = self.state[p]
                    if not state:
                        state["m"] = torch.zeros_like(p)
                        state["v"] = torch.ones_like(p)
                        state["t"] = 1
                    m.append(state["m"])
                    v.append(state["v"])
                t = self.state[params[0]]["t"]
                alpha = authors_step_size(group["lr"], t, beta1, beta2)
                authors_adam_update(params, [p.grad for p in params], m, v, alpha, beta1, beta2,
                                    group["eps"])
                for p in params:
                    self.state[p]["t"] = t + 1
            return None


def authors_step_size(lr: float, t: int, beta1: float, beta2: float) -> float:
    """alpha_t = lr sqrt(1 - beta2^t) / (1 - beta1^t): the bias correction folded in."""
    return lr * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)


def authors_adam_update(params: list[Tensor], grads: list[Tensor], m: list[Tensor],
                        v: list[Tensor], alpha: float, beta1: float, beta2: float, eps: float
                        ) -> None:
    """One step of the authors' Adam, in place: the parameters move by the moments from before
    this step (the lag), then the moments take in the gradients."""
    denom = torch._foreach_sqrt(v)  # from v_{t-1}: the one-step lag
    torch._foreach_add_(denom, eps)
    torch._foreach_addcdiv_(params, m, denom, value=-alpha)

    torch._foreach_mul_(m, beta1)
    torch._foreach_add_(m, grads, alpha=1.0 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2)


def make_optimizer(fidelity: str, params: Iterable[Tensor], lr: float) -> torch.optim.Optimizer:
    if fidelity == "code":
        return AuthorsAdam(params, lr=lr)
    if fidelity == "paper":
        return torch.optim.Adam(params, lr=lr, betas=PAPER_BETAS, eps=EPSILON)
    raise ValueError(f"unknown fidelity {fidelity!r}")


def loss_reduction(fidelity: str) -> str:
    """The authors' code summed gradients over the 20 examples; the paper's Adam is read as the
    usual minibatch mean."""
    return "sum" if fidelity == "code" else "mean"


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
