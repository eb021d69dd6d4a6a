"""Fixed and dynamic binarization, and the decoder-bias initialisation that goes with the data.

Dynamic binarization (mnist-dynamic, omniglot): every minibatch at every step is a fresh draw
x = 1[u < p], u ~ U[0, 1), with p the gray value. The authors wrote 1[u <= p] with Theano's
uniform; torch.rand draws from [0, 1), where 1[u < p] is exactly Bernoulli(p): P(u < p) = p for
every p in [0, 1]. With `<=` a pixel with p = 0 would become 1 whenever u == 0 exactly, which
torch.rand can return; with `<` an always-black pixel stays black and p = 1 always gives 1.

Evaluation uses binarize_once with TEST_BINARIZATION_SEED, so every model of a sweep sees the
same binary test set (the authors' evaluation re-created its random stream with seed 123 for each
evaluation call, with the same effect).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

TEST_BINARIZATION_SEED = 123
BIAS_CLIP = (0.001, 0.999)


def binarize_once(x: np.ndarray, seed: int) -> np.ndarray:
    """One Bernoulli(x) draw as float32 0/1, reproducible from `seed` alone."""
    rng = np.random.default_rng(seed)
    u = rng.random(np.shape(x), dtype=np.float32)
    return (u < x).astype(np.float32)


class Binarizer(Protocol):
    dynamic: bool

    def __call__(self, p: torch.Tensor) -> torch.Tensor: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class DynamicBinarizer:
    """A fresh 1[u < p] for every call, from its own generator on `device`."""

    dynamic = True

    def __init__(self, seed: int, device: torch.device | str) -> None:
        self.seed = int(seed)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(self.seed)

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        if p.device.type != self.device.type:
            raise ValueError(f"binarizer lives on {self.device}, the batch on {p.device}")
        u = torch.rand(p.shape, generator=self.generator, device=p.device, dtype=torch.float32)
        return (u < p).to(torch.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "dynamic", "seed": self.seed, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "dynamic":
            raise ValueError(f"not a dynamic binarizer state: {state.get('kind')!r}")
        self.seed = int(state["seed"])
        rng_state = state["rng_state"]
        # torch.load(map_location="cuda") moves every tensor; generator states live on the CPU.
        self.generator.set_state(rng_state.cpu() if hasattr(rng_state, "cpu") else rng_state)


class FixedBinarizer:
    """For data that is already binary (mnist-fixed): returns its input unchanged."""

    dynamic = False

    def __call__(self, p: torch.Tensor) -> torch.Tensor:
        return p

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "fixed"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "fixed":
            raise ValueError(f"not a fixed binarizer state: {state.get('kind')!r}")


def make_binarizer(dynamic: bool, seed: int, device: torch.device | str) -> Binarizer:
    return DynamicBinarizer(seed, device) if dynamic else FixedBinarizer()


def decoder_bias_mean(train: np.ndarray) -> np.ndarray:
    """Per-pixel mean of the training split, clipped to [0.001, 0.999], float32 (D,).

    The authors initialised the decoder's output bias to logit of this; for dynamic data the
    mean is over the gray values, not over a binarization. Accumulated in float32, as their
    get_train_mean_np did on float32 data: a float64 mean differs in the last bits of most
    pixels, and the oracle compares the initial parameters bit for bit.
    """
    mean = np.mean(np.asarray(train, dtype=np.float32), axis=0)
    clip = [np.float32(c) for c in BIAS_CLIP]
    return np.clip(mean, *clip).astype(np.float32)
