"""Which examples an evaluation scores, and how they are binarized, fixed here so that every run
of a sweep is evaluated on the same binary images:
  test   the whole test set, or the seeded random --eval-n subset of it;
  train  the whole training set for an uncut `full` run, else a fixed random subset of
         TRAIN_SUBSET_N examples (the smoke schedule: its eval_n);
  active units  the first 500 training examples, as the authors' code.
Dynamic data is binarized once with TEST_BINARIZATION_SEED for all three."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import TEST_BINARIZATION_SEED, Dataset, binarize_once
from benchmark.evaluation.active_units import ACTIVE_UNIT_EXAMPLES

EVAL_SUBSET_SEED = 20151  # chooses the random --eval-n test subset: the same for every run
TRAIN_SUBSET_SEED = 20152  # chooses the training subset scored when a run is not `full`
EVAL_NOISE_SEED = 5000  # the importance samples of every evaluation


def random_subset(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Sorted indices of a seeded random subset (all indices when n is None or >= n_total).

    Never a prefix: the Larochelle-Murray test file is sorted by digit class."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    rng = np.random.Generator(np.random.PCG64(seed))
    return np.sort(rng.choice(n_total, size=n, replace=False))


TRAIN_SUBSET_N = 1000


@dataclass(frozen=True)
class EvaluationInputs:
    test: torch.Tensor  # (N_test, 784) binary, CPU: the whole test set
    test_index: np.ndarray  # which test examples are scored
    train: torch.Tensor  # (n, 784) binary: the scored training examples
    train_index: np.ndarray
    active_units: torch.Tensor  # (500, 784) binary: the first 500 training examples


def binary_split(x: np.ndarray, dynamic: bool) -> torch.Tensor:
    values = binarize_once(x, TEST_BINARIZATION_SEED) if dynamic else x
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))


def evaluation_inputs(dataset: Dataset, config: RunConfig, split_n: int | None = None,
                      ) -> EvaluationInputs:
    n_train = dataset.train.shape[0]
    if config.schedule == "full" and not config.is_cut:
        train_index = np.arange(n_train)
    else:
        n = config.effective_eval_n if config.schedule == "smoke" else TRAIN_SUBSET_N
        train_index = random_subset(n_train, n, TRAIN_SUBSET_SEED)
    test = binary_split(dataset.test, dataset.dynamic)
    n_test = split_n if split_n is not None else config.effective_eval_n
    return EvaluationInputs(
        test=test,
        test_index=random_subset(test.shape[0], n_test, EVAL_SUBSET_SEED),
        train=binary_split(dataset.train[train_index], dataset.dynamic),
        train_index=train_index,
        active_units=binary_split(dataset.train[:ACTIVE_UNIT_EXAMPLES], dataset.dynamic),
    )


def evaluation_key(config: RunConfig) -> tuple:
    """Runs with equal keys are scored on the same examples with the same k: one batched pass."""
    return (config.data, config.schedule, config.is_cut, config.effective_eval_n,
            config.effective_eval_k)
