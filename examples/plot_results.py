"""The figures to look at first after a sweep, from its results folder, with the Python API.

    python examples/plot_results.py results/table1 [--out FIGURES_DIR]

writes into FIGURES_DIR (default: <results>/figures):
  test_nll.png         test NLL of every complete run, per data condition and model, with its
                       standard error (the mean over seeds when there are several), beside the
                       paper's value where the paper has one
  learning_curves.png  every run's learning curve (metrics.csv): -L_k on a fixed test subset
                       and the training bound, against epochs
  test_nll.csv         the numbers of the first figure
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

import benchmark  # noqa: E402
from benchmark.definitions import find_objective, objective_label  # noqa: E402
from benchmark.report.published import load_published  # noqa: E402


def optional(row: pd.Series, name: str) -> object | None:
    """A config field that only some runs have (estimator, an objective's parameters): None
    when absent."""
    value = row.get(name)
    return None if value is None or pd.isna(value) else value


def params_of(row: pd.Series) -> tuple:
    """The objective's parameters as its definition names them ((("m", 8),) for MIWAE)."""
    definition = find_objective(row["model"])
    names = [p.name for p in definition.parameters] if definition is not None else []
    return tuple((name, optional(row, name)) for name in names
                 if optional(row, name) is not None)


def label(row: pd.Series) -> str:
    """How a person reads a run's model: IWAE k=50, 2 layers."""
    name = objective_label(row["model"], int(row["k"]), optional(row, "estimator"),
                           params_of(row))
    return f"{name}, {int(row['layers'])} layer{'s' if row['layers'] > 1 else ''}"


def published_nll(row: pd.Series) -> float | None:
    """The paper's test NLL of the same cell (Tables 1 and 3), None where it has none."""
    if optional(row, "estimator") is not None or params_of(row):
        return None  # an objective after the paper
    cell = load_published().cell(row["data"], int(row["layers"]), int(row["k"]), row["model"])
    return cell.nll if cell is not None else None


def test_nll_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per data condition, model, fidelity and schedule: the mean test NLL over seeds,
    its uncertainty (the sd over seeds, or the one run's standard error), the number of seeds,
    the paper's value. Runs of the same configuration (one run found twice) count once."""
    runs = frame[frame["status"] == "complete"].drop_duplicates("run_id").copy()
    runs["label"] = runs.apply(label, axis=1)
    if runs[["fidelity", "schedule"]].drop_duplicates().shape[0] > 1:
        runs["label"] += " [" + runs["fidelity"] + ", " + runs["schedule"] + "]"
    rows = []
    for (data, name), group in runs.groupby(["data", "label"], sort=True):
        first = group.iloc[0]
        uncertainty = group["test_nll"].std() if len(group) > 1 else first["test_nll_se"]
        rows.append({"data": data, "model": name, "layers": int(first["layers"]),
                     "k": int(first["k"]), "test_nll": group["test_nll"].mean(),
                     "uncertainty": uncertainty, "seeds": len(group),
                     "eval_k": int(first["eval_k"]), "published": published_nll(first)})
    return pd.DataFrame(rows).sort_values(["data", "layers", "k", "model"])


def plot_test_nll(table: pd.DataFrame, path: Path) -> None:
    conditions = list(dict.fromkeys(table["data"]))
    fig, axes = plt.subplots(len(conditions), 1, squeeze=False,
                             figsize=(9, 3.2 * len(conditions)))
    for ax, data in zip(axes[:, 0], conditions, strict=True):
        rows = table[table["data"] == data].reset_index(drop=True)
        ax.errorbar(rows.index, rows["test_nll"], yerr=rows["uncertainty"], fmt="o",
                    capsize=3, label="measured")
        known = rows.dropna(subset=["published"])
        if not known.empty:
            ax.plot(known.index, known["published"], "x", color="black", label="paper")
        ax.set_xticks(rows.index, rows["model"], rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(rows) - 0.5)
        ax.set_title(f"{data}: test NLL (L_{rows['eval_k'].max()}), lower is better")
        ax.set_ylabel("nats")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_learning_curves(frame: pd.DataFrame, path: Path) -> None:
    runs = frame[frame["run_dir"].notna()].drop_duplicates("run_id")
    conditions = sorted(set(runs["data"]))
    fig, axes = plt.subplots(len(conditions), 2, squeeze=False,
                             figsize=(11, 3.4 * len(conditions)))
    for row_axes, data in zip(axes, conditions, strict=True):
        for _, run in runs[runs["data"] == data].iterrows():
            curve = Path(run["run_dir"]) / "metrics.csv"
            if not curve.exists():
                continue
            points = pd.read_csv(curve)
            row_axes[0].plot(points["epoch"], points["test_nll_subset"], label=label(run))
            row_axes[1].plot(points["epoch"], points["train_bound_nll"], label=label(run))
        for ax, what in zip(row_axes, ("-L_k, fixed test subset", "-training bound"),
                            strict=True):
            ax.set_xscale("log")
            ax.set_xlabel("epoch")
            ax.set_ylabel("nats")
            ax.set_title(f"{data}: {what}")
        row_axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_figures(results: Path, out: Path) -> list[Path]:
    """Load every result record under `results` and write the figures into `out`."""
    frame = benchmark.load_results(results)
    if frame.empty or not (frame["status"] == "complete").any():
        raise SystemExit(f"no complete runs under {results}: run a sweep first")
    out.mkdir(parents=True, exist_ok=True)
    table = test_nll_table(frame)
    table.to_csv(out / "test_nll.csv", index=False)
    plot_test_nll(table, out / "test_nll.png")
    plot_learning_curves(frame, out / "learning_curves.png")
    return [out / "test_nll.csv", out / "test_nll.png", out / "learning_curves.png"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a results folder, e.g. results/table1")
    parser.add_argument("--out", type=Path, default=None,
                        help="where the figures go (default: <results>/figures)")
    args = parser.parse_args(argv)
    for path in write_figures(args.results, args.out or args.results / "figures"):
        print(path)


if __name__ == "__main__":
    main()
