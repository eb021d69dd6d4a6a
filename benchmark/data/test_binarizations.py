"""The binarizations of the 10,000 MNIST test images that any MNIST run can be scored on.

  lm           the Larochelle-Murray test file: one draw, the test set earlier work reported on
               (NADE, MADE, ...), reordered to MNIST's test order (benchmark.data.lm_pairs)
  dynamic      the suite's own draw, Bernoulli(gray) with TEST_BINARIZATION_SEED: the binary test
               set of every dynamic MNIST run (Table 1)
  resampled:R  R fresh draws of the same gray images (seeds RESAMPLE_SEED + r); a run's score is
               each image's log-likelihood averaged over the R draws, which estimates the
               expected score over binarizations rather than that of one draw

Every one is in MNIST's test order, so per-image values of any two runs, or of two test
binarizations, pair image by image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.binarization import TEST_BINARIZATION_SEED, binarize_once
from benchmark.errors import UserError

TEST_BINARIZATION_KINDS = ("lm", "dynamic", "resampled")
RESAMPLE_SEED = 1_000_000  # draw r of resampled:R uses RESAMPLE_SEED + r
MAX_RESAMPLED_DRAWS = 1000


@dataclass(frozen=True)
class BinarizedTestSet:
    kind: str  # one of TEST_BINARIZATION_KINDS
    draws: int = 1

    @property
    def name(self) -> str:
        """As written on the command line: lm, dynamic, resampled:8."""
        return f"resampled:{self.draws}" if self.kind == "resampled" else self.kind

    @property
    def token(self) -> str:
        """As used in file names: lm, dynamic, resampled8."""
        return self.name.replace(":", "")


def parse_test_binarization(text: str) -> BinarizedTestSet:
    """'lm', 'dynamic' or 'resampled:R' (1 <= R <= MAX_RESAMPLED_DRAWS)."""
    kind, _, count = text.partition(":")
    if kind in ("lm", "dynamic") and not count:
        return BinarizedTestSet(kind)
    if kind == "resampled" and count.isdigit() and 1 <= int(count) <= MAX_RESAMPLED_DRAWS:
        return BinarizedTestSet(kind, int(count))
    raise UserError(f"--test {text!r}: choose lm (the Larochelle-Murray test file), dynamic (the "
                    "suite's seed-123 draw) or resampled:R (the mean over R fresh draws, "
                    f"1 <= R <= {MAX_RESAMPLED_DRAWS})")


def binarized_test_images(spec: BinarizedTestSet, data_dir: Path) -> list[np.ndarray]:
    """The binary test images of `spec`: one (10000, 784) float32 array per draw, MNIST order."""
    from benchmark.data.splits import load_lm_pairs, load_lm_test_bits, load_mnist_test_gray

    if spec.kind == "lm":
        pairs = load_lm_pairs(data_dir)
        return [pairs.test_in_mnist_order(load_lm_test_bits(data_dir)).astype(np.float32)]
    gray = load_mnist_test_gray(data_dir)
    if spec.kind == "dynamic":
        return [binarize_once(gray, TEST_BINARIZATION_SEED)]
    return [binarize_once(gray, RESAMPLE_SEED + r) for r in range(spec.draws)]
