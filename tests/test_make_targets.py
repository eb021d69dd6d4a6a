"""The make targets' exit status: a target whose selected runs could not even start (every
dataset missing) writes its report and exits non-zero, with one line saying so."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Stands in for `python -m benchmark` in the recipe: fetching fails (no network, as on a machine
# cut off from the dataset servers); every other command is the real one.
NO_FETCH = """import sys
if sys.argv[1] == "fetch":
    sys.exit("fetch: no network here")
from benchmark.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_a_target_whose_runs_cannot_start_reports_and_exits_non_zero(tmp_path):
    wrapper = tmp_path / "no_fetch.py"
    wrapper.write_text(NO_FETCH)
    reports = tmp_path / "reports"
    result = subprocess.run(
        ["make", "-s", "-o", "install", "reproduce-table1", "SCHEDULE=smoke",
         "DATA=mnist-dynamic", f"RESULTS={tmp_path / 'results'}", f"REPORTS={reports}",
         f"PY={sys.executable} {wrapper}"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "IWAE_DATA_DIR": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)})
    assert result.returncode != 0
    assert (reports / "table1" / "index.html").exists()
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("make: the table1 sweep exited with status 1 (its last line "
                                "above says why); the report is in")
    assert "none of the selected runs could start" in result.stderr
