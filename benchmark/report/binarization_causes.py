"""The report's "Why fixed binarization scores worse" section, from the runs of the
binarization-causes grid (benchmark.report.decomposition does the arithmetic).

Runs are matched by everything but their data condition (fidelity, schedule and cut, model, k,
layers, seed); each match is one seed of one cell. Its scores are the per-image log-likelihoods
that `evaluate RUN --test lm,dynamic --split train [--stage all]` saved in the run's
evaluations folder (benchmark.evaluation.test_scores): the final model's of a complete run, and
every stage end's, also of a run still training (a stage snapshot does not change). Only
scores with the same k, and test scores on the same images, are ever paired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.records import EVALUATIONS_DIR, RecordError, read_array, read_run_json
from benchmark.report.decomposition import (
    CONDITIONS,
    DYNAMIC,
    DYNAMIC_50K,
    EFFECTS,
    EXTRA_EFFECTS,
    FIXED,
    RESAMPLED,
    RESAMPLING_ON_DYNAMIC,
    TESTS,
    TOTAL,
    PairedDifference,
    SeedSummary,
    decompose,
    over_seeds,
    standard_error,
)
from benchmark.report.published import Published
from benchmark.report.runs import Run, format_count
from benchmark.report.tableio import Cell, ReportTable

FINAL = "final"
EFFECT_COLUMNS = (*EFFECTS, TOTAL, *EXTRA_EFFECTS)
CONDITION_LABELS = {FIXED: "fixed LM 50k", DYNAMIC_50K: "dynamic on LM's 50k",
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
    """One score on disk: its JSON summary, and where its per-image values lie (the run's
    folder, and the folder inside it)."""

    summary: dict[str, Any]
    run_dir: Path
    where: Path  # relative to run_dir: evaluations, or evaluations/stage-<s>

    @property
    def k(self) -> int:
        return int(self.summary["k"])

    @property
    def n(self) -> int:
        return int(self.summary["n"])

    def values(self) -> np.ndarray | None:
        """(2, n): the image indices and their log-likelihoods, or None when unreadable. Read
        through the records' validating reader: only file names are used, nothing outside the
        run folder is followed and nothing is unpickled."""
        try:
            values = read_array(self.run_dir, self._file("loglik"))
            index = read_array(self.run_dir, self._file("index"))
        except (RecordError, KeyError):
            return None
        if values.dtype.kind != "f" or values.shape != index.shape or values.ndim != 1 or \
                index.dtype.kind not in "iu" or not np.isfinite(values).all():
            return None
        return np.stack([index.astype(np.float64), values])

    def _file(self, key: str) -> str:
        return str(self.where / Path(str(self.summary[key])).name)


MAX_SUMMARY_BYTES = 64 * 1024  # a score's summary is a few hundred bytes


def readable_summary(run_dir: Path, relpath: Path) -> dict[str, Any] | None:
    """A score's JSON summary when the records' reader reads it (inside the run folder, small)
    and it has the fields the section needs, with sane types; else None."""
    try:
        summary = read_run_json(run_dir, relpath.as_posix(), MAX_SUMMARY_BYTES)
    except RecordError:
        return None
    if not isinstance(summary, dict):
        return None
    fields_ok = (isinstance(summary.get("name"), str) and isinstance(summary.get("k"), int)
                 and isinstance(summary.get("n"), int) and isinstance(summary.get("loglik"), str)
                 and isinstance(summary.get("index"), str)
                 and isinstance(summary.get("epoch"), int | float))
    return summary if fields_ok else None


RunScores = dict[str, dict[str, list[Score]]]  # point -> score name -> the scores on disk


def scores_of(run: Run) -> RunScores:
    """point (FINAL, or the stage index as text) -> score name -> every score on disk, from the
    run's evaluations folder (stage-end scores of a run still training count too)."""
    out: RunScores = {}
    folder = run.run_dir / EVALUATIONS_DIR
    places = [(FINAL, folder)] + [
        (p.name.removeprefix("stage-"), p) for p in sorted(folder.glob("stage-*"))
        if p.name.removeprefix("stage-").isdigit() and p.is_dir() and not p.is_symlink()]
    for point, place in places:
        if point == FINAL and run.status != "complete":
            continue  # a final score of a run still training is of a model that moved on
        for path in sorted(place.glob("*.json")):
            summary = readable_summary(run.run_dir, path.relative_to(run.run_dir))
            if summary is not None and (summary["name"] in (*TESTS, "train")
                                        or summary["name"].startswith(RESAMPLED)):
                # every resampled:R is "the mean over fresh draws"; the largest R is kept
                name = RESAMPLED if summary["name"].startswith(RESAMPLED) else summary["name"]
                out.setdefault(point, {}).setdefault(name, []).append(
                    Score(summary, run.run_dir, place.relative_to(run.run_dir)))
    return out


def cell_key(run: Run) -> CellKey:
    c = run.config
    return CellKey(run.fidelity, str(c.get("schedule")),
                   (c.get("stages"), c.get("epochs"), c.get("steps")), str(run.model),
                   int(run.k or 0), int(run.layers or 0))


def causes_runs(runs: Sequence[Run]) -> dict[CellKey, dict[int, dict[str, Run]]]:
    """Runs of the three conditions (complete or still training): cell -> seed -> condition."""
    cells: dict[CellKey, dict[int, dict[str, Run]]] = {}
    for run in runs:
        if run.data in CONDITIONS and run.is_plain and run.status in ("complete", "running") \
                and run.init_from is None and run.seed is not None:
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


def common_k(found: dict[tuple[str, str], list[Score]]) -> int | None:
    """The largest k every found test and train score was computed with (scores pair only at
    one k; the optional mean over fresh draws joins when it has that k too)."""
    ks = [{s.k for s in scores} for key, scores in found.items() if key[1] != RESAMPLED]
    shared = set.intersection(*ks) if ks else set()
    return max(shared) if shared else None


def seed_scores(by_condition: dict[str, RunScores], point: str
                ) -> tuple[dict[tuple[str, str], np.ndarray], float | None, int | None]:
    """(condition, score name) -> per-image values of one seed at one point, all at one k and,
    for the test binarizations, on the same images; with the point's epoch and that k."""
    found = {(condition, name): scores for condition, run_scores in by_condition.items()
             for name, scores in run_scores.get(point, {}).items()}
    k = common_k(found)
    if k is None:
        return {}, None, None
    values, epoch = {}, None
    for key, scores in found.items():
        if not any(s.k == k for s in scores):
            continue
        score = max((s for s in scores if s.k == k),
                    key=lambda s: (s.n, int(s.summary.get("draws", 1))))
        array = score.values()
        if array is not None:
            values[key] = array
            epoch = float(score.summary["epoch"])
    tests = [a for key, a in values.items() if key[1] != "train"]
    if tests and any(not np.array_equal(tests[0][0], a[0]) for a in tests):
        return {}, None, None  # not the same images: nothing pairs
    return {key: a[1] for key, a in values.items()}, epoch, k


def point_result(seeds: dict[int, dict[str, RunScores]], point: str) -> PointResult | None:
    per_effect: dict[str, list[PairedDifference]] = {}
    per_nll: dict[tuple[str, str], list[PairedDifference]] = {}
    epochs, k, n = None, None, None
    for seed in sorted(seeds):
        scores, epoch, seed_k = seed_scores(seeds[seed], point)
        if not scores:
            continue
        epochs, k = epoch if epoch is not None else epochs, seed_k
        tests = {key: v for key, v in scores.items() if key[1] != "train"}
        n = next((v.size for v in tests.values()), n)
        for name, diff in decompose(tests).items():
            per_effect.setdefault(name, []).append(diff)
        for key, values in scores.items():
            per_nll.setdefault(key, []).append(nll_estimate(values))
    if not per_nll:
        return None
    return PointResult(point, epochs, {name: over_seeds(d) for name, d in per_effect.items()},
                       {key: over_seeds(d) for key, d in per_nll.items()}, k, n)


def nll_estimate(ll: np.ndarray) -> PairedDifference:
    """A mean NLL with its standard error (a difference from zero, so the same type)."""
    nll = -np.asarray(ll, dtype=np.float64)
    return PairedDifference(float(nll.mean()), standard_error(nll), int(nll.size), nll)


def cell_results(seeds: dict[int, dict[str, Run]]) -> list[PointResult]:
    """Every stage end, then the final model, that has scores (each run's read once)."""
    scored = {seed: {condition: scores_of(run) for condition, run in by_condition.items()}
              for seed, by_condition in seeds.items()}
    points = {p for by_condition in scored.values() for run_scores in by_condition.values()
              for p in run_scores}
    ordered = sorted((p for p in points if p != FINAL), key=int) + \
        ([FINAL] if FINAL in points else [])
    return [r for p in ordered if (r := point_result(scored, p)) is not None]


def summary_cell(s: SeedSummary | None) -> Cell:
    if s is None:
        return Cell(value="–")
    spread = f"{s.se:.2f}"
    notes = (f"seeds: sd {s.sd:.2f}, s.e. {s.seed_se:.2f}" if s.sd is not None else "one seed",
             f"images: s.e. {s.image_se:.2f}", f"{s.seeds} seed(s)")
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
            "resampling (dynamic test) is the resampling effect measured on the seed-123 draw "
            "instead; the last two, where the 59.6k models were also scored on the mean over "
            "fresh draws of the same images (--test resampled:R), say which single draw is the "
            "unusual one. "
            "Values: mean over seeds ± its standard error, which combines the seeds' spread "
            "(training noise) and the images' (which test images, and which draw of each, "
            "were scored: the same for every seed, so more seeds do not shrink it); the notes "
            "give each part. The published column is the paper's "
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


def final_point(results: list[PointResult]) -> PointResult | None:
    return next((r for r in results if r.point == FINAL), None)


def effect_text(s: SeedSummary | None) -> str:
    """An effect as the Markdown tables quote it: signed mean ± its standard error."""
    return "–" if s is None else f"{s.mean:+.2f} ± {s.se:.2f}"


def nll_text(s: SeedSummary | None) -> str:
    """An NLL as the Markdown tables quote it: mean ± sd over seeds (one seed: its s.e.)."""
    return "–" if s is None else f"{s.mean:.2f} ± {s.sd if s.sd is not None else s.se:.2f}"


def findings_markdown(cells: dict[CellKey, list[PointResult]]) -> str:
    """The findings as README quotes them: per cell, the final models' effects (mean ± s.e.
    over seeds) and test NLLs (mean ± sd over seeds). Generated from the records, so that the
    README's numbers can be checked against them (tests/test_reference_records.py)."""
    lines = ["| cell | epochs | seeds | resampling | more images | test draw | total | "
             "fixed 50k on LM test | dynamic 59.6k on LM test | dynamic 59.6k on seed-123 draw |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, results in cells.items():
        final = final_point(results)
        if final is None:
            continue
        seeds = max((s.seeds for s in final.effects.values()), default=0)
        effects = [effect_text(final.effects.get(name)) for name in (*EFFECTS, TOTAL)]
        nlls = [nll_text(final.nll.get(k)) for k in ((FIXED, "test-lm"), (DYNAMIC, "test-lm"),
                                                     (DYNAMIC, "test-dynamic"))]
        lines.append(f"| {key.model.upper()} k={key.k}, {key.layers} layer{'s' * (key.layers > 1)}"
                     f" | {format_count(final.epochs)} | {seeds} | " + " | ".join(effects + nlls)
                     + " |")
    return "\n".join(lines) + "\n"


def stages_markdown(cells: dict[CellKey, list[PointResult]]) -> str:
    """The effects at every stage end (mean ± s.e. over seeds), as the docs quote them."""
    lines = ["| cell | end of stage | epochs | evaluation | resampling | more images | test draw "
             "| total | resampling (seed-123 draw) | fixed 50k: test − train |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, results in cells.items():
        for r in results:
            if r.point == FINAL:
                continue
            effects = [effect_text(r.effects.get(name))
                       for name in (*EFFECTS, TOTAL, RESAMPLING_ON_DYNAMIC)]
            test, train = r.nll.get((FIXED, "test-lm")), r.nll.get((FIXED, "train"))
            gap = f"{test.mean - train.mean:+.2f}" if test and train else "–"
            lines.append(f"| {key.model.upper()} k={key.k} | {int(r.point) + 1} | "
                         f"{format_count(r.epochs)} | L_{r.k}, {r.n} images | "
                         + " | ".join(effects) + f" | {gap} |")
    return "\n".join(lines) + "\n"
