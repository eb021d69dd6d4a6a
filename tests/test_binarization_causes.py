"""The binarization-causes grid end to end on synthetic files: the three conditions trained with
stage snapshots, scored on both test binarizations at every stage (sweep --tests --stage-k),
recorded, and taken apart in the report."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.report.build import build_report
from benchmark.report.decomposition import paired_difference

CELL_RUNS = ("mnist-fixed", "mnist-dynamic-lm50k", "mnist-dynamic")
SUFFIX = "_vae_k1_L1_s0_paper_quick_stages2_evalk5_evaln20"


@pytest.fixture(scope="module")
def causes_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One seed of VAE k=1 in the three conditions, 2 stages (4 epochs, 20 steps each)."""
    from tests.synthetic import write_synthetic_raw

    root = tmp_path_factory.mktemp("causes")
    data_dir = write_synthetic_raw(root / "data")
    results = root / "results"
    status = main(["sweep", "binarization-causes", "--schedule", "quick", "--stages", "2",
                   "--fidelity", "paper", "--cells", "vae_k1_L1", "--eval-k", "5",
                   "--eval-n", "20", "--tests", "lm,dynamic", "--stage-k", "3",
                   "--workers", "1", "--data-dir", str(data_dir), "--results", str(results)])
    assert status == 0
    return results


def run_dir(results: Path, data: str) -> Path:
    return results / "binarization-causes" / f"{data}{SUFFIX}"


@pytest.mark.slow
def test_every_stage_end_is_kept_and_scored(causes_results: Path) -> None:
    for data in CELL_RUNS:
        folder = run_dir(causes_results, data)
        assert sorted(p.name for p in (folder / "stages").glob("*.pt")) == \
            ["stage-0.pt", "stage-1.pt"]
        record = json.loads((folder / "result.json").read_text())
        tests = record["metrics"]["tests"]
        assert set(tests) == {"test-lm", "test-dynamic", "train"}
        assert tests["test-lm"]["k"] == 5 and tests["test-lm"]["n"] == 20
        assert tests["train"]["n"] == 100  # the synthetic training set: all of it
        assert set(record["metrics"]["stages"]) == {"0", "1"}
        stage = record["metrics"]["stages"]["0"]["test-lm"]
        assert stage["k"] == 3 and stage["epoch"] == pytest.approx(1.0)
        values = np.load(folder / "evaluations" / "stage-0" / stage["loglik"])
        assert -values.mean() == pytest.approx(stage["nll"])


@pytest.mark.slow
def test_the_last_stage_snapshot_is_the_final_model(causes_results: Path) -> None:
    """Scored with the same k on the same images, the final model and the snapshot of the last
    stage give identical per-image values: a snapshot is the model at that step."""
    from benchmark.evaluation import score_binarizations

    folder = run_dir(causes_results, "mnist-fixed")
    data_dir = causes_results.parent / "data"
    final = score_binarizations(folder, ["lm"], k=3, n=20, data_dir=data_dir)
    staged = score_binarizations(folder, ["lm"], k=3, n=20, stage="1", data_dir=data_dir)
    a = np.load(folder / "evaluations" / final[None]["test-lm"]["loglik"])
    b = np.load(folder / "evaluations" / "stage-1" / staged[1]["test-lm"]["loglik"])
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_the_report_takes_the_gap_apart_from_the_records(causes_results: Path,
                                                         tmp_path: Path) -> None:
    index = build_report(causes_results, tmp_path / "report", grid="binarization-causes")
    html = index.read_text()
    assert "Why fixed binarization scores worse" in html
    table = tmp_path / "report" / "tables" / "binarization-causes" / "binarization_causes.csv"
    rows = list(csv.DictReader(table.open()))
    points = [row["Model at"] for row in rows]
    assert points == ["end of stage 1 (1 epochs)", "end of stage 2 (4 epochs)",
                      "final model (4 epochs)"]
    final = rows[-1]
    # The known answer: the resampling effect straight from the per-image files.
    ll = {}
    for data in ("mnist-fixed", "mnist-dynamic-lm50k"):
        summary = json.loads((run_dir(causes_results, data) / "evaluations"
                              / "test-lm_k5_n20.json").read_text())
        ll[data] = np.load(run_dir(causes_results, data) / "evaluations" / summary["loglik"])
    expected = paired_difference(ll["mnist-fixed"], ll["mnist-dynamic-lm50k"]).mean
    assert float(final["resampling"]) == pytest.approx(expected, abs=0.005)
    parts = sum(float(final[name]) for name in ("resampling", "more images", "test draw"))
    assert parts == pytest.approx(float(final["total"]), abs=0.02)  # each rounded to 0.01


@pytest.mark.slow
def test_publish_copies_records_and_scores_but_no_model(causes_results: Path,
                                                        tmp_path: Path) -> None:
    from benchmark.records import publish_records

    sweep = causes_results / "binarization-causes"
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    planted = sweep / f"mnist-fixed{SUFFIX}" / "evaluations" / "planted.json"
    planted.symlink_to(outside)
    try:
        copied = publish_records(sweep, tmp_path / "published")
    finally:
        planted.unlink()
    assert len(copied) == 3
    files = {p.relative_to(tmp_path / "published").as_posix()
             for p in (tmp_path / "published").rglob("*") if p.is_file()}
    assert not any(".pt" in f or "checkpoints" in f or "stages/" in f for f in files)
    assert not any(f.endswith("planted.json") for f in files)
    assert f"mnist-fixed{SUFFIX}/evaluations/stage-1/test-lm_k3_n20.npy" in files
    # the published folder alone gives the same section
    a = build_report(causes_results, tmp_path / "a", grid="binarization-causes")
    b = build_report(tmp_path / "published", tmp_path / "b", grid="binarization-causes")
    table = Path("tables") / "binarization-causes" / "binarization_causes.csv"
    assert (a.parent / table).read_text() == (b.parent / table).read_text()


def test_a_stage_snapshot_that_links_out_of_its_run_folder_is_refused(tmp_path: Path) -> None:
    import shutil

    import torch

    from benchmark.errors import UserError
    from benchmark.records import load_stage_snapshot, save_stage_snapshot

    elsewhere, run = tmp_path / "elsewhere", tmp_path / "run"
    save_stage_snapshot(elsewhere, 0, 5, 1.0, {"w": torch.zeros(2)})
    assert load_stage_snapshot(elsewhere, 0).step == 5
    (run / "stages").mkdir(parents=True)
    shutil.copy(elsewhere / "stages" / "stage-0.sha256.json", run / "stages")
    (run / "stages" / "stage-0.pt").symlink_to(elsewhere / "stages" / "stage-0.pt")
    with pytest.raises(UserError, match="outside the run folder"):
        load_stage_snapshot(run, 0)


@pytest.mark.slow
def test_scores_that_link_out_of_a_run_folder_are_not_read(causes_results: Path,
                                                           tmp_path: Path) -> None:
    """A copied results folder whose per-image file is a link elsewhere: the score is left out
    (the cell then has one condition fewer at that point), never read through the link."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(causes_results, copy, symlinks=True)
    values = run_dir(copy, "mnist-fixed") / "evaluations" / "test-lm_k5_n20.npy"
    secret = tmp_path / "secret.npy"
    np.save(secret, np.full(20, -1.0))
    values.unlink()
    values.symlink_to(secret)
    build_report(copy, tmp_path / "report", grid="binarization-causes")
    table = tmp_path / "report" / "tables" / "binarization-causes" / "binarization_causes.csv"
    final = list(csv.DictReader(table.open()))[-1]
    assert final["resampling"] == "–" and final["total"] == "–"
