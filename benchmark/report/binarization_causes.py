"""The report's "Why fixed binarization scores worse" section, from the runs of the
binarization-causes grid (benchmark.report.decomposition does the arithmetic).

Runs are matched by everything but their data condition (fidelity, schedule and cut, model, k,
layers, seed); each match is one seed of one cell. Its scores are the per-image log-likelihoods
that `evaluate RUN --test lm,dynamic --split train --stage all` recorded: the final model's
under metrics.tests, each stage end's under metrics.stages. Only scores with the same k, the
same images and the same test binarization are ever paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.report.decomposition import (
    CONDITIONS,
    DYNAMIC,
    EFFECTS,
    EXTRA_EFFECTS,
    FIXED,
    TESTS,
    TOTAL,
    PairedDifference,
    SeedSummary,
    decompose,
    over_seeds,
)
from benchmark.report.published import Published
from benchmark.report.runs import Run, format_count
from benchmark.report.tableio import Cell, ReportTable

EVALUATIONS_DIR = "evaluations"
FINAL = "final"
EFFECT_COLUMNS = (*EFFECTS, TOTAL, *EXTRA_EFFECTS)
CONDITION_LABELS = {FIXED: "fixed LM 50k", "mnist-dynamic-lm50k": "dynamic on LM's 50k",
                    DYNAMIC: "dynamic 59.6k"}


@dataclass(frozen=True)
class CellKey:
    """What a seed's three runs share."""

    fidelity: str
    schedule: str
    cut: tuple  # (stages, epochs, steps)
    model: str
    k: int
    layers: int

    def label(self) -> str:
        cut = ", ".join(f"{name} {value:g}" for name, value in
                        zip(("stages", "epochs", "steps"), self.cut, strict=True)
                        if value is not None)
        return f"{self.model.upper()} k={self.k}, {self.layers}L, {self.fidelity}" + \
            (f" ({cut})" if cut else "")


@dataclass(frozen=True)
class Score:
    """One recorded score: its summary and where its per-image values lie."""

    summary: dict[str, Any]
    folder: Path

    def values(self) -> np.ndarray | None:
        """The per-image log-likelihoods (and their image index), or None when unreadable."""
        try:
            values = np.load(self.folder / Path(str(self.summary["loglik"])).name,
                             allow_pickle=False)
            index = np.load(self.folder / Path(str(self.summary["index"])).name,
                            allow_pickle=False)
        except (OSError, ValueError, KeyError):
            return None
        if values.dtype.kind != "f" or values.shape != index.shape or values.ndim != 1:
            return None
        return np.stack([index.astype(np.float64), values])

    @property
    def pairing(self) -> tuple:
        return (self.summary.get("k"), self.summary.get("n"))


def cell_key(run: Run) -> CellKey:
    c = run.config
    return CellKey(run.fidelity, str(c.get("schedule")),
                   (c.get("stages"), c.get("epochs"), c.get("steps")), str(run.model),
                   int(run.k or 0), int(run.layers or 0))


def scores_of(run: Run) -> dict[str, dict[str, Score]]:
    """point (FINAL or the stage index as text) -> score name -> Score."""
    metrics = run.metrics
    out: dict[str, dict[str, Score]] = {}
    evaluations = run.run_dir / EVALUATIONS_DIR
    tests = metrics.get("tests")
    if isinstance(tests, dict):
        out[FINAL] = {name: Score(s, evaluations) for name, s in tests.items()
                      if isinstance(s, dict)}
    stages = metrics.get("stages")
    if isinstance(stages, dict):
        for stage, by_name in stages.items():
            if isinstance(by_name, dict) and str(stage).isdigit():
                out[str(stage)] = {name: Score(s, evaluations / f"stage-{stage}")
                                   for name, s in by_name.items() if isinstance(s, dict)}
    return out


def causes_runs(runs: Sequence[Run]) -> dict[CellKey, dict[int, dict[str, Run]]]:
    """Complete runs of the three conditions: cell -> seed -> condition -> run."""
    cells: dict[CellKey, dict[int, dict[str, Run]]] = {}
    for run in runs:
        if run.data in CONDITIONS and run.is_plain and run.status == "complete" and \
                run.init_from is None and run.seed is not None:
            cells.setdefault(cell_key(run), {}).setdefault(int(run.seed), {})[run.data] = run
    return cells


@dataclass(frozen=True)
class PointResult:
    """One cell at one point (a stage end, or the final model) over its seeds."""

    point: str
    epochs: float | None
    effects: dict[str, SeedSummary]
    nll: dict[tuple[str, str], SeedSummary]  # (condition, score name) -> NLL over seeds
    k: int | None
    n: int | None


def seed_scores(by_condition: dict[str, Run], point: str
                ) -> tuple[dict[tuple[str, str], np.ndarray], float | None, tuple | None]:
    """(condition, score name) -> per-image values of one seed at one point, when every score
    shares k and images; with the point's epoch and that (k, n)."""
    found: dict[tuple[str, str], Score] = {}
    for condition, run in by_condition.items():
        for name, score in scores_of(run).get(point, {}).items():
            if name in (*TESTS, "train"):
                found[(condition, name)] = score
    pairing = {s.pairing for key, s in found.items() if key[1] in TESTS}
    if len(pairing) != 1:
        return {}, None, None
    values, epoch = {}, None
    for key, score in found.items():
        if key[1] != "train" and score.pairing not in pairing:
            continue
        array = score.values()
        if array is not None:
            values[key] = array
        epoch = score.summary.get("epoch", epoch)
    tests = [a for key, a in values.items() if key[1] in TESTS]
    if tests and any(not np.array_equal(tests[0][0], a[0]) for a in tests):
        return {}, None, None  # not the same images: nothing pairs
    return {key: a[1] for key, a in values.items()}, epoch, next(iter(pairing))


def point_result(seeds: dict[int, dict[str, Run]], point: str) -> PointResult | None:
    per_effect: dict[str, list[PairedDifference]] = {}
    per_nll: dict[tuple[str, str], list[PairedDifference]] = {}
    epochs, pairing = None, None
    for seed in sorted(seeds):
        scores, epoch, seed_pairing = seed_scores(seeds[seed], point)
        if not scores:
            continue
        epochs, pairing = epoch if epoch is not None else epochs, seed_pairing
        for name, diff in decompose({k: v for k, v in scores.items() if k[1] in TESTS}).items():
            per_effect.setdefault(name, []).append(diff)
        for key, values in scores.items():
            nll = -float(np.mean(values))
            se = float(np.std(values, ddof=1) / np.sqrt(values.size)) if values.size > 1 \
                else float("nan")
            per_nll.setdefault(key, []).append(PairedDifference(nll, se, values.size))
    if not per_nll:
        return None
    return PointResult(point, epochs, {n: over_seeds(d) for n, d in per_effect.items()},
                       {key: over_seeds(d) for key, d in per_nll.items()},
                       pairing[0] if pairing else None, pairing[1] if pairing else None)


def cell_results(seeds: dict[int, dict[str, Run]]) -> list[PointResult]:
    """Every stage end, then the final model, that has scores."""
    points = sorted({p for by_condition in seeds.values() for run in by_condition.values()
                     for p in scores_of(run) if p != FINAL}, key=int) + [FINAL]
    return [r for p in points if (r := point_result(seeds, p)) is not None]


def summary_cell(s: SeedSummary | None) -> Cell:
    if s is None:
        return Cell(value="–")
    spread = f"{s.se:.2f}"
    notes = (f"sd over seeds {s.sd:.2f}" if s.sd is not None else "one seed",
             f"image s.e. {s.image_se:.2f}", f"{s.seeds} seed(s)")
    return Cell(value=f"{s.mean:+.2f}", spread=spread, notes=notes)


def point_label(result: PointResult) -> str:
    where = "final model" if result.point == FINAL else f"end of stage {int(result.point) + 1}"
    return f"{where} ({format_count(result.epochs)} epochs)" if result.epochs is not None \
        else where


def published_gap(published: Published, key: CellKey) -> str:
    fixed = published.cell(FIXED, key.layers, key.k, key.model)
    dynamic = published.cell(DYNAMIC, key.layers, key.k, key.model)
    if fixed is None or dynamic is None:
        return "–"
    return f"{fixed.nll - dynamic.nll:+.2f}"


def effects_table(cells: dict[CellKey, list[PointResult]], published: Published
                  ) -> ReportTable:
    rows = []
    for key, results in cells.items():
        for result in results:
            values = tuple(summary_cell(result.effects.get(name)) for name in EFFECT_COLUMNS)
            rows.append(((key.label(), point_label(result)),
                         (*values, Cell(value=published_gap(published, key)),
                          Cell(value=f"L_{result.k}, {result.n} images"))))
    return ReportTable(
        name="binarization_causes", title="The fixed-vs-dynamic gap, taken apart (nats)",
        description=(
            "Each column is a difference of test NLL on the same test images, paired image by "
            "image (positive: the first scores worse). resampling = fixed LM 50k − dynamic on "
            "LM's 50k, both on LM's test file; more images = dynamic on LM's 50k − dynamic "
            "59.6k, on LM's test file; test draw = dynamic 59.6k on LM's test file − on the "
            "suite's seed-123 draw; total = fixed on LM's test file − dynamic 59.6k on the "
            "seed-123 draw, which is the sum of the three (what Table 3 − Table 1 measures); "
            "the last effect is the resampling effect measured on the seed-123 draw instead. "
            "Values: mean over seeds ± its standard error from the seeds' spread; the notes "
            "give that sd and the image-noise part alone. The published column is the paper's "
            "Table 3 − Table 1 for the same cell after the full 3,280-epoch protocol, shown "
            "for orientation only: these runs are cut, and no verdict is given."),
        index_columns=("Cell", "Model at"),
        value_columns=(*EFFECT_COLUMNS, "paper: Table 3 − Table 1 (full protocol)",
                       "evaluation"),
        rows=tuple(rows), folder="binarization-causes")


def nll_table(cells: dict[CellKey, list[PointResult]]) -> ReportTable:
    rows = []
    for key, results in cells.items():
        for result in results:
            for condition in CONDITIONS:
                values = [result.nll.get((condition, name)) for name in (*TESTS, "train")]
                lm, train = values[0], values[2]
                gap = None if lm is None or train is None else \
                    f"{lm.mean - train.mean:+.2f}"
                rows.append(((key.label(), point_label(result), CONDITION_LABELS[condition]),
                             (*(Cell(value="–") if v is None else
                                Cell(value=f"{v.mean:.2f}",
                                     spread=f"{v.sd:.2f}" if v.sd is not None else "")
                                for v in values), Cell(value=gap or "–"))))
    return ReportTable(
        name="binarization_causes_nll", title="Test and training NLL of each condition (nats)",
        description=(
            "Mean over seeds ± sd over seeds. Training NLL is scored on 1,000 (or the asked "
            "number of) training images of each condition as it sees them: LM's own draw for "
            "the fixed condition, the seed-123 draw of the gray images for the dynamic ones. "
            "The gap is test (LM's file) minus train: how far the model fits its training "
            "images better than new ones. Earlier work reports on LM's test file (NADE 88.86, "
            "MADE 88.04 nats after full training; Larochelle & Murray 2011, Germain et al. "
            "2015): the dynamic 59.6k row's LM-test column is the paper's kind of model on "
            "that set."),
        index_columns=("Cell", "Model at", "Trained on"),
        value_columns=("NLL on LM's test file", "NLL on the seed-123 draw", "training NLL",
                       "test − train"),
        rows=tuple(rows), folder="binarization-causes")


def causes_results(runs: Sequence[Run]) -> dict[CellKey, list[PointResult]]:
    return {key: results for key, seeds in causes_runs(runs).items()
            if (results := cell_results(seeds))}
