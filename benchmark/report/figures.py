"""The report's figures, drawn with matplotlib's Agg canvas and returned as PNG bytes.

Figures are built on `matplotlib.figure.Figure` directly rather than through pyplot, so drawing
a report never touches pyplot's global figure registry or the user's interactive backend.
Every function returns None when there is nothing to draw, and the page then says so.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.image import imsave

from benchmark.records import CURVES_FILE, RecordError, read_array, read_curves
from benchmark.report.published import KS, LAYERS, MODELS, Published
from benchmark.report.runs import Run, data_label
from benchmark.report.summary import CellSummary
from benchmark.report.tables import ALL_DATA, Grid

STAGE_BOUNDARIES = (1, 4, 13, 40, 121, 364, 1093)
ACTIVE_THRESHOLD = 1e-2
MODEL_COLORS = {("vae", 1): "#9ecae1", ("vae", 2): "#3182bd",
                ("iwae", 1): "#fdae6b", ("iwae", 2): "#e6550d"}
K_COLORS = {1: "#1b9e77", 5: "#7570b3", 50: "#d95f02"}
MODEL_DASHES = {"vae": "-", "iwae": "--"}
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.color": "#e5e5e5", "grid.linewidth": 0.6, "figure.dpi": 100,
}
DPI = 110
OFF_SCALE_NATS = 6.0


def png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight",
                metadata={"Software": None})
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _conditions_with_runs(grid: Grid) -> list[str]:
    return [d for d in ALL_DATA if any(s.measurement for (dd, *_), s in grid.cells.items()
                                       if dd == d)]


def nll_vs_k(grid: Grid, published: Published) -> bytes | None:
    """Test NLL against k per condition: measured (filled), cut runs (x), published (open)."""
    conditions = _conditions_with_runs(grid)
    if not conditions:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(3.6 * len(conditions), 3.4)
        axes = fig.subplots(1, len(conditions), squeeze=False)[0]
        for ax, data in zip(axes, conditions, strict=True):
            _draw_nll_vs_k(ax, grid, published, data)
        axes[0].set_ylabel("test NLL (nats, lower is better)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
        return png_bytes(fig)


def off_scale_limit(reference: Sequence[float]) -> float:
    """Upper axis limit: a few nats above the published and full-protocol values.

    A smoke run scores a hundred nats worse; drawn to scale it would flatten every real
    difference into one line, so such points are left out and counted on the axes instead.
    """
    return max(reference) + OFF_SCALE_NATS


def _note_off_scale(ax, n: int) -> None:
    """Say under the axis how many points were left out (drawn in the tables instead)."""
    if n:
        ax.set_xlabel(f"{ax.get_xlabel()}\n({n} cut run{'s' if n > 1 else ''} off scale, "
                      f"see the tables)")


def _draw_nll_vs_k(ax, grid: Grid, published: Published, data: str) -> None:
    limit = off_scale_limit(_reference_values(grid, published, data))
    hidden = 0
    for model in MODELS:
        for layers in LAYERS:
            color = MODEL_COLORS[(model, layers)]
            label = f"{model.upper()} {layers}L"
            ref = [published.cell(data, layers, k, model).nll for k in KS]
            ax.plot(KS, ref, ls=":", marker="o", mfc="white", color=color, lw=1,
                    label=f"{label} published")
            cells = [grid[(data, layers, k, model)] for k in KS]
            hidden += _plot_measured(ax, cells, color, f"{label} measured", limit)
    ax.set_xscale("log")
    ax.set_xticks(KS, [str(k) for k in KS])
    ax.minorticks_off()
    ax.set_xlabel("k (samples in the training objective)")
    _note_off_scale(ax, hidden)
    ax.set_title(data_label(data))


def _reference_values(grid: Grid, published: Published, data: str) -> list[float]:
    values = [c.nll for c in (*published.table1, *published.table3) if c.data == data]
    values += [s.measurement.nll for (d, *_), s in grid.cells.items()
               if d == data and s.measurement and s.measurement.full]
    return values


def _plot_measured(ax, cells: Sequence[CellSummary], color: str, label: str,
                   limit: float) -> int:
    """Draw full-protocol and cut values; return how many cut values were off scale."""
    full = [(k, s.measurement) for k, s in zip(KS, cells, strict=True)
            if s.measurement and s.measurement.full]
    cut_all = [(k, s.measurement) for k, s in zip(KS, cells, strict=True)
               if s.measurement and not s.measurement.full]
    cut = [(k, m) for k, m in cut_all if m.nll <= limit]
    if full:
        ax.errorbar([k for k, _ in full], [m.nll for _, m in full],
                    yerr=[m.spread or 0.0 for _, m in full], color=color, marker="s",
                    ms=5, lw=1.6, capsize=2, label=label)
    if cut:
        ax.plot([k for k, _ in cut], [m.nll for _, m in cut], ls="none", marker="x",
                color=color, ms=6, mew=1.5, label=f"{label.rsplit(' ', 1)[0]} cut run")
    return len(cut_all) - len(cut)


def read_curve(run: Run) -> pd.DataFrame | None:
    """metrics.csv of a run, or None when absent, half-written (a running run's file) or refused
    by the records' reader (its columns come back as numbers only)."""
    try:
        frame = read_curves(run.run_dir, str(run.record.get("curves") or CURVES_FILE))
    except RecordError:
        return None
    frame = frame[frame["epoch"] > 0]
    return frame if len(frame) else None


def learning_curves(runs: Sequence[Run], fidelity: str) -> bytes | None:
    """Training bound against epoch (log axis), one panel per condition and depth."""
    curves = {}
    for run in runs:
        if (run.fidelity == fidelity and not run.is_continuation and run.is_plain
                and run.data in ALL_DATA):
            frame = read_curve(run)
            if frame is not None:
                curves[run] = frame
    conditions = [d for d in ALL_DATA if any(r.data == d for r in curves)]
    if not conditions:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(10, 2.9 * len(conditions))
        axes = fig.subplots(len(conditions), len(LAYERS), squeeze=False)
        for row, data in zip(axes, conditions, strict=True):
            for ax, layers in zip(row, LAYERS, strict=True):
                mine = {r: f for r, f in curves.items() if (r.data, r.layers) == (data, layers)}
                _draw_curves(ax, mine)
                ax.set_title(f"{data_label(data)}, {layers} stochastic layer"
                             f"{'s' if layers > 1 else ''}")
            row[0].set_ylabel("training bound (NLL, nats)")
        for ax in axes[-1]:
            ax.set_xlabel("epoch (log scale); dotted: learning-rate stage boundaries")
        handles, labels = _curve_legend()
        fig.legend(handles, labels, loc="outside lower center", ncol=6, frameon=False)
        return png_bytes(fig)


def _draw_curves(ax, curves: dict[Run, pd.DataFrame]) -> None:
    ax.grid(False, axis="x")
    for boundary in STAGE_BOUNDARIES:
        ax.axvline(boundary, color="#888888", lw=0.9, ls=(0, (2, 2)), zorder=0)
    lows, highs = [], []
    for run, frame in sorted(curves.items(), key=lambda item: (item[0].model, item[0].k)):
        y = frame["train_bound_nll"].to_numpy(dtype=float)
        ax.plot(frame["epoch"], y, color=K_COLORS.get(run.k, "black"),
                ls=MODEL_DASHES.get(run.model, "-"), lw=1.3, alpha=0.9)
        lows.append(np.nanmin(y))
        highs.append(np.nanpercentile(y, 60))
    ax.set_xscale("log")
    if lows:
        # Early epochs sit tens of nats higher; clip so the converged region stays readable.
        ax.set_ylim(min(lows) - 1.0, max(highs) + 2.0)
    else:
        ax.text(0.5, 0.5, "no curves", transform=ax.transAxes, ha="center", color="#777777")


def _curve_legend() -> tuple[list, list[str]]:
    from matplotlib.lines import Line2D

    handles, labels = [], []
    for model in MODELS:
        for k in KS:
            handles.append(Line2D([], [], color=K_COLORS[k], ls=MODEL_DASHES[model], lw=1.3))
            labels.append(f"{model.upper()} k={k}")
    return handles, labels


def _unit_log_variances(run: Run) -> np.ndarray | None:
    variances = run.metrics.get("unit_variances")
    if not isinstance(variances, list) or not variances:
        return None
    flat = np.concatenate([np.asarray(v, dtype=float).ravel() for v in variances])
    flat = flat[np.isfinite(flat) & (flat > 0)]
    return np.log10(flat) if flat.size else None


def active_units_histograms(grid: Grid) -> bytes | None:
    """Histograms of log10 unit variances (paper Appendix C), threshold 0.01 marked."""
    panels = []
    for data in ALL_DATA:
        for layers in LAYERS:
            for model in MODELS:
                series = {}
                for k in KS:
                    m = grid[(data, layers, k, model)].measurement
                    logs = _unit_log_variances(m.runs[0]) if m else None
                    if logs is not None:
                        series[k] = logs
                if series:
                    panels.append((data, layers, model, series))
    if not panels:
        return None
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(2.7 * cols, 2.3 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        bins = np.linspace(-6, 1, 36)
        for ax, (data, layers, model, series) in zip(axes, panels, strict=False):
            for k, logs in series.items():
                ax.hist(logs, bins=bins, histtype="step", lw=1.4, color=K_COLORS[k],
                        label=f"k={k}")
            ax.axvline(math.log10(ACTIVE_THRESHOLD), color="black", lw=1, ls="--")
            ax.set_title(f"{data_label(data)}, {model.upper()} {layers}L", fontsize=9)
            ax.set_xlabel("log10 variance of unit mean")
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        axes[0].set_ylabel("units")
        fig.legend(*_k_legend(), loc="outside lower center", ncol=4, frameon=False)
        return png_bytes(fig)


def _k_legend() -> tuple[list, list[str]]:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=K_COLORS[k], lw=1.4) for k in KS]
    handles.append(Line2D([], [], color="black", lw=1, ls="--"))
    return handles, [f"k={k}" for k in KS] + ["threshold 0.01"]


def binarization_dots(grid: Grid, published: Published) -> bytes | None:
    """Train and test NLL, fixed vs dynamic MNIST, per model cell (train open, test filled)."""
    rows = []
    for model in MODELS:
        for layers in LAYERS:
            for k in KS:
                dyn = grid[("mnist-dynamic", layers, k, model)].measurement
                fix = grid[("mnist-fixed", layers, k, model)].measurement
                if dyn or fix:
                    rows.append((f"{model.upper()} {layers}L k={k}", dyn, fix,
                                 published.cell("mnist-dynamic", layers, k, model).nll,
                                 published.cell("mnist-fixed", layers, k, model).nll))
    if not rows:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(7.5, 0.42 * len(rows) + 1.3)
        ax = fig.subplots()
        reference = [r[3] for r in rows] + [r[4] for r in rows]
        reference += [m.nll for r in rows for m in r[1:3] if m is not None and m.full]
        limit = off_scale_limit(reference)
        hidden = 0
        for y, (_, dyn, fix, pub_dyn, pub_fix) in enumerate(rows):
            shown = [m if m is None or m.nll <= limit else None for m in (dyn, fix)]
            hidden += sum(1 for a, b in zip((dyn, fix), shown, strict=True) if a is not b)
            _draw_binarization_row(ax, y, *shown, pub_dyn, pub_fix)
        ax.set_yticks(range(len(rows)), [_row_label(r) for r in rows])
        ax.invert_yaxis()
        ax.set_xlabel("NLL (nats, lower is better)")
        _note_off_scale(ax, hidden)
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncol=3,
                   frameon=False)
        return png_bytes(fig)


def _row_label(row: tuple) -> str:
    name, dyn, fix = row[0], row[1], row[2]
    cut = [m for m in (dyn, fix) if m is not None and not m.full]
    return f"{name} (cut)" if cut else name


def _draw_binarization_row(ax, y: int, dyn, fix, pub_dyn: float, pub_fix: float) -> None:
    for m, color, name, marker in ((dyn, "#3182bd", "dynamic", "o"),
                                   (fix, "#e6550d", "fixed", "s")):
        if m is None:
            continue
        ax.plot([m.nll], [y], marker=marker, color=color, ls="none", ms=7,
                label=f"{name} test (measured)")
        if m.train_nll is not None:
            ax.plot([m.train_nll], [y], marker=marker, mfc="white", color=color, ls="none",
                    ms=7, label=f"{name} train (measured)")
            ax.plot([m.train_nll, m.nll], [y, y], color=color, lw=1, alpha=0.6)
    ax.plot([pub_dyn, pub_fix], [y, y], ls="none", marker="|", ms=12, mew=1.5,
            color="#555555", label="published test (dynamic, fixed)")


def image_grid(images: np.ndarray, columns: int, transpose: bool, scale: int = 2) -> np.ndarray:
    """(N, 784) in [0, 1] -> one tiled image, 1-pixel gaps; OMNIGLOT arrays transposed back."""
    tiles = np.clip(np.asarray(images, dtype=float), 0.0, 1.0).reshape(-1, 28, 28)
    if transpose:
        # OMNIGLOT is stored with a Fortran-order reshape: each image is transposed.
        tiles = tiles.transpose(0, 2, 1)
    rows = math.ceil(len(tiles) / columns)
    canvas = np.full((rows * 29 + 1, columns * 29 + 1), 0.35)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        canvas[1 + r * 29:1 + r * 29 + 28, 1 + c * 29:1 + c * 29 + 28] = tile
    return np.kron(canvas, np.ones((scale, scale)))


def image_png(canvas: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    imsave(buffer, canvas, cmap="gray", vmin=0.0, vmax=1.0, format="png")
    return buffer.getvalue()


def _load_array(run: Run, key: str, default: str) -> np.ndarray | None:
    """A recorded array, read inside the run folder and never unpickled; None when refused."""
    name = (run.record.get("artifacts") or {}).get(key) or default
    try:
        return read_array(run.run_dir, str(name))
    except RecordError:
        return None


def samples_png(run: Run) -> bytes | None:
    samples = _load_array(run, "samples", "samples.npy")
    if samples is None or samples.ndim != 2 or samples.shape[1] != 784:
        return None
    return image_png(image_grid(samples[:64], 8, transpose=run.data == "omniglot"))


def reconstructions_png(run: Run) -> bytes | None:
    """Inputs and their reconstruction means in alternating rows of eight."""
    recon = _load_array(run, "reconstructions", "reconstructions.npy")
    if recon is None or recon.ndim != 3 or recon.shape[0] != 2 or recon.shape[2] != 784:
        return None
    # Four pairs of rows (8 inputs over their 8 reconstructions): the same 8x8 footprint as
    # the samples beside it.
    inputs, means = recon[0][:32], recon[1][:32]
    rows = [block for i in range(0, len(inputs), 8) for block in (inputs[i:i + 8],
                                                                  means[i:i + 8])]
    return image_png(image_grid(np.concatenate(rows), 8, transpose=run.data == "omniglot"))


def bdmc_gap_vs_steps(curves: Sequence[tuple[str, Sequence[tuple[int, float, float]]]]
                      ) -> bytes | None:
    """The BDMC gap (upper - lower bound, nats) against the number of intermediate
    distributions, one line per run, error bars: the gap's standard error over examples."""
    curves = [(label, points) for label, points in curves if points]
    if not curves:
        return None
    with matplotlib.rc_context(STYLE):
        fig = _new_figure(6.0, 3.6)
        ax = fig.subplots()
        for label, points in curves:
            steps, gaps, ses = zip(*points, strict=True)
            ax.errorbar(steps, gaps, yerr=ses, marker="o", ms=4, lw=1.4, capsize=2, label=label)
        ax.set_xscale("log")
        ax.set_yscale("symlog", linthresh=0.1)
        # a gap below zero is noise (the bounds hold in expectation): show only as much of it
        lowest = min(gap - se for _, points in curves for _, gap, se in points)
        ax.set_ylim(bottom=min(-0.1, lowest))
        ax.axhline(0.0, color="#888888", lw=0.8)
        ax.set_xlabel("T, intermediate distributions (sigmoid schedule)")
        ax.set_ylabel("BDMC gap, upper − lower (nats)")
        ax.legend(frameon=False, fontsize=7)
        return png_bytes(fig)
