"""`import benchmark`: the Python API (benchmark.api), and the snippets that README.md and
docs/python-api.md show, run as written on synthetic data with the smoke schedule."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from plugin_registry import EXAMPLE, registry_restored

import benchmark
from benchmark.config import run_id
from benchmark.errors import UserError

REPO = Path(__file__).resolve().parents[1]
API_NAMES = {"RunConfig", "Run", "SweepReport", "train", "sweep", "evaluate",
             "score_binarizations", "ais", "bdmc", "load_results", "build_report",
             "load_objectives", "ObjectiveDefinition", "Parameter", "PublishedValue"}


def test_import_benchmark_is_instant_and_lists_the_api():
    code = ("import sys, benchmark; print(sorted(benchmark.__all__)); "
            "print('torch' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.splitlines()
    assert set(eval(out[0])) == API_NAMES | {"__version__"}  # noqa: S307 - our own output
    assert out[1] == "False False"  # nothing heavy until a name is used
    assert API_NAMES <= set(dir(benchmark))
    for name in API_NAMES - {"RunConfig", "SweepReport"}:
        assert getattr(benchmark, name).__doc__, name
    with pytest.raises(AttributeError, match="has no attribute"):
        benchmark.no_such_name  # noqa: B018 - the lookup itself is the test


def test_train_evaluate_load_and_report(synthetic_data_dir, tmp_path):
    config = benchmark.RunConfig(data="mnist-fixed", model="iwae", k=2, layers=1,
                                 schedule="smoke", steps=20, eval_k=20, eval_n=30)
    run = benchmark.train(config, out=tmp_path / "results" / "one", data_dir=synthetic_data_dir,
                          show_progress=False)
    assert run.status == "complete" and run.run_id == run_id(config)
    assert run.dir == tmp_path / "results" / "one"
    assert benchmark.Run.load(run.dir).record == run.record
    summary = benchmark.evaluate(run, k=20, n=30, data_dir=synthetic_data_dir,
                                 show_progress=False)
    assert (summary["split"], summary["k"], summary["n"]) == ("test", 20, 30)
    # the same subset, k and noise as the run's own final evaluation
    assert summary["nll"] == pytest.approx(run.metrics["test_nll"], rel=1e-6)
    saved = json.loads((run.dir / "evaluations" / "test_k20_n30.json").read_text())
    assert saved == summary
    frame = benchmark.load_results(tmp_path / "results")
    assert len(frame) == 1 and frame.loc[0, "test_nll"] == run.metrics["test_nll"]
    assert {"run_id", "status", "data", "model", "k", "layers", "seed", "test_nll",
            "active_units", "progress.steps"} <= set(frame.columns)
    index = benchmark.build_report(tmp_path / "results", out=tmp_path / "report")
    assert index == tmp_path / "report" / "index.html" and index.stat().st_size > 1000


def test_ais_and_bdmc_of_a_run(trained_run, synthetic_data_dir):
    (ais,) = benchmark.ais(trained_run, intermediate=[5], chains=2, leapfrog=2, n=4, k=10,
                           data_dir=synthetic_data_dir, device="cpu")
    assert (ais["intermediate"], ais["chains"], ais["n"], ais["bound_k"]) == (5, 2, 4, 10)
    bdmc = benchmark.bdmc(trained_run, intermediate=[3, 6], simulated=3, chains=2, leapfrog=2,
                          device="cpu")
    assert [row["intermediate"] for row in bdmc["rows"]] == [3, 6]
    metrics = benchmark.Run.load(trained_run).metrics
    assert metrics["ais"]["name"] == ais["name"] and "bdmc" in metrics


def test_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="no readable result.json"):
        benchmark.Run.load(tmp_path)
    with pytest.raises(UserError, match="no result.json"):
        benchmark.evaluate(tmp_path, data_dir=tmp_path)
    with pytest.raises(UserError, match="unknown grid"):
        benchmark.sweep("table9", results=tmp_path / "results", data_dir=tmp_path)


# --- the snippets of README.md and docs/python-api.md ------------------------------------------

def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a Markdown file, in order."""
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(encoding="utf-8"),
                      flags=re.DOTALL | re.MULTILINE)


def run_snippets(blocks: list[str], workdir: Path, data_dir: Path,
                 monkeypatch: pytest.MonkeyPatch) -> dict:
    """Run the blocks one after the other in one namespace, in `workdir`, with $IWAE_DATA_DIR
    naming the synthetic data (the snippets use the default data folder, as a user would)."""
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("IWAE_DATA_DIR", str(data_dir))
    namespace: dict = {"__name__": "__snippets__"}
    for block in blocks:
        exec(compile(block, "<snippet>", "exec"), namespace)  # noqa: S102 - our own docs
    return namespace


def test_the_readme_quickstart_runs_as_written(synthetic_data_dir, tmp_path, monkeypatch):
    blocks = python_blocks(REPO / "README.md")
    assert len(blocks) == 1, "README.md shows one Python quickstart"
    namespace = run_snippets(blocks, tmp_path, synthetic_data_dir, monkeypatch)
    assert namespace["run"].status == "complete"
    assert len(namespace["frame"]) == 1


@pytest.mark.slow
def test_the_python_api_page_runs_as_written(synthetic_data_dir, tmp_path, monkeypatch):
    blocks = python_blocks(REPO / "docs" / "python-api.md")
    assert len(blocks) >= 5
    (tmp_path / "examples").mkdir()  # the page runs from the repository's root, as a user does
    shutil.copy(EXAMPLE, tmp_path / "examples")
    with registry_restored():
        namespace = run_snippets(blocks, tmp_path, synthetic_data_dir, monkeypatch)
    assert namespace["names"] == ("vr",) and namespace["vr_run"].status == "complete"
    assert namespace["report"].ok and namespace["run"].status == "complete"
    assert set(namespace["scores"][None]) == {"test-lm", "test-dynamic", "test-resampled4"}
    assert (tmp_path / "reports" / "table1" / "index.html").exists()
    frame = namespace["frame"]
    assert len(frame) == 2 and frame["tests"].map(lambda t: {"test-lm", "test-dynamic",
                                                               "train"} <= set(t)).all()
