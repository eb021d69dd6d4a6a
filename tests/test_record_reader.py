"""Records from elsewhere are validated, not trusted (issue 30, points 2 and 3): a malformed or
hostile result.json, an object array, a link or a recorded path leading out of the run folder is
refused in one line, listed by the report, and never stops the report of the other runs; strings
a record carries reach the HTML escaped."""

from __future__ import annotations

import copy
import json
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import IMG, SCRIPT, SPECS, build_hostile_tree, build_results_tree

from benchmark.config import RunConfig
from benchmark.errors import UserError
from benchmark.records import RecordError, read_array, read_config, read_curves, read_record
from benchmark.report.build import build_report
from benchmark.report.figures import read_curve, samples_png
from benchmark.report.runs import Run, load_runs
from benchmark.training.run_setup import check_run_dir

GOOD_RUNS = SPECS[:2]


class Planted:
    """Unpickling this creates the marker file: any code at all could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def a_record(results: Path) -> dict:
    """A valid record of the fixture tree, to break one field at a time."""
    spec = GOOD_RUNS[0]
    return json.loads((results / spec.sweep / spec.run_id / "result.json").read_text())


def attention(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / "attention.csv", dtype=str, keep_default_na=False)


def report_lines(results: Path, out: Path, run: str) -> list[str]:
    """The report is built, the good runs are in it, and the reasons it lists for `run`."""
    build_report(results, out)
    runs = pd.read_csv(out / "tables" / "runs.csv", dtype=str)
    for spec in GOOD_RUNS:
        assert f"{spec.sweep}/{spec.run_id}" in set(runs["Run"])
    table = attention(out)
    return list(table.loc[table["Run"] == run, "Status"])


def set_path(record: dict, dotted: str, value: object) -> dict:
    record = copy.deepcopy(record)
    *parents, last = dotted.split(".")
    target = record
    for key in parents:
        target = target[key]
    target[last] = value
    return record


BROKEN = [  # (field, value, what the one line says)
    ("metrics.test_nll", "eighty", "metrics.test_nll is the string 'eighty', not a number"),
    ("config.k", 2.5, "config.k is a JSON number, not an integer"),
    ("progress.resumed_from", [1, "x"], "progress.resumed_from['1'] is the string 'x'"),
    ("status", "done", "status is the string 'done', not one of complete"),
    ("environment", [], "environment is a JSON list, not an object"),
    ("surprise", 1, "unknown top-level key 'surprise'"),
    ("reason", "r" * 20_000, "reason is a string of 20,000 characters, more than the 16,384"),
    ("artifacts.samples", "../../secret.npy", "'../../secret.npy' leads outside the run folder"),
    ("curves", "/etc/passwd", "'/etc/passwd' leads outside the run folder"),
]


@pytest.mark.parametrize("field,value,says", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_malformed_record_is_one_line_and_the_report_builds(tmp_path, field, value, says):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    bad = results / "table1" / "bad"
    bad.mkdir()
    (bad / "result.json").write_text(json.dumps(set_path(a_record(results), field, value)))
    with pytest.raises(RecordError) as refused:
        read_record(bad)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    (line,) = report_lines(results, tmp_path / "out", "table1/bad")
    assert line.startswith("unreadable result.json: ") and says in line


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_number_is_refused(tmp_path, number):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    bad = results / "table1" / "nan"
    bad.mkdir()
    text = json.dumps(set_path(a_record(results), "metrics.test_nll", 1.0))
    (bad / "result.json").write_text(text.replace('"test_nll": 1.0', f'"test_nll": {number}'))
    (line,) = report_lines(results, tmp_path / "out", "table1/nan")
    assert "metrics.test_nll is" in line and "where a record's numbers are finite" in line


def test_a_100_mb_record_is_refused_unread(tmp_path):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    bad = results / "table1" / "huge"
    bad.mkdir()
    record = set_path(a_record(results), "reason", "x" * 100_000_000)
    (bad / "result.json").write_text(json.dumps(record))
    try:
        (line,) = report_lines(results, tmp_path / "out", "table1/huge")
        assert line == ("unreadable result.json: 100.0 MB, more than the 4.2 MB such a file "
                        "may hold; not read")
    finally:
        (bad / "result.json").unlink()  # 100 MB is not kept in pytest's basetemp


def test_a_planted_object_array_is_refused_and_never_runs(tmp_path):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    spec = GOOD_RUNS[0]
    run_dir = results / spec.sweep / spec.run_id
    marker = tmp_path / "marker"
    np.save(run_dir / "samples.npy", np.array([Planted(marker)], dtype=object),
            allow_pickle=True)
    with pytest.raises(RecordError, match="samples.npy: an array of Python objects"):
        read_array(run_dir, "samples.npy")
    assert samples_png(Run(run_dir, a_record(results))) is None
    lines = report_lines(results, tmp_path / "out", f"{spec.sweep}/{spec.run_id}")
    assert lines == ["refused samples.npy: an array of Python objects (a pickle), which is "
                     "never loaded"]
    assert not marker.exists()


def test_links_leading_out_of_a_run_folder_are_never_followed(tmp_path):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    spec = GOOD_RUNS[0]
    run_dir = results / spec.sweep / spec.run_id
    secret = tmp_path / "secret"
    secret.mkdir()
    np.save(secret / "private.npy", np.ones((64, 784), np.float32))
    (secret / "private.csv").write_text("epoch,step,train_bound_nll\n1,1,90\n")
    for name, target in (("samples.npy", "private.npy"), ("metrics.csv", "private.csv")):
        (run_dir / name).unlink()
        (run_dir / name).symlink_to(secret / target)
    with pytest.raises(RecordError, match="samples.npy: a link leading outside the run folder"):
        read_array(run_dir, "samples.npy")
    with pytest.raises(RecordError, match="metrics.csv: a link leading outside"):
        read_curves(run_dir)
    run = Run(run_dir, a_record(results))
    assert samples_png(run) is None and read_curve(run) is None
    lines = report_lines(results, tmp_path / "out", f"{spec.sweep}/{spec.run_id}")
    assert sorted(lines) == [
        f"refused a link leading outside the run folder, never followed: metrics.csv -> "
        f"{secret / 'private.csv'}",
        f"refused a link leading outside the run folder, never followed: samples.npy -> "
        f"{secret / 'private.npy'}",
        f"refused samples.npy: a link leading outside the run folder (to "
        f"{secret / 'private.npy'}); not followed"]


def test_a_linked_record_or_folder_is_not_read(tmp_path):
    results = build_results_tree(tmp_path, GOOD_RUNS)
    elsewhere = build_results_tree(tmp_path / "elsewhere", SPECS[4:5])
    (results / "linked-folder").symlink_to(elsewhere / "table1", target_is_directory=True)
    linked = results / "table1" / "linked-record"
    linked.mkdir()
    spec = SPECS[4]
    (linked / "result.json").symlink_to(elsewhere / "table1" / spec.run_id / "result.json")
    assert {run.run_id for run in load_runs(results)} == {s.run_id for s in GOOD_RUNS}
    (line,) = report_lines(results, tmp_path / "out", "table1/linked-record")
    assert line.startswith("unreadable result.json: a link leading outside the run folder")


def test_a_hostile_config_json_is_refused_in_one_line(tmp_path):
    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=1)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "k": "2"}))
    with pytest.raises(UserError, match=r"not a readable run configuration \(config.json: k is "
                                        r"the string '2', not an integer\)"):
        check_run_dir(run_dir, config)
    (run_dir / "config.json").unlink()
    (tmp_path / "theirs.json").write_text(json.dumps(config.to_dict()))
    (run_dir / "config.json").symlink_to(tmp_path / "theirs.json")
    with pytest.raises(UserError, match="config.json: a link leading outside the run folder"):
        check_run_dir(run_dir, config)
    (run_dir / "config.json").unlink()
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    assert read_config(run_dir) == config.to_dict()


# --- strings a record carries reach the HTML escaped -----------------------------------------

def test_every_string_of_a_record_reaches_the_html_escaped(tmp_path):
    results = build_hostile_tree(tmp_path, GOOD_RUNS)
    assert len(load_runs(results)) == len(GOOD_RUNS) + 2  # hostile, yet valid records
    html = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert escape(SCRIPT) in html and escape(IMG) in html  # they reached the page, escaped
    assert "<script" not in html.lower() and "<img src=x" not in html.lower()
