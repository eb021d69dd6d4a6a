"""The report's "How tight is L_5000?" section: AIS beside L_k per run, the BDMC table and figure,
and the labelled AIS note in the Table 1 cells (whose value stays L_5000)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_fixtures import DYN, Spec, build_results_tree

from benchmark.records import load_result, write_result
from benchmark.report.build import build_report
from benchmark.report.tightness import AIS_HINT

SPECS = (
    Spec(DYN, "iwae", 50, 2, "full", 82.97, (26, 7)),
    Spec(DYN, "vae", 1, 1, "quick", 88.93, (18,)),
    Spec(DYN, "iwae", 5, 1, "running"),
)
AIS = {"name": "ais_T10000_C16_L10_prior_n100", "nll": 82.41, "se": 0.9, "n": 100,
       "intermediate": 10000, "chains": 16, "leapfrog": 10, "start": "prior",
       "acceptance": {"mean": 0.66, "min_example": 0.6, "max_example": 0.7},
       "bound_k": 5000, "bound_nll": 82.93, "bound_se": 0.9, "bound_source": "computed",
       "gap": 0.52, "gap_se": 0.04, "below_bound": False, "seconds": 5400.0}
BDMC = {"name": "bdmc_C16_L10_prior_m100", "simulated": 100, "chains": 16, "leapfrog": 10,
        "start": "prior",
        "rows": [{"intermediate": 100, "lower": -90.1, "upper": -80.3, "gap": 9.8, "gap_se": 0.5,
                  "forward_acceptance": 0.9, "reverse_acceptance": 0.8, "seconds": 60.0},
                 {"intermediate": 1000, "lower": -85.2, "upper": -84.0, "gap": 1.2,
                  "gap_se": 0.1, "forward_acceptance": 0.7, "reverse_acceptance": 0.7,
                  "seconds": 600.0}]}


def add_metrics(run_dir, **extra) -> None:
    record = load_result(run_dir)
    record["metrics"].update(extra)
    write_result(run_dir, record)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("tightness")
    results = build_results_tree(root, SPECS)
    full_dir = results / "table1" / SPECS[0].run_id
    short = {**AIS, "name": "ais_T100_C16_L10_prior_n100", "intermediate": 100, "nll": 89.1,
             "gap": -6.13, "below_bound": True}
    add_metrics(full_dir, ais=AIS, bdmc=BDMC,
                ais_evaluations={AIS["name"]: AIS, short["name"]: short})
    cut_dir = results / "table1" / SPECS[1].run_id
    add_metrics(cut_dir, ais={**AIS, "nll": 88.10, "bound_nll": 88.95, "gap": 0.85,
                              "below_bound": True})
    index = build_report(results, root / "out")
    return index.read_text(encoding="utf-8"), root / "out"


def _csv(out, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / f"{name}.csv", dtype=str, keep_default_na=False)


def test_the_section_sets_ais_beside_l5000_for_every_run_that_has_it(report):
    html, out = report
    assert "How tight is L_5000?" in html and AIS_HINT not in html
    table = _csv(out, "ais")
    assert len(table) == 3  # two evaluations of one run, one of another; none of the running
    full = table[table["Run"].str.contains("iwae_k50_L2")]
    assert list(full["T"]) == ["100", "10,000"]  # every evaluation, fewest distributions first
    assert "too few distributions" in full.iloc[0]["Check"]
    full = full.iloc[1]
    assert (full["L_k NLL"], full["AIS NLL"], full["AIS − L_k (nats)"]) == \
        ("82.93", "82.41", "+0.52")
    assert full["AIS − L_k (nats) ±"] == "0.04" and full["Status"] == "complete"
    assert "16 chains" in full["AIS setting"] and full["AIS minutes"] == "90.0"
    cut = table[table["Run"].str.contains("vae_k1_L1")].iloc[0]
    assert cut["Status"].startswith("cut: 40 / 3,280 epochs")
    assert "too few distributions" in cut["Check"]


def test_the_bdmc_table_and_figure(report):
    html, out = report
    bdmc = _csv(out, "bdmc")
    assert list(bdmc["T"]) == ["100", "1,000"] and list(bdmc["Gap"]) == ["9.80", "1.20"]
    assert "BDMC gap against T" in html
    section = html.split('id="tightness"')[1].split("</section>")[0]
    assert 'src="data:image/png;base64,' in section  # the figure is drawn, not the empty note


def test_table1_keeps_l5000_and_labels_the_ais_value(report):
    _, out = report
    t1 = _csv(out, "code/table1")
    row = t1[(t1["Dataset"] == "MNIST (dynamic)") & (t1["Layers"] == "2")
             & (t1["k"] == "50")].iloc[0]
    assert row["IWAE NLL"] == "82.97"  # the paper's estimator stays the cell's value
    assert "AIS NLL 82.41 ± 0.90 on 100 test examples" in row["IWAE NLL notes"]


def test_without_ais_the_section_says_how_to_add_it(tmp_path):
    results = build_results_tree(tmp_path, SPECS[:1])
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    section = html.split('id="tightness"')[1].split("</section>")[0]
    assert "evaluate RUN_DIR --ais" in section
    assert "No run has a BDMC evaluation yet" in section
