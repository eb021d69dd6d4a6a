"""Training minibatches: which rows of the training set each step reads, on the device."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.config import BATCH_SIZE, RunConfig
from benchmark.seeding import epoch_permutation
from benchmark.training.schedule import Plan


class MinibatchSource:
    """Training minibatches on the training device, binarized afresh when the data is dynamic.

    `code`: contiguous minibatches in file order, never reshuffled (the authors' train.py);
    `paper`: a seeded reshuffle every epoch. `data` lets the members of a group share one copy
    of a training set on the device."""

    def __init__(self, train: np.ndarray, config: RunConfig, plan: Plan, device: torch.device,
                 data: torch.Tensor | None = None):
        if data is None:
            data = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32)).to(device)
        self.data = data
        self.shuffle = config.fidelity == "paper"
        self.seed = config.seed
        self.per_epoch = plan.steps_per_epoch
        self._epoch = -1
        self._perm: np.ndarray | None = None
        self._order: torch.Tensor | None = None

    def batch(self, step: int) -> torch.Tensor:
        position = (step % self.per_epoch) * BATCH_SIZE
        if not self.shuffle:
            return self.data[position:position + BATCH_SIZE]
        self._load_epoch(step // self.per_epoch)
        assert self._order is not None
        return self.data[self._order[position:position + BATCH_SIZE]]

    def indices(self, step: int) -> np.ndarray:
        """Which rows of the training set batch(step) holds: (B,) int64, computed on the host."""
        position = (step % self.per_epoch) * BATCH_SIZE
        if not self.shuffle:
            return np.arange(position, position + BATCH_SIZE, dtype=np.int64)
        self._load_epoch(step // self.per_epoch)
        assert self._perm is not None
        return self._perm[position:position + BATCH_SIZE].astype(np.int64)

    def _load_epoch(self, epoch: int) -> None:
        if epoch != self._epoch:
            self._perm = epoch_permutation(self.seed, epoch, self.data.shape[0])
            self._order = torch.from_numpy(self._perm).to(self.data.device)
            self._epoch = epoch
