"""The figure of the "Why fixed binarization scores worse" section: stage by stage, each
condition's test and training NLL, and the resampling effect with its uncertainty."""

from __future__ import annotations

import matplotlib
from matplotlib.figure import Figure

from benchmark.report.binarization_causes import (
    CONDITION_LABELS,
    FINAL,
    CellKey,
    PointResult,
)
from benchmark.report.decomposition import CONDITIONS, EFFECTS
from benchmark.report.figures import STYLE, png_bytes

CONDITION_COLORS = {"mnist-fixed": "#d95f02", "mnist-dynamic-lm50k": "#7570b3",
                    "mnist-dynamic": "#1b9e77"}
EFFECT_COLORS = {"resampling": "#d95f02", "more images": "#7570b3", "test draw": "#666666"}


def staged(results: list[PointResult]) -> list[PointResult]:
    return [r for r in results if r.point != FINAL and r.epochs is not None]


def causes_figure(cells: dict[CellKey, list[PointResult]]) -> bytes | None:
    """Per cell: left, test (LM file, solid) and training (dashed) NLL of each condition against
    epochs; right, each effect against epochs with ± its standard error over seeds."""
    drawn = {key: staged(results) for key, results in cells.items() if len(staged(results)) > 1}
    if not drawn:
        return None
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(9.0, 3.0 * len(drawn)), layout="constrained")
        axes = fig.subplots(len(drawn), 2, squeeze=False)
        for row, (key, results) in enumerate(drawn.items()):
            epochs = [r.epochs for r in results]
            left, right = axes[row]
            for condition in CONDITIONS:
                color = CONDITION_COLORS[condition]
                for name, style in (("test-lm", "-"), ("train", "--")):
                    ys = [r.nll.get((condition, name)) for r in results]
                    if all(y is not None for y in ys):
                        left.plot(epochs, [y.mean for y in ys], style, color=color, marker="o",
                                  markersize=3, label=f"{CONDITION_LABELS[condition]}, "
                                  f"{'test (LM file)' if name == 'test-lm' else 'train'}")
            left.set_xscale("log")
            left.set_title(f"{key.label()}: NLL")
            left.set_xlabel("epochs")
            left.set_ylabel("NLL (nats)")
            left.legend(loc="upper right", fontsize=6)
            for name in EFFECTS:
                ys = [r.effects.get(name) for r in results]
                if all(y is not None for y in ys):
                    right.errorbar(epochs, [y.mean for y in ys], yerr=[y.se for y in ys],
                                   color=EFFECT_COLORS[name], marker="o", markersize=3,
                                   capsize=2, label=name)
            right.axhline(0.0, color="#999999", linewidth=0.8)
            right.set_xscale("log")
            right.set_title(f"{key.label()}: effects (± s.e. over seeds)")
            right.set_xlabel("epochs")
            right.set_ylabel("nats (positive: first scores worse)")
            right.legend(loc="upper left", fontsize=7)
        return png_bytes(fig)
