"""A checkpoint as it lies on disk: tensors, numbers, strings, None and containers of them only,
so that torch.load(weights_only=True) reads it and loading never runs code from the file.

The one part of a run's state that is not already such a value is numpy's global generator state
(np.random.get_state(): a tuple holding a uint32 array); it is stored as a dict of a tensor and
plain values and turned back into numpy's tuple on reading. Every other field is checked at save
time, so that a new field of another kind fails the first test that saves a checkpoint instead of
writing a file that only a pickle-trusting load could read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch

FORMAT_KEY = "format"
FORMAT = "plain-tensors-1"  # absent from the pickled checkpoints written before it existed
_PLAIN_LEAVES = (torch.Tensor, bool, int, float, str, type(None))


def to_file(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload in its on-disk form (a new dict; payload is untouched). TypeError names the
    first field that torch.load(weights_only=True) could not read back."""
    out = dict(payload)
    rng = out.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), tuple):
        out["rng"] = {**rng, "numpy": _numpy_state_to_file(rng["numpy"])}
    out[FORMAT_KEY] = FORMAT
    check_plain(out)
    return out


def from_file(data: dict[str, Any]) -> dict[str, Any]:
    """The payload as the trainer restores it (np.random.set_state takes the tuple back).
    Pickled checkpoints, whose numpy state is still a tuple, pass unchanged."""
    out = {key: value for key, value in data.items() if key != FORMAT_KEY}
    rng = out.get("rng")
    if isinstance(rng, dict) and isinstance(rng.get("numpy"), dict):
        out["rng"] = {**rng, "numpy": _numpy_state_from_file(rng["numpy"])}
    return out


def _numpy_state_to_file(state: tuple) -> dict[str, Any]:
    name, key, pos, has_gauss, cached_gaussian = state
    # int64 holds every uint32 exactly (torch's uint32 lacks most operations, and copying).
    return {"bit_generator": str(name),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64).copy()),
            "pos": int(pos), "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian)}


def _numpy_state_from_file(state: dict[str, Any]) -> tuple:
    key = state["key"].cpu().numpy().astype(np.uint32)  # map_location may have moved it
    return (str(state["bit_generator"]), key, int(state["pos"]), int(state["has_gauss"]),
            float(state["cached_gaussian"]))


def check_plain(value: Any, where: str = "checkpoint") -> None:
    """TypeError unless value is made of tensors, plain numbers, strings, None, and dicts
    (string or integer keys), lists and tuples of them. Exact types: a numpy float64 is a float
    subclass, yet pickles as a numpy object that weights_only refuses."""
    if type(value) in (dict, OrderedDict):  # a subclass would pickle as its own class
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f"{where} has a key of type {type(key).__name__}")
            check_plain(item, f"{where}/{key}")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            check_plain(item, f"{where}/{i}")
    elif not (type(value) in _PLAIN_LEAVES or isinstance(value, torch.Tensor)):
        raise TypeError(f"{where} holds a {type(value).__module__}.{type(value).__name__}, "
                        "which a checkpoint read without unpickling code cannot hold")
