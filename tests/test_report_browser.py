"""Render the report in headless Chromium: no console messages, tables in the DOM, a screenshot.

Skipped where /usr/bin/chromium is missing (Debian package `chromium`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from report_fixtures import SPECS, build_hostile_tree, build_results_tree

from benchmark.report.build import build_report

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOT_COPY = Path("/tmp/report_screenshot.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on a local file, isolated from the network and any profile."""
    profile.mkdir(parents=True, exist_ok=True)
    command = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)


def console_messages(stderr: str) -> list[str]:
    """Page console output as Chromium logs it ("...:CONSOLE:<line>] message, source: ...").

    The report has no script, so any console message at all (an uncaught error, a blocked
    resource) means something on the page is wrong.
    """
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    index = build_report(build_results_tree(root), root / "out")
    dom = chromium(index, root / "profile-dom", "--dump-dom")
    return root, index, dom


def test_console_check_catches_a_script_error(tmp_path):
    # Guards the guard: a page with a broken script must be reported by console_messages.
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><p>x</p><script>undefinedFunction();</script>")
    done = chromium(page, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught" in m for m in console_messages(done.stderr)), done.stderr[-2000:]


def test_report_renders_without_console_messages(rendered):
    _, _, dom = rendered
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert console_messages(dom.stderr) == []


def test_tables_and_figures_are_in_the_dom(rendered):
    _, _, dom = rendered
    html = dom.stdout
    for table in ("code-table1", "code-table3", "code-table2", "code-binarization",
                  "code-train_test_gap", "paper-table1", "runs", "provenance", "datasets"):
        assert f'data-table="{table}"' in html, table
    assert html.count("<table") >= 12
    assert html.count('src="data:image/png;base64,') >= 4
    assert "82.90" in html and "not run" in html and "3,280" in html


def test_screenshot(rendered):
    root, index, _ = rendered
    shot = root / "report.png"
    done = chromium(index, root / "profile-shot", "--hide-scrollbars",
                    "--window-size=1400,3000", f"--screenshot={shot}")
    assert done.returncode == 0, done.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 50_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1400, 3000)
    shutil.copyfile(shot, SCREENSHOT_COPY)  # for a person to look at


def test_markup_in_every_string_of_a_record_never_runs(tmp_path):
    """Records whose every string is a <script> or an <img onerror> (report_fixtures
    .hostile_record): rendered, the page shows them as text and none of them runs."""
    index = build_report(build_hostile_tree(tmp_path, SPECS[:2]), tmp_path / "out")
    dom = chromium(index, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "document.body.setAttribute" in dom.stdout  # the markup is on the page, as text
    assert not re.search(r"<body[^>]*data-pwned", dom.stdout), "a record's markup ran"
    assert console_messages(dom.stderr) == []
