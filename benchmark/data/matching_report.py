"""`python -m benchmark match`: find (or read from the cache) the MNIST image behind every
Larochelle-Murray binary image, verify it, and say what was found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data import loaders
from benchmark.data.lm_matching import check_pairs
from benchmark.data.sources import load_catalogue
from benchmark.data.splits import (
    LM_FILES,
    MNIST_FILES,
    _parse,
    load_lm_pairs,
    raw_files_for,
    require_verified,
)


def matching_summary(data_dir: Path) -> dict[str, Any]:
    """The matching's facts: sizes, one-to-one, the spread of the pairs' fit, the cache."""
    pairs = load_lm_pairs(data_dir)
    entries = raw_files_for("mnist-dynamic-lm50k", load_catalogue(data_dir))
    shas = require_verified("mnist-dynamic-lm50k", entries, data_dir)
    by_path = {e.relpath: e for e in entries}

    def read(relpath: str, parse, key: str) -> np.ndarray:
        return _parse(by_path[relpath], data_dir, shas[relpath], parse, (key,))[key]

    mnist_train, mnist_test = (read(p, loaders.parse_mnist_images, "images") for p in MNIST_FILES)
    summary: dict[str, Any] = {"cache": str(pairs.cache) if pairs.cache else None,
                               "computed_now": pairs.computed}
    for part, relpath in zip(("train", "valid", "test"), LM_FILES, strict=True):
        bits = read(relpath, loaders.parse_amat, "bits")
        index = getattr(pairs, part)
        pool = mnist_test if part == "test" else mnist_train
        check = check_pairs(bits, pool[index])
        summary[part] = {"images": int(len(index)), "distinct_mnist_images": int(len(set(index))),
                         "impossible_pixels": int(check.impossible.sum()),
                         "z_min": round(float(check.z.min()), 2),
                         "z_max": round(float(check.z.max()), 2)}
    both = np.concatenate([pairs.train, pairs.valid])
    summary["train_and_valid_cover_mnist_train"] = bool(len(set(both)) == len(mnist_train))
    summary["train_from_first_50000"] = round(float(np.mean(pairs.train < 50_000)), 4)
    return summary


def match_command(data_dir: Path, as_json: bool) -> int:
    summary = matching_summary(Path(data_dir))
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    for part in ("train", "valid", "test"):
        s = summary[part]
        print(f"LM {part:<5} file: {s['images']:,} images matched one-to-one to "
              f"{s['distinct_mnist_images']:,} MNIST images; {s['impossible_pixels']} impossible "
              f"pixels; fit {s['z_min']:+.2f} to {s['z_max']:+.2f} sd from the expectation")
    print(f"train + valid cover all MNIST training images: "
          f"{summary['train_and_valid_cover_mnist_train']}; share of LM train images from the "
          f"first 50,000 MNIST images: {summary['train_from_first_50000']:.1%}")
    print(f"matching cached at {summary['cache']}"
          + (" (computed now)" if summary["computed_now"] else " (read from the cache, verified)"))
    return 0
