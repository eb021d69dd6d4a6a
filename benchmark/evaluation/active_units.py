"""Active units and pruning (paper Section 5.2, Appendix C): a unit is active when the variance
over examples of its posterior mean, A_u = Cov_x(E_q[u]), is at least 10^-2; pruning removes the
inactive ones from the model."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from benchmark.models import Generators, IWAEModel

ACTIVE_UNIT_THRESHOLD = 1e-2  # the paper's 10^-2 on the variance of the q-mean
ACTIVE_UNIT_EXAMPLES = 500  # the first 500 training examples, as the authors' code


def unit_variances(model: IWAEModel, x: Tensor, generator: Generators = None
                   ) -> list[np.ndarray]:
    """Per stochastic layer (bottom first), the population variance over the examples of the
    posterior mean of each unit: A_u = Cov_x(E_q[u]). Layer 2 at one sampled h1. x: (M, N, 784);
    each result (M, d)."""
    with torch.no_grad():
        means = model.posterior_means(x, generator)
        return [m.double().var(dim=1, unbiased=False).cpu().numpy() for m in means]


def count_active_units(variances: list[np.ndarray], threshold: float = ACTIVE_UNIT_THRESHOLD
                       ) -> list[np.ndarray]:
    """Active if the variance is at least the threshold (the authors counted var < 0.01 as
    inactive). Each (M,) int."""
    return [(v >= threshold).sum(axis=-1) for v in variances]


def active_unit_masks(variances: list[np.ndarray], threshold: float = ACTIVE_UNIT_THRESHOLD
                      ) -> list[Tensor]:
    """Boolean keep-masks, (M, d) per layer, that prune every member's inactive units."""
    return [torch.from_numpy(v >= threshold) for v in variances]
