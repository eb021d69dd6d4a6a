"""The report: published data, verdicts, tables, and the HTML built from a fixture results tree."""

from __future__ import annotations

import copy
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import DYN, FAILED_STEP, MISSING_OMNIGLOT, SPECS, Spec, build_results_tree

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.report.build import build_report
from benchmark.report.figures import image_grid, read_curve, samples_png
from benchmark.report.published import (
    PUBLISHED_JSON,
    PublishedDataError,
    load_published,
    parse_published,
)
from benchmark.report.runs import Run, format_count
from benchmark.report.summary import Reference, pick_measured_runs, summarize
from benchmark.report.tableio import Cell, ReportTable, latex_escape, to_markdown
from benchmark.report.verdict import (
    AGREES,
    DIFFERS,
    active_units_verdict,
    nll_tolerance,
    nll_verdict,
)

REFERENCE_MD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "PUBLISHED.md"


# --- published numbers -------------------------------------------------------------------------

def test_published_json_holds_every_cell_of_tables_1_2_3():
    pub = load_published()
    assert len(pub.table1) == 24 and len(pub.table3) == 12 and len(pub.table2) == 2
    best = pub.cell("mnist-dynamic", 2, 50, "iwae")
    assert best.nll == 82.90 and best.active_units == (26, 7)
    assert best.source.paper == "arXiv:1509.00519v4"
    assert best.source.table == 1 and best.source.page == 7
    assert pub.cell("omniglot", 2, 1, "vae").active_units == (28, 4)
    assert pub.cell("omniglot", 2, 1, "iwae").nll == 107.56
    assert pub.cell("omniglot", 2, 50, "iwae").nll == 103.38
    fixed = pub.cell("mnist-fixed", 2, 50, "iwae")
    assert fixed.nll == 85.32 and fixed.active_units == (24, 7) and fixed.source.table == 3
    assert pub.cell("mnist-fixed", 1, 50, "vae").nll == 89.05
    exp1, exp2 = pub.continuation(1), pub.continuation(2)
    assert (exp1.first.model, exp1.second.model, exp1.second.nll) == ("vae", "iwae", 84.88)
    assert exp1.second.active_units == (22,) and exp2.second.nll == 86.02
    assert exp2.first.nll == 84.78 and exp2.source.table == 2


def test_published_gaps_pruning_and_noise():
    pub = load_published()
    assert (pub.gap("mnist-dynamic").low, pub.gap("mnist-dynamic").high) == (0.62, 0.79)
    assert (pub.gap("omniglot").low, pub.gap("omniglot").high) == (2.39, 2.65)
    assert "README" in pub.gap("mnist-fixed").source.paper
    assert pub.pruning_max_change == 0.06
    assert pub.noise.nll_run_to_run_sd == 0.1 and pub.noise.active_units_per_layer == 2


def _reference_rows(section: str) -> list[list[str]]:
    text = REFERENCE_MD.read_text(encoding="utf-8")
    body = text.split(section, 1)[1].split("\n### ", 1)[0]
    rows = []
    for line in body.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and re.fullmatch(r"\d+(\.\d+)?", cells[-2] or "x"):
            rows.append(cells)
    return rows


@pytest.mark.skipif(not REFERENCE_MD.exists(), reason="shared/reference/PUBLISHED.md absent")
def test_published_json_matches_the_reference_document():
    pub = load_published()
    names = {"MNIST": "mnist-dynamic", "OMNIGLOT": "omniglot"}
    table1 = _reference_rows("### 1.1")
    table3 = _reference_rows("### 1.3")
    assert len(table1) == 12 and len(table3) == 6
    for cells in table1:
        _check_row(pub, names[cells[0]], cells[1:])
    for cells in table3:
        _check_row(pub, "mnist-fixed", cells)


def _check_row(pub, data: str, cells: list[str]) -> None:
    layers, k = int(cells[0]), int(cells[1])
    for model, nll, units in (("vae", cells[2], cells[3]), ("iwae", cells[4], cells[5])):
        cell = pub.cell(data, layers, k, model)
        assert cell.nll == float(nll), (data, layers, k, model)
        assert cell.active_units == tuple(int(u) for u in units.split("+"))


def _published_doc() -> dict:
    return json.loads(PUBLISHED_JSON.read_text(encoding="utf-8"))


@pytest.mark.parametrize("corrupt", [
    lambda d: d["table1"]["cells"].pop(),
    lambda d: d["table1"]["cells"][0].update(nll=8.676),
    lambda d: d["table3"]["cells"][7].update(active_units=[16]),
    lambda d: d["table1"]["cells"][3]["source"].update(table=3),
    lambda d: d["table2"]["rows"][0]["second"].update(model="vae"),
    lambda d: d.update(noise={"nll_run_to_run_sd": 5}),
])
def test_parse_published_rejects_broken_data(corrupt):
    doc = copy.deepcopy(_published_doc())
    corrupt(doc)
    with pytest.raises(PublishedDataError):
        parse_published(doc)


# --- verdicts ------------------------------------------------------------------------------------

def test_single_seed_tolerance_combines_run_noise_and_estimator_error():
    tol = nll_tolerance(sd=None, n=1, se=0.03, run_sd=0.1)
    assert tol == pytest.approx(2 * math.sqrt(0.1**2 + 0.1**2 + 0.03**2))
    assert nll_verdict(82.97, 82.90, tol).outcome == AGREES
    assert nll_verdict(85.31, 84.78, tol).outcome == DIFFERS
    assert nll_verdict(82.90 - tol + 1e-9, 82.90, tol).agrees


def test_several_seeds_use_the_standard_error_of_their_mean():
    tol = nll_tolerance(sd=0.2, n=4, se=None, run_sd=0.1)
    assert tol == pytest.approx(2 * math.sqrt(0.1**2 + 0.1**2))


def test_active_units_verdict_per_layer():
    assert active_units_verdict((24, 7), (26, 7), 2).outcome == AGREES
    assert active_units_verdict((23, 7), (26, 7), 2).outcome == DIFFERS
    assert active_units_verdict((26, 4), (26, 7), 2).outcome == DIFFERS
    assert active_units_verdict((26,), (26, 7), 2).outcome == DIFFERS


def _run(tmp_path: Path, name: str, **overrides) -> Run:
    record = {"run_id": name, "status": "complete",
              "config": {"data": "mnist-dynamic", "model": "iwae", "k": 50, "layers": 2,
                         "seed": 0, "fidelity": "code", "schedule": "full", "stages": None,
                         "epochs": None, "steps": None, "eval_k": 5000},
              "progress": {"epochs": 3280, "epochs_total": 3280},
              "metrics": {"test_nll": 82.97, "test_nll_se": 0.03, "active_units": [26, 7],
                          "eval_k": 5000}}
    for key, value in overrides.items():
        section, _, field = key.partition("__")
        if field:
            record[section][field] = value
        else:
            record[section] = value
    return Run(tmp_path / name, record)


def _summary(runs):
    pub = load_published()
    ref = pub.cell("mnist-dynamic", 2, 50, "iwae")
    return summarize(runs, Reference(ref.nll, ref.active_units, ref.source.cite()), pub.noise)


def test_full_protocol_run_gets_a_verdict(tmp_path):
    s = _summary([_run(tmp_path, "a")])
    assert s.nll_verdict().outcome == AGREES and s.units_verdict().outcome == AGREES


def test_cut_runs_get_no_verdict(tmp_path):
    for cut in ({"config__schedule": "quick", "progress__epochs": 40},
                {"config__epochs": 100.0, "progress__epochs": 100},
                {"config__steps": 500, "progress__epochs": 0.17},
                {"progress__epochs": 3000}):
        s = _summary([_run(tmp_path, "cut", **cut)])
        assert s.measurement is not None and not s.measurement.full
        assert s.nll_verdict() is None and s.units_verdict() is None
        assert "cut" in s.no_verdict_reason()


def test_full_run_with_a_smaller_estimator_gets_no_verdict(tmp_path):
    s = _summary([_run(tmp_path, "k100", metrics__eval_k=100)])
    assert s.nll_verdict() is None and "L_100" in s.no_verdict_reason()


def test_full_runs_win_over_cut_runs_and_lengths_are_never_mixed(tmp_path):
    full = _run(tmp_path, "full")
    quick = _run(tmp_path, "quick", config__schedule="quick", progress__epochs=40,
                 metrics__test_nll=88.0)
    smoke = _run(tmp_path, "smoke", config__schedule="smoke", progress__epochs=0.5,
                 metrics__test_nll=150.0)
    assert pick_measured_runs([quick, full, smoke]) == [full]
    assert pick_measured_runs([smoke, quick]) == [quick]
    s = _summary([quick, full])
    assert s.measurement.nll == 82.97 and any("cut: 40 / 3,280" in n for n in s.notes())


def test_two_seeds_give_mean_and_sd(tmp_path):
    a = _run(tmp_path, "s0")
    b = _run(tmp_path, "s1", config__seed=1, metrics__test_nll=83.17,
             metrics__active_units=[25, 7])
    m = _summary([a, b]).measurement
    assert m.nll == pytest.approx(83.07) and m.nll_sd == pytest.approx(math.sqrt(0.02))
    assert m.active_units == (25.5, 7.0)


def test_failed_run_status_names_step_epoch_and_reason(tmp_path):
    run = _run(tmp_path, "f", status="failed", metrics={},
               failure={"step": 48211, "epoch": 16.18, "reason": "non-finite loss"})
    assert run.status_text() == "failed at step 48,211 (epoch 16.18): non-finite loss"
    assert _summary([run]).status_text().startswith("failed at step 48,211")


def test_format_count():
    assert format_count(3280.0) == "3,280" and format_count(12.5) == "12.5"
    assert format_count(0.02) == "0.02" and format_count(None) == "?"


# --- table writers -------------------------------------------------------------------------------

def test_latex_escape_and_markdown_pipes():
    assert latex_escape("a_b & 50% #1") == r"a\_b \& 50\% \#1"
    assert latex_escape("84.81 ± 0.10, Δ −0.5") == r"84.81 $\pm$ 0.10, $\Delta$ $-$0.5"
    assert latex_escape("C:\\x{y}") == r"C:\textbackslash{}x\{y\}"
    table = ReportTable("t", "T", "d", ("a",), ("b",), ((("x|y",), (Cell(value="1|2"),)),))
    assert "x\\|y" in to_markdown(table) and "1\\|2" in to_markdown(table)


# --- the report from the fixture tree -----------------------------------------------------------

@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = build_results_tree(root)
    out = root / "out"
    index = build_report(results, out)
    return index, index.read_text(encoding="utf-8"), out


def _csv(out: Path, relpath: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{relpath}.csv", dtype=str, keep_default_na=False)


def test_report_writes_index_and_every_table_in_three_formats(report):
    index, _, out = report
    assert index == out / "index.html"
    for rel in ("code/table1", "code/table3", "code/table2", "code/binarization",
                "code/train_test_gap", "paper/table1", "paper/table3", "runs", "attention",
                "provenance", "datasets"):
        for suffix in (".csv", ".md", ".tex"):
            assert (out / "tables" / f"{rel}{suffix}").stat().st_size > 0, rel + suffix
    assert not (out / "tables" / "paper" / "table2.csv").exists()  # no paper continuations
    assert not list(out.rglob("*.tmp")), "a temp file of an atomic write was left behind"


def test_html_shows_published_and_measured_values_and_statuses(report):
    _, html, _ = report
    for text in ("82.90", "82.97", "84.88", "84.95", "published 103.38", "26+7",
                 f"failed at step {FAILED_STEP:,} (epoch 16.18)", "unavailable",
                 MISSING_OMNIGLOT.split(" (")[0], "not run", "40 / 3,280 epochs",
                 "running: 121 / 3,280 epochs", "agrees", "differs",
                 "fidelity code", "fidelity paper", "L_5000"):
        assert text in html, text
    assert "No run in this report completed the full protocol" not in html


def test_html_is_self_contained(report):
    _, html, _ = report
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "url(http" not in html and "@import" not in html
    assert html.count('src="data:image/png;base64,') >= 4


def test_table1_cells_verdicts_and_statuses(report):
    _, _, out = report
    t1 = _csv(out, "code/table1")
    row = t1[(t1["Dataset"] == "MNIST (dynamic)") & (t1["Layers"] == "2") & (t1["k"] == "50")]
    row = row.iloc[0]
    assert (row["IWAE NLL"], row["IWAE NLL published"]) == ("82.97", "82.90")
    assert row["IWAE NLL difference"] == "+0.07" and row["IWAE NLL verdict"] == "agrees"
    assert row["VAE NLL verdict"] == "differs" and row["IWAE active units verdict"] == "agrees"
    cut = t1[(t1["Dataset"] == "MNIST (dynamic)") & (t1["Layers"] == "1") & (t1["k"] == "5")]
    assert "40 / 3,280 epochs" in cut.iloc[0]["VAE NLL status"]
    assert cut.iloc[0]["VAE NLL verdict"] == ""
    omni = t1[t1["Dataset"] == "OMNIGLOT"]
    assert all(s.startswith("unavailable: data file missing") for s in omni["IWAE NLL status"])
    notrun = t1[(t1["Dataset"] == "MNIST (dynamic)") & (t1["Layers"] == "2") & (t1["k"] == "1")]
    assert notrun.iloc[0]["IWAE NLL status"] == "not run"
    assert notrun.iloc[0]["IWAE NLL published"] == "85.33"


def test_fidelities_are_never_averaged(report):
    _, _, out = report
    code, paper = _csv(out, "code/table1"), _csv(out, "paper/table1")
    pick = (code["Layers"] == "2") & (code["k"] == "50") & (code["Dataset"] == "MNIST (dynamic)")
    assert code[pick].iloc[0]["IWAE NLL"] == "82.97"
    assert paper[pick].iloc[0]["IWAE NLL"] == "86.04"
    assert paper[pick].iloc[0]["IWAE NLL verdict"] == ""  # a quick run: no verdict


def test_binarization_and_gap_tables(report):
    _, _, out = report
    b = _csv(out, "code/binarization")
    row = b[(b["Model"] == "IWAE") & (b["Layers"] == "1") & (b["k"] == "50")].iloc[0]
    assert row["Fixed − dynamic"] == "+2.34"
    assert row["Fixed − dynamic published"] == "+2.32"  # Table 3 − Table 1: 87.10 − 84.78
    vae = b[(b["Model"] == "VAE") & (b["Layers"] == "1") & (b["k"] == "1")].iloc[0]
    assert vae["Fixed − dynamic"] == "" and "not comparable" in vae["Fixed − dynamic status"]
    gap = _csv(out, "code/train_test_gap")
    assert "0.62 to 0.79" in set(gap["Test − train published"])
    assert "OMNIGLOT" not in set(gap["Dataset"])  # unavailable cells are noted, not tabulated


def test_table2_from_the_continuation_run(report):
    _, _, out = report
    t2 = _csv(out, "code/table2")
    exp1 = t2[t2["Experiment"] == "1"].iloc[0]
    assert (exp1["Second-stage NLL"], exp1["Second-stage NLL published"]) == ("84.95", "84.88")
    assert exp1["First-stage NLL"] == "86.80"  # resolved through config.init_from
    assert t2[t2["Experiment"] == "2"].iloc[0]["Second-stage NLL status"] == "not run"


def _cell_texts(frame: pd.DataFrame) -> set[str]:
    wanted = [c for c in frame.columns if not c.endswith((" status", " notes"))]
    return {v for c in wanted for v in frame[c] if v and v != "–"}


def test_csv_markdown_latex_and_html_hold_the_same_numbers(report):
    _, html, out = report
    for csv_path in sorted((out / "tables").rglob("*.csv")):
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
        md = csv_path.with_suffix(".md").read_text(encoding="utf-8")
        tex = csv_path.with_suffix(".tex").read_text(encoding="utf-8")
        for text in _cell_texts(frame):
            assert text in md, (csv_path.name, text)
            assert latex_escape(text) in tex, (csv_path.name, text)
            escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            escaped = escaped.replace('"', "&quot;").replace("'", "&#x27;")
            assert escaped in html, (csv_path.name, text)


def test_provenance_lists_versions_checksums_and_the_command(report):
    _, html, out = report
    for text in ("2.13.0+cpu", "3f2c1a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39",
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                 "python -m benchmark report --results", "minutes", "schedule", "seed"):
        assert text in html, text
    runs = _csv(out, "runs")
    assert len(runs) == len(SPECS)
    assert {"complete", "running: 121 / 3,280 epochs"} <= set(runs["Status"])
    provenance = dict(_csv(out, "provenance").itertuples(index=False))
    recorded = sum(1 for s in SPECS if s.kind != "unavailable")
    assert provenance["runs: numerics (exact / fast / mixed)"] == f"exact ({recorded} runs)"
    assert provenance["runs: TF32 matmuls"] == f"False ({recorded} runs)"


def test_runs_checked_against_another_catalogue_are_flagged(tmp_path, report):
    _, html, _ = report
    assert "another catalogue" not in html  # every fixture run used the built-in checksums
    results = build_results_tree(tmp_path)
    path = next(results.glob("**/result.json"))
    record = json.loads(path.read_text())
    record["environment"]["dataset_catalogue"] = "/data/mine/catalogue.json"
    path.write_text(json.dumps(record))
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "Some runs read data verified against another catalogue." in html
    assert "/data/mine/catalogue.json" in html


def test_banner_when_no_run_completed_the_full_protocol(tmp_path):
    cut_only = tuple(s for s in SPECS if s.kind in ("quick", "smoke", "running"))
    results = build_results_tree(tmp_path, cut_only)
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "No run in this report completed the full protocol" in html
    assert 'class="badge agrees"' not in html and 'class="badge differs"' not in html


def test_missing_or_empty_results_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="run a sweep first"):
        build_report(tmp_path / "nowhere", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="python -m benchmark sweep"):
        build_report(tmp_path / "empty", tmp_path / "out")


def test_cli_report_command(tmp_path, capsys):
    results = build_results_tree(tmp_path, SPECS[:3])
    assert main(["report", "--results", str(results), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "index.html").exists()
    assert main(["report", "--results", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "run a sweep first" in err[0]


# --- figures -------------------------------------------------------------------------------------

def test_image_grid_transposes_omniglot_back():
    image = np.zeros((1, 784))
    image[0, 5] = 1.0  # row 0, column 5 in C order
    plain = image_grid(image, 1, transpose=False, scale=1)
    turned = image_grid(image, 1, transpose=True, scale=1)
    assert plain[1 + 0, 1 + 5] == 1.0 and turned[1 + 5, 1 + 0] == 1.0


def test_samples_png_and_unreadable_curves(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    np.save(run_dir / "samples.npy", np.random.default_rng(0).random((64, 784), np.float32))
    (run_dir / "metrics.csv").write_text("epoch,step\n1,2\n\x00garbage")
    run = Run(run_dir, {"config": {"data": "omniglot"}})
    png = samples_png(run)
    assert png is not None and png.startswith(b"\x89PNG")
    assert read_curve(run) is None
    buffer = io.BytesIO(png)
    assert buffer.getbuffer().nbytes > 1000


def test_unreadable_record_and_complete_run_without_nll_are_listed(tmp_path):
    results = build_results_tree(tmp_path, SPECS[:2])
    broken = results / "table1" / "half_written"
    broken.mkdir()
    (broken / "result.json").write_text('{"status": "comp')
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "table1/half_written" in html and "unreadable result.json" in html


def test_table2_withholds_verdict_when_the_first_stage_was_cut(tmp_path):
    first = Spec(DYN, "vae", 1, 1, "quick", 88.9, (18,))
    second = Spec(DYN, "iwae", 50, 1, "full", 84.95, (22,), sweep="table2",
                  init_from=first.run_id)
    results = build_results_tree(tmp_path, (first, second))
    build_report(results, tmp_path / "out")
    exp1 = _csv(tmp_path / "out", "code/table2").iloc[0]
    assert exp1["Second-stage NLL"] == "84.95" and exp1["Second-stage NLL verdict"] == ""
    assert "first stage was cut" in exp1["Second-stage NLL status"]
    assert "40 / 3,280" in exp1["First-stage NLL status"]


def test_grid_report_shows_only_that_grids_runs_and_tables(tmp_path):
    results = build_results_tree(tmp_path)
    table1 = build_report(results, tmp_path / "t1", grid="table1").parent
    assert sorted(p.name for p in (table1 / "tables" / "code").glob("*.csv")) == [
        "table1.csv", "train_test_gap.csv"]
    html = (table1 / "index.html").read_text()
    assert "IWAE reproduction report: table1" in html and "--grid table1" in html
    assert "Table 3: fixed MNIST" not in html and "Table 1: dynamic MNIST" in html

    binarization = build_report(results, tmp_path / "bin", grid="binarization").parent
    names = {p.name for p in (binarization / "tables" / "code").glob("*.csv")}
    assert {"table1.csv", "table3.csv", "binarization.csv"} <= names
    assert "table2.csv" not in names
    runs = pd.read_csv(binarization / "tables" / "runs.csv")
    assert runs.to_string().count("omniglot") == 0
    # OMNIGLOT is not part of this grid: its Table 1 holds the dynamic MNIST rows only
    table1_rows = pd.read_csv(binarization / "tables" / "code" / "table1.csv")
    assert set(table1_rows["Dataset"]) == {"MNIST (dynamic)"} and len(table1_rows) == 6
    html = (binarization / "index.html").read_text()
    assert "Table 1: dynamic MNIST (fidelity code; the paper&#x27;s other rows are not" in html

    table2 = build_report(results, tmp_path / "t2", grid="table2").parent
    assert {p.name for p in (table2 / "tables" / "code").glob("*.csv")} == {"table2.csv"}


def test_the_report_of_runs_the_trainer_really_wrote(tmp_path, synthetic_data_dir):
    """Two smoke runs trained on synthetic data, their records written by the trainer itself
    (not by hand), turned into a report: each run's measured NLL and active units appear in
    Table 1 and in the list of runs, in every format, beside the published value."""
    from benchmark.config import RunConfig, run_id
    from benchmark.training.loop import train_run

    results = tmp_path / "results"
    records = {}
    for model in ("vae", "iwae"):
        config = RunConfig(data="mnist-dynamic", model=model, k=5, layers=1, schedule="smoke",
                           steps=3, eval_k=4, eval_n=10)
        name = run_id(config)
        records[model] = train_run(config, results / "table1" / name, synthetic_data_dir,
                                   run_id=name, sweep="table1", show_progress=False)
        assert records[model]["status"] == "complete"
    out = tmp_path / "report"
    html = build_report(results, out, grid="table1").read_text(encoding="utf-8")

    t1 = _csv(out, "code/table1")
    row = t1[(t1["Dataset"] == "MNIST (dynamic)") & (t1["Layers"] == "1") & (t1["k"] == "5")]
    row = row.iloc[0]
    for model, column in (("vae", "VAE"), ("iwae", "IWAE")):
        metrics = records[model]["metrics"]
        assert row[f"{column} NLL"] == f"{metrics['test_nll']:.2f}"
        assert row[f"{column} active units"] == str(metrics["active_units"][0])
        assert row[f"{column} NLL verdict"] == ""  # a smoke run is never judged
        assert f"{metrics['test_nll']:.2f}" in html
    assert (row["VAE NLL published"], row["IWAE NLL published"]) == ("86.47", "85.54")
    runs = _csv(out, "runs").set_index("Run")
    for model in ("vae", "iwae"):
        name = f"table1/{records[model]['run_id']}"
        assert runs.loc[name, "Test NLL"].startswith(f"{records[model]['metrics']['test_nll']:.2f}")
