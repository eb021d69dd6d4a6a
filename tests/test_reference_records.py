"""The records the project publishes (results/reference/binarization-causes) load, are complete,
and give exactly the findings README.md quotes."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.report.binarization_causes import (
    FINAL,
    causes_results,
    findings_markdown,
    stages_markdown,
)
from benchmark.report.decomposition import CONDITIONS, TESTS
from benchmark.report.runs import load_runs

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference" / "binarization-causes"
CELLS = ("vae", 1), ("iwae", 5)
SEEDS = 3
STAGES = 4


@pytest.fixture(scope="module")
def runs() -> list:
    return load_runs(REFERENCE)


def test_every_published_run_is_complete_with_its_scores(runs: list) -> None:
    assert len(runs) == len(CELLS) * len(CONDITIONS) * SEEDS
    seen = set()
    for run in runs:
        assert run.status == "complete", run.run_id
        assert run.config["stages"] == STAGES and run.fidelity == "paper"
        seen.add((run.data, run.model, run.k, run.seed))
        tests = run.metrics["tests"]
        # the 59.6k models were also scored on the mean over 4 fresh draws of the test images
        extra = {"test-resampled4"} if run.data == "mnist-dynamic" else set()
        assert set(tests) == {*TESTS, "train", *extra}
        assert set(run.metrics["stages"]) == {str(s) for s in range(STAGES)}
        assert not list(run.run_dir.rglob("*.pt")), "a published record holds no model file"
    assert seen == {(d, m, k, s) for d in CONDITIONS for m, k in CELLS for s in range(SEEDS)}


def test_each_cell_has_every_stage_and_the_final_model(runs: list) -> None:
    results = causes_results(runs)
    assert {(key.model, key.k) for key in results} == set(CELLS)
    for points in results.values():
        assert [p.point for p in points] == [*(str(s) for s in range(STAGES)), FINAL]
        final = points[-1]
        assert final.k == 1000 and final.n == 2000
        assert all(s.seeds == SEEDS for s in final.effects.values())


def test_readme_quotes_the_findings_the_records_give(runs: list) -> None:
    table = findings_markdown(causes_results(runs))
    assert table in (ROOT / "README.md").read_text(), (
        "README's findings table differs from the records; regenerate it with "
        "`make report-reference` and copy reports/reference-binarization-causes/tables/"
        "binarization-causes/findings.md")


def test_the_docs_quote_every_stage_the_records_give(runs: list) -> None:
    table = stages_markdown(causes_results(runs))
    assert table in (ROOT / "docs" / "binarization-findings.md").read_text()
