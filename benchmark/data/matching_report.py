"""`python -m benchmark match`: find (or read from the cache) the MNIST image behind every
Larochelle-Murray binary image, verify it, and say what was found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.data.lm_pairs import PARTS
from benchmark.data.splits import load_lm_pairs


def matching_summary(data_dir: Path) -> dict[str, Any]:
    """The matching's facts, as verified: sizes, one-to-one, the spread of the pairs' fit, the
    cache."""
    pairs = load_lm_pairs(data_dir)
    summary: dict[str, Any] = {"cache": str(pairs.cache) if pairs.cache else None,
                               "computed_now": pairs.computed}
    for part in PARTS:
        index, check = getattr(pairs, part), pairs.checks[part]
        summary[part] = {"images": int(len(index)), "distinct_mnist_images": int(len(set(index))),
                         "impossible_pixels": int(check.impossible.sum()),
                         "z_min": round(float(check.z.min()), 2),
                         "z_max": round(float(check.z.max()), 2)}
    both = np.concatenate([pairs.train, pairs.valid])
    summary["train_and_valid_cover_mnist_train"] = bool(len(set(both)) == pairs.mnist_train_size)
    summary["train_from_first_50000"] = round(float(np.mean(pairs.train < 50_000)), 4)
    return summary


def match_command(data_dir: Path, as_json: bool) -> int:
    summary = matching_summary(Path(data_dir))
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    for part in PARTS:
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
