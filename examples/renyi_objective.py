"""An objective the suite does not ship, added from outside the tree: the Rényi variational bound
VR-alpha (Li & Turner 2016, "Rényi Divergence Variational Inference", arXiv:1602.02311, eq. 13,
with the k-sample estimate of its Section 4):

    L_alpha = 1 / (1 - alpha) * log (1/k) sum_i w_i^(1 - alpha),   w_i = p(x, h_i) / q(h_i | x)

alpha = 0 is the IWAE bound L_k; alpha -> 1 is the k-sample ELBO (the mean of log w_i). For
alpha in [0, 1] it is the log of a power mean of the weights, of order 1 - alpha, so it lies
between the two and falls as alpha grows.

Train it like any built-in objective:

    python -m benchmark train --objective-module examples/renyi_objective.py \\
        --model vr --alpha 0.5 --k 5 --layers 1 --data mnist-dynamic --schedule smoke

A plugin is this much: a definition (its name, parameters, label, where the report lists it)
and the bound, a function from log-weights (members, samples, examples) to one value per member
and example. Everything else (batched ensembles, resume, L_5000, AIS, active units, sweeps on
local workers or Ray, the report) comes from the suite.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from benchmark.definitions import ObjectiveDefinition, Parameter


def vr_bound(log_w: Tensor, alpha: float) -> Tensor:
    """VR-alpha per member and example: (M, k, B) -> (M, B), in log space (the max shift of
    logsumexp) so that weights of -100 nats do not underflow."""
    if alpha == 1.0:  # the limit: the mean of the log-weights
        return log_w.mean(dim=1)
    scaled = (1.0 - alpha) * log_w
    return (torch.logsumexp(scaled, dim=1) - math.log(log_w.shape[1])) / (1.0 - alpha)


ALPHA = Parameter("alpha", float, "the order of the Rényi divergence: 0 gives the IWAE bound, "
                  "1 the ELBO", minimum=0.0, maximum=1.0)

OBJECTIVES = [
    ObjectiveDefinition(
        "vr", "the Rényi variational bound VR-alpha", bound=vr_bound,
        parameters=(ALPHA,), title="VR", label="{title}(α={alpha}) k={k}", order=8,
        reference="Li & Turner 2016, arXiv:1602.02311",
        # the estimators grid trains it beside the others at k = 5 and 50, alpha = 0.5
        grid=((5, {"alpha": 0.5}), (50, {"alpha": 0.5}))),
]
