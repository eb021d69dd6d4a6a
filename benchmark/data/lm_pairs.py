"""The matching of the Larochelle-Murray files to MNIST, computed once and cached.

`lm_pairs(...)` returns, for every row of the LM train, valid and test files, the index of the
MNIST image it was drawn from (train and valid into MNIST's 60,000 training images, test into
its 10,000 test images). The result is cached under <data_dir>/cache as a .npz beside a JSON
that records the sha256 of the five source files and of the .npz; a cache whose checksum or
sources do not match is recomputed. Whether computed or read, the matching is verified before it
is returned (benchmark.data.lm_matching.verify_matching), so a stale or tampered cache can never
pair an image with the wrong gray values.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.data.lm_matching import MatchingError, PairCheck, match, verify_matching
from benchmark.records import atomic_write_bytes, atomic_write_json, file_digest

MATCHING_VERSION = 1
PARTS = ("train", "valid", "test")


@dataclass(frozen=True)
class LMPairs:
    """MNIST index of every LM row, per LM file (int64, in the file's row order)."""

    train: np.ndarray  # (50000,) into MNIST's training images
    valid: np.ndarray  # (10000,) into MNIST's training images
    test: np.ndarray  # (10000,) into MNIST's test images
    checks: Mapping[str, PairCheck]  # part -> how well each pair fits, as verified
    mnist_train_size: int  # the training images train and valid were matched into
    cache: Path | None = None  # where it is cached (None when the cache could not be written)
    computed: bool = False  # computed by this call, rather than read from the cache

    def test_in_mnist_order(self, lm_test: np.ndarray) -> np.ndarray:
        """The LM test rows reordered so that row i is the draw of MNIST test image i."""
        out = np.empty_like(lm_test)
        out[self.test] = lm_test
        return out


@dataclass(frozen=True)
class LMSources:
    """The five parsed files a matching is computed from, with their sha256 by relpath."""

    mnist_train: np.ndarray  # uint8 (60000, 784)
    mnist_test: np.ndarray  # uint8 (10000, 784)
    lm: dict[str, np.ndarray]  # part -> uint8 bits (N, 784)
    sha256: dict[str, str]

    def cache_key(self) -> str:
        text = json.dumps({"version": MATCHING_VERSION, "sources": self.sha256}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _gray_pool(sources: LMSources, part: str) -> np.ndarray:
    return sources.mnist_test if part == "test" else sources.mnist_train


def verify(sources: LMSources, pairs: dict[str, np.ndarray]) -> dict[str, PairCheck]:
    """MatchingError unless the pairs are one-to-one and every pair a plausible draw; train and
    valid together must use each MNIST training image at most once. Returns each part's fit."""
    checks = {part: verify_matching(sources.lm[part], _gray_pool(sources, part), pairs[part],
                                    f"LM {part} file") for part in PARTS}
    both = np.concatenate([pairs["train"], pairs["valid"]])
    if len(np.unique(both)) != len(both):
        raise MatchingError("the LM train and valid files share MNIST training images; they "
                            "should be disjoint parts of one permutation")
    return checks


def compute(sources: LMSources) -> dict[str, np.ndarray]:
    """The matching of every LM file (train and valid matched as one pool of 60,000)."""
    train_valid = np.concatenate([sources.lm["train"], sources.lm["valid"]])
    joint = match(train_valid, sources.mnist_train, "LM train and valid files")
    n_train = len(sources.lm["train"])
    return {"train": joint[:n_train], "valid": joint[n_train:],
            "test": match(sources.lm["test"], sources.mnist_test, "LM test file")}


def cache_paths(cache_dir: Path, sources: LMSources) -> tuple[Path, Path]:
    stem = f"lm-matching.{sources.cache_key()}"
    return Path(cache_dir) / f"{stem}.npz", Path(cache_dir) / f"{stem}.json"


def read_cache(cache_dir: Path, sources: LMSources) -> dict[str, np.ndarray] | None:
    """The cached matching when its checksum and sources are this one's, else None."""
    npz, sidecar = cache_paths(cache_dir, sources)
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        if meta.get("sources") != sources.sha256 or meta.get("sha256") != file_digest(npz):
            return None
        with np.load(npz, allow_pickle=False) as arrays:
            return {part: np.asarray(arrays[part], dtype=np.int64) for part in PARTS}
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def write_cache(cache_dir: Path, sources: LMSources, pairs: dict[str, np.ndarray]
                ) -> Path | None:
    """Best effort (a read-only data folder only costs recomputing): the .npz, then its JSON."""
    npz, sidecar = cache_paths(cache_dir, sources)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{part: pairs[part].astype(np.int32) for part in PARTS})
    try:
        atomic_write_bytes(npz, buffer.getvalue())
        atomic_write_json(sidecar, {"version": MATCHING_VERSION, "sources": sources.sha256,
                                    "sha256": file_digest(npz)})
    except OSError:
        return None
    return npz


def lm_pairs(sources: LMSources, cache_dir: Path, quiet: bool = False) -> LMPairs:
    """The verified matching: read from the cache, or computed (about a minute) and cached."""
    pairs = read_cache(cache_dir, sources)
    computed = pairs is None
    if computed:
        if not quiet:
            print("matching the Larochelle-Murray files to MNIST (once; about a minute) ...",
                  file=sys.stderr)
        pairs = compute(sources)
    checks = verify(sources, pairs)  # a cache is checked like a fresh result, before any use
    where = write_cache(cache_dir, sources, pairs) if computed else \
        cache_paths(cache_dir, sources)[0]
    return LMPairs(train=pairs["train"], valid=pairs["valid"], test=pairs["test"],
                   checks=checks, mnist_train_size=len(sources.mnist_train), cache=where,
                   computed=computed)
