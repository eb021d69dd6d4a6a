"""The gradient SNR figure: median SNR against K on log-log axes, one line per estimator and
network, the quartiles shaded; beside it, when measured, the effective sample size of the weights
against K with the line ESS = K that the large-K regime follows (matplotlib's Agg canvas, never
pyplot's global state)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from benchmark.definitions import snr_roles

NETWORK_STYLES = {"encoder": "-", "decoder": "--"}
NETWORK_NAMES = {"encoder": "inference network (q)", "decoder": "generative network (p)"}


def snr_figure_png(rows: Sequence[dict], title: str,
                   ess: Sequence[dict] | None = None,
                   floor: float | None = None) -> bytes | None:
    """rows: snr.json's "results" (estimator, k, network, median, q1, q3); ess: its
    weights["ess"] (k, ess), drawn in a second panel; floor: its noise floor, drawn as a grey
    line. None when no line has two K values."""
    lines: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        lines.setdefault((row["estimator"], row["network"]), []).append(row)
    lines = {key: sorted(v, key=lambda r: r["k"]) for key, v in lines.items() if len(v) >= 2}
    if not lines:
        return None
    with matplotlib.rc_context({"font.size": 9, "axes.spines.top": False,
                                "axes.spines.right": False, "axes.grid": True,
                                "grid.color": "#e5e5e5"}):
        panels = 2 if ess else 1
        fig = Figure(figsize=(6.4 + 3.2 * (panels - 1), 4.2), layout="constrained")
        axes = fig.subplots(1, panels, width_ratios=[2, 1][:panels], squeeze=False)[0]
        ax = axes[0]
        roles = snr_roles()
        for (estimator, network), points in lines.items():
            ks = [p["k"] for p in points]
            role = roles.get(estimator)
            color = role.color if role is not None else "black"
            ax.plot(ks, [p["median"] for p in points], color=color, marker="o", ms=4,
                    ls=NETWORK_STYLES.get(network, ":"),
                    label=f"{role.name if role is not None else estimator}, "
                          f"{NETWORK_NAMES.get(network, network)}")
            ax.fill_between(ks, [p["q1"] for p in points], [p["q3"] for p in points],
                            color=color, alpha=0.06, lw=0)
        if floor is not None:
            ax.axhline(floor, color="grey", lw=0.8, ls=(0, (4, 3)),
                       label="noise floor (a coordinate of mean 0)")
        ax.set_ylabel("gradient SNR = |mean| / sd (median over coordinates)")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, frameon=False, loc="best")
        if ess:
            _ess_panel(axes[1], ess)
        for panel in axes:
            _log_log(panel)
        FigureCanvasAgg(fig)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight",
                    metadata={"Software": None})
        return buffer.getvalue()


def _ess_panel(ax: Axes, ess: Sequence[dict]) -> None:
    points = sorted(ess, key=lambda r: r["k"])
    ks = [r["k"] for r in points]
    ax.plot(ks, ks, color="#bdbdbd", ls=":", label="ESS = K (large-K regime)")
    ax.plot(ks, [r["ess"] for r in points], color="black", marker="o", ms=4,
            label="measured (median over the minibatch)")
    ax.set_ylabel("effective sample size of the K weights")
    ax.set_title("Which regime these K are in", fontsize=9)
    ax.legend(fontsize=7, frameon=False, loc="upper left")


def _log_log(ax: Axes) -> None:
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("K (importance samples)")
