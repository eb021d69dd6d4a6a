"""The records the project publishes (results/reference/binarization-causes) load, are complete,
and give exactly the findings README.md quotes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


# --- the plugin example's first runs (results/reference/objective-plugin) ------------------------

PLUGIN_REFERENCE = ROOT / "results" / "reference" / "objective-plugin"
PLUGIN_LABELS = {"vae": "VAE", "iwae": "IWAE", "vr": "VR(α=0.5)"}


def plugin_table(runs: list) -> str:
    """The table docs/objectives.md quotes: per k and objective, the test NLL over seeds."""
    cells: dict = {}
    for run in runs:
        cells.setdefault((run.k, PLUGIN_LABELS[run.model]), []).append(run)
    lines = ["| k | objective | seeds | test NLL, mean over seeds | sd over seeds | active units, "
             "per seed |", "|---|---|---|---|---|---|"]
    for k in (5, 50):
        for name in PLUGIN_LABELS.values():
            chosen = sorted(cells.get((k, name), []), key=lambda run: run.seed)
            if not chosen:
                continue
            nll = [run.metrics["test_nll"] for run in chosen]
            sd = f"{np.std(nll, ddof=1):.2f}" if len(nll) > 1 else "–"
            units = ", ".join(str(run.metrics["active_units"][0]) for run in chosen)
            lines.append(f"| {k} | {name} | {len(chosen)} | {np.mean(nll):.2f} | {sd} | {units} |")
    return "\n".join(lines)


def test_the_plugin_examples_records_are_complete_and_name_their_plugin() -> None:
    runs = load_runs(PLUGIN_REFERENCE)
    assert len(runs) == 16
    for run in runs:
        assert run.status == "complete" and run.config["stages"] == 3, run.run_id
        assert (run.metrics["eval_k"], run.metrics["eval_n"]) == (1000, 2000)
        assert (run.record.get("plugin") == {"objective": "vr",
                                             "module": "examples/renyi_objective.py"}) == (
            run.model == "vr")
        assert not list(run.run_dir.rglob("*.pt")), "a published record holds no model file"


def test_the_objectives_page_quotes_the_table_the_records_give() -> None:
    assert plugin_table(load_runs(PLUGIN_REFERENCE)) in (
        ROOT / "docs" / "objectives.md").read_text(encoding="utf-8")


def test_the_plugin_examples_report_marks_its_rows(tmp_path: Path) -> None:
    from plugin_registry import EXAMPLE, registry_restored

    from benchmark.plugins import load_plugin
    from benchmark.report import build_report

    with registry_restored():
        load_plugin(str(EXAMPLE))
        build_report(PLUGIN_REFERENCE, tmp_path / "report", None)
    table = (tmp_path / "report" / "tables" / "code" / "estimators.md").read_text()
    assert "| VR(α=0.5) k=50 (plugin: not part of the suite) | 93.30 ± 0.12 ·" in table


def test_the_objectives_page_quotes_the_paired_differences_the_records_give() -> None:
    """VR(0.5) minus IWAE on the same seed and images: the mean over seeds ± its standard error,
    and each seed's difference, as the page writes them (and the README sums them up)."""
    runs = {(run.model, run.k, run.seed): run for run in load_runs(PLUGIN_REFERENCE)}
    page = (ROOT / "docs" / "objectives.md").read_text(encoding="utf-8")

    def scores(run) -> tuple[np.ndarray, np.ndarray]:
        artifacts = run.record["artifacts"]
        return (np.load(run.run_dir / artifacts["test_loglik"]),
                np.load(run.run_dir / artifacts["test_index"]))

    for k in (5, 50):
        per_seed = []
        for seed in range(3):
            (vr, vr_index), (iwae, iwae_index) = (scores(runs[(model, k, seed)])
                                                  for model in ("vr", "iwae"))
            assert np.array_equal(vr_index, iwae_index)  # the same images
            per_seed.append(float(np.mean(iwae - vr)))  # NLL difference, VR minus IWAE
        se = np.std(per_seed, ddof=1) / np.sqrt(len(per_seed))
        quoted = f"{np.mean(per_seed):+.2f} ± {se:.2f}".replace("-", "−")
        seeds = ", ".join(f"{d:+.2f}".replace("-", "−") for d in per_seed)
        assert quoted in page and seeds in page, (quoted, seeds)
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        assert f"{abs(np.mean(per_seed)):.2f} ± {se:.2f}" in readme  # its summary of the page
