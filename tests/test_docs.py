"""The documentation holds together: every relative link and #anchor of the Markdown pages
resolves, and nothing a user reads (help texts, package data, pages, reports, docstrings) points
at files outside the project."""

from __future__ import annotations

import argparse
import ast
import re
import unicodedata
from pathlib import Path

import pytest

from benchmark.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "benchmark"
# The pages whose links are checked: the front door, the docs and the guides beside them.
PAGES = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md",
                REPO / "datasets" / "README.md", REPO / "results" / "README.md",
                REPO / "reports" / "README.md", *(REPO / "docs").glob("*.md")])
# Names of files a user of the package never has (the developers' shared folder).
OUTSIDE = ("../shared", "DESIGN.md", "PUBLISHED.md")
# Other stages' owners still have to reword these (their docstrings name files outside).
PENDING_DOCSTRINGS = ("data", "records")

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.DOTALL | re.MULTILINE)
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)


def prose(text: str) -> str:
    """The Markdown without its fenced code blocks and inline code spans."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: inline markup dropped, lower case, punctuation other than
    '-' and '_' removed, each space a '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    kept = "".join(ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor, numbered as GitHub numbers repeats (-1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(FENCE.sub("", page.read_text(encoding="utf-8"))):
        slug = github_anchor(title)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def broken_links(page: Path, root: Path = REPO) -> list[str]:
    """Why each relative link of `page` does not resolve to a file (and heading) under root."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... (not checked here)
            continue
        path_part, _, anchor = target.partition("#")
        where = (page.parent / path_part).resolve() if path_part else page
        if not where.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (where.suffix != ".md" or anchor not in anchors(where)):
            broken.append(f"{target}: no heading #{anchor} in {where.relative_to(root)}")
        elif root not in where.parents and where != root:
            broken.append(f"{target}: outside the project")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_and_anchor_resolves(page):
    assert page.exists()
    assert not broken_links(page), "\n".join(broken_links(page))


def test_the_link_checker_finds_what_is_broken(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# How tight is L_5000? AIS and BDMC\n## Two\n## Two\n")
    page.write_text("# Top\n[a](other.md#how-tight-is-l_5000-ais-and-bdmc) [b](other.md#two-1)"
                    " [c](#top) [d](https://example.org/x#y) `[e](no.md)`\n```\n[f](no.md)\n```\n"
                    "[g](missing.md) [h](other.md#nowhere) [i](#top-1)\n")
    assert broken_links(page, tmp_path) == [
        "missing.md: no such file", "other.md#nowhere: no heading #nowhere in other.md",
        "#top-1: no heading #top-1 in page.md"]
    page.write_text("[up](../elsewhere.md)\n")
    (tmp_path.parent / "elsewhere.md").write_text("# Elsewhere\n")
    assert broken_links(page, tmp_path) == ["../elsewhere.md: outside the project"]


def test_the_readme_is_a_front_door_not_a_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "## What the suite found" in readme
    diary = ("No GPU has been available", "Against the issue's targets", "measured again on")
    assert not [line for line in diary if line in readme]


# --- nothing a user reads points outside the project --------------------------------------------

def outside_names(text: str) -> list[str]:
    return [name for name in OUTSIDE if name in text]


def help_texts() -> dict[str, str]:
    """`python -m benchmark --help` and every subcommand's `--help`, as argparse formats them."""
    parser = build_parser()
    texts = {"python -m benchmark": parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                texts[name] = sub.format_help()
    return texts


def test_no_help_text_points_outside_the_project():
    texts = help_texts()
    assert {"fetch", "train", "evaluate", "sweep", "report", "oracle", "doctor"} <= set(texts)
    found = {name: outside_names(text) for name, text in texts.items() if outside_names(text)}
    assert not found, found


def test_no_package_data_points_outside_the_project():
    data = sorted([*(PACKAGE / "report").glob("*.json"), *(PACKAGE / "report").glob("*.css")])
    assert data, "the report's package data"
    found = {p.name: outside_names(p.read_text(encoding="utf-8")) for p in data
             if outside_names(p.read_text(encoding="utf-8"))}
    assert not found, found


def test_no_page_or_example_points_outside_the_project():
    files = [*PAGES, REPO / "CITATION.cff", REPO / "pyproject.toml",
             *(REPO / "examples").glob("*.py")]
    found = {str(p.relative_to(REPO)): outside_names(p.read_text(encoding="utf-8"))
             for p in files if outside_names(p.read_text(encoding="utf-8"))}
    assert not found, found


def test_a_report_points_nowhere_outside_the_project(tmp_path):
    from report_fixtures import build_results_tree

    from benchmark.report import build_report

    index = build_report(build_results_tree(tmp_path / "results"), tmp_path / "report")
    written = [index, *sorted(p for p in (index.parent / "tables").rglob("*") if p.is_file())]
    assert len(written) > 3
    found = {p.name: outside_names(p.read_text(encoding="utf-8")) for p in written
             if outside_names(p.read_text(encoding="utf-8"))}
    assert not found, found


def docstrings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of the module's, every class's and every function's docstring."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(
        n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    return [(getattr(n, "lineno", 1), doc) for n in nodes if (doc := ast.get_docstring(n))]


def docstrings_pointing_outside(stages: tuple[str, ...] | None) -> list[str]:
    """Docstrings naming files outside the project, in the given stages (None: everywhere) or
    everywhere but PENDING_DOCSTRINGS."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if "py2" in relative.parts:
            continue
        pending = len(relative.parts) > 1 and relative.parts[0] in PENDING_DOCSTRINGS
        if stages is None or not pending:
            found += [f"{relative}:{line}: {', '.join(outside_names(doc))}"
                      for line, doc in docstrings(path) if outside_names(doc)]
    return found


def test_no_docstring_points_outside_the_project():
    assert not docstrings_pointing_outside(()), "\n".join(docstrings_pointing_outside(()))


def test_no_docstring_of_any_stage_points_outside_the_project():
    assert not docstrings_pointing_outside(None), "\n".join(docstrings_pointing_outside(None))
