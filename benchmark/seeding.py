"""Named, independent random streams derived from one run seed."""

from __future__ import annotations

import numpy as np
import torch

# One stream per purpose, so that e.g. changing the evaluation cannot shift the training noise.
STREAMS = {"init": 1, "noise": 2, "binarize": 3, "shuffle": 4, "snr": 5, "ais": 6, "bdmc": 7,
           "snr_weights": 8}


def derive_seed(seed: int, purpose: str, *extra: int) -> int:
    state = np.random.SeedSequence([seed, STREAMS[purpose], *extra]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def torch_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The `paper` fidelity's reshuffle: a permutation per epoch, a pure function of (seed,
    epoch), so resuming mid-epoch needs no state."""
    rng = np.random.Generator(np.random.PCG64(derive_seed(seed, "shuffle", epoch)))
    return rng.permutation(n)
