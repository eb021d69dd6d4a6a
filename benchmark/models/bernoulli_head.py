"""The fused Bernoulli output layer: log p(x|h) from the decoder's last hidden layer in few passes.

The decoder's output layer dominates the cost of a step at large k: (k B) x 784 logits, each
needing an exp and a log1p. Autograd through binary_cross_entropy_with_logits walks that array
about ten times (log_sigmoid, 1 - x, products, differences, their backward). This head walks it
four times, using

    log p(x|h) = sum_j x_j l_j - softplus(l_j),   l = h W + b,
    sum_j x_j l_j = h . (W x) + b . x              (a (B, H) product instead of a (k B, D) one),
    d log p / d l = x - sigmoid(l).

Same quantity, rounded differently: the two sums are large and of opposite sign for a confident
decoder, so log p carries an absolute rounding error of about 1e-4 nats (the elementwise form
about 1e-5). Used by the `fast` numerics and the fast evaluation, never by `exact`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F


class _BernoulliHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden: Tensor, weight: Tensor, bias: Tensor, x: Tensor, k: int
                ) -> Tensor:
        M, N, H = hidden.shape  # N = k * B
        B = x.shape[1]
        logits = torch.baddbmm(bias, hidden, weight)  # (M, N, D)
        softplus_sum = F.softplus(logits).sum(-1).view(M, k, B)
        w_x = torch.bmm(x, weight.transpose(1, 2))  # (M, B, H)
        b_x = (x * bias).sum(-1)  # (M, B)
        x_dot_logits = (hidden.view(M, k, B, H) * w_x.unsqueeze(1)).sum(-1) + b_x.unsqueeze(1)
        ctx.save_for_backward(hidden, weight, x, logits, w_x)
        ctx.k = k
        return x_dot_logits - softplus_sum  # (M, k, B)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, x, logits, w_x = ctx.saved_tensors
        M, N, H = hidden.shape
        k, B = ctx.k, x.shape[1]
        grad = grad.contiguous()  # (M, k, B)
        g_sigmoid = torch.sigmoid_(logits).mul_(grad.view(M, N, 1))  # in place: logits are spent
        # d/dh = g (W x) - (g sigmoid) W^T
        g_wx = (grad.unsqueeze(-1) * w_x.unsqueeze(1)).view(M, N, H)
        grad_hidden = torch.baddbmm(g_wx, g_sigmoid, weight.transpose(1, 2), alpha=-1.0)
        # d/dW = sum_n h_n (g_n x_n)^T - h^T (g sigmoid), the first as a (H, B) x (B, D) product
        h_g = (hidden.view(M, k, B, H) * grad.unsqueeze(-1)).sum(1)  # (M, B, H)
        grad_weight = torch.bmm(h_g.transpose(1, 2), x).baddbmm_(  # in place: no (M, H, D) copy
            hidden.transpose(1, 2), g_sigmoid, alpha=-1.0)
        grad_bias = torch.bmm(grad.sum(1).unsqueeze(1), x) - g_sigmoid.sum(1, keepdim=True)
        return grad_hidden, grad_weight, grad_bias, None, None


def bernoulli_head_log_likelihood(hidden: Tensor, weight: Tensor, bias: Tensor, x: Tensor,
                                  k: int) -> Tensor:
    """log p(x | h) summed over pixels for every sample: (M, k, B).

    hidden (M, k*B, H): the last tanh layer of p(x|h1), sample-major (row s*B + b is sample s of
    example b); weight (M, H, D), bias (M, 1, D): the logits layer; x (M, B, D) binary data."""
    if x.requires_grad:
        raise ValueError("the Bernoulli head does not differentiate with respect to the data")
    return _BernoulliHead.apply(hidden, weight, bias, x, k)
