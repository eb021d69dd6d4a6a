"""The report as one self-contained HTML page: inline CSS, figures as data URIs, no scripts.

This module only renders; what goes on the page is decided in build.py. Every string that
comes from a result record is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from benchmark.report.figures import data_uri
from benchmark.report.tableio import Cell, ReportTable

STYLE_CSS = Path(__file__).with_name("style.css")
STATUS_CLASSES = (("failed", "st-failed"), ("running", "st-running"),
                  ("unavailable", "st-unavailable"), ("not run", "st-notrun"),
                  ("cut", "st-cut"), ("needs both", "st-notrun"), ("not comparable", "st-cut"))


@dataclass(frozen=True)
class FigureBlock:
    title: str
    png: bytes | None
    caption: str
    empty: str = "Nothing to draw yet: no run of this fidelity has the data for it."


@dataclass(frozen=True)
class GalleryCard:
    title: str
    status: str
    samples: bytes | None
    reconstructions: bytes | None


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    intro: str = ""
    tables: tuple[ReportTable, ...] = ()
    figures: tuple[FigureBlock, ...] = ()
    gallery: tuple[GalleryCard, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Banner:
    kind: str  # warn | info
    title: str
    text: str


@dataclass(frozen=True)
class Page:
    title: str
    subtitle: str
    banners: tuple[Banner, ...]
    stats: tuple[tuple[str, str], ...]
    sections: tuple[Section, ...]
    footer: str
    table_links: dict[str, list[str]] = field(default_factory=dict)  # relpath -> file names


def status_class(status: str) -> str:
    return next((cls for prefix, cls in STATUS_CLASSES if status.startswith(prefix)), "")


def _badge(verdict: str) -> str:
    cls = verdict.split()[0] if verdict else ""
    return f'<span class="badge {escape(cls)}">{escape(verdict)}</span>' if verdict else ""


def render_result_cell(cell: Cell, shared: dict[str, str] | None = None) -> str:
    """A comparison cell: measured value, published value, difference, verdict, status.

    `shared` maps long statuses repeated across the table to a footnote mark, so that (say)
    24 cells of a condition without data do not each repeat the same sentence.
    """
    parts = []
    if cell.value:
        spread = f' <span class="pm">± {escape(cell.spread)}</span>' if cell.spread else ""
        parts.append(f'<div class="measured">{escape(cell.value)}{spread}</div>')
    if cell.published:
        parts.append(f'<div class="published">published {escape(cell.published)}</div>')
    if cell.difference or cell.verdict:
        diff = f"Δ {escape(cell.difference)}" if cell.difference else ""
        tol = f" (tol. {escape(cell.tolerance)})" if cell.tolerance else ""
        parts.append(f'<div class="diff">{diff}{tol}{_badge(cell.verdict)}</div>')
    if cell.status:
        mark = (shared or {}).get(cell.status)
        text = f"{short_status(cell.status)} (note {mark})" if mark else cell.status
        parts.append(f'<div class="status">{escape(text)}</div>')
    parts += [f'<div class="note">{escape(note)}</div>' for note in cell.notes]
    cls = " ".join(c for c in ("value", status_class(cell.status)) if c)
    return f'<td class="{cls}">{"".join(parts)}</td>'


def short_status(status: str) -> str:
    return status.split(":", 1)[0]


def shared_statuses(table: ReportTable, field: str = "status", min_count: int = 3,
                    min_length: int = 50) -> dict[str, str]:
    """Long statuses that repeat in a table -> footnote marks a, b, c..."""
    counts: dict[str, int] = {}
    for _, cells in table.rows:
        for cell in cells:
            text = getattr(cell, field)
            if len(text) >= min_length and status_class(text):
                counts[text] = counts.get(text, 0) + 1
    repeated = [status for status, n in counts.items() if n >= min_count]
    return {status: chr(ord("a") + i) for i, status in enumerate(repeated[:26])}


def render_plain_cell(cell: Cell, shared: dict[str, str] | None = None) -> str:
    mark = (shared or {}).get(cell.value)
    text = escape(f"{short_status(cell.value)} (note {mark})" if mark else cell.value)
    if cell.spread:
        text += f' <span class="pm">± {escape(cell.spread)}</span>'
    if cell.status:
        text += f'<div class="status">{escape(cell.status)}</div>'
    wrap = " wrap" if len(cell.value) > 60 else ""
    cls = f"value{wrap} {status_class(cell.value)}".strip()
    return f'<td class="{cls}">{text}</td>'


def _index_spans(rows: Sequence[tuple[tuple[str, ...], object]], width: int) -> list[list[int]]:
    """rowspan of every index cell (0: covered by the cell above), merging equal prefixes."""
    spans = [[1] * width for _ in rows]
    for col in range(width):
        start = 0
        for i in range(1, len(rows) + 1):
            same = i < len(rows) and rows[i][0][:col + 1] == rows[start][0][:col + 1]
            if not same:
                spans[start][col] = i - start
                for j in range(start + 1, i):
                    spans[j][col] = 0
                start = i
    return spans


def render_table(table: ReportTable, links: Sequence[str] = (),
                 seen_notes: set[str] | None = None) -> str:
    """One table with its title, description, footnotes and links to its files.

    `seen_notes` collects footnotes already printed on the page: a long note shared by
    several tables (the verdict rules) is printed in full once, then referred to.
    """
    comparison = table.is_comparison
    shared = shared_statuses(table, "status" if comparison else "value")
    head = "".join(f"<th>{escape(c)}</th>" for c in (*table.index_columns, *table.value_columns))
    spans = _index_spans(table.rows, len(table.index_columns)) if comparison else None
    body = []
    for r, (index, cells) in enumerate(table.rows):
        tds = []
        for c, text in enumerate(index):
            span = spans[r][c] if spans else 1
            if span:
                rowspan = f' rowspan="{span}"' if span > 1 else ""
                tds.append(f'<td class="index"{rowspan}>{escape(text)}</td>')
        tds += [render_result_cell(cell, shared) if comparison
                else render_plain_cell(cell, shared) for cell in cells]
        body.append(f"<tr>{''.join(tds)}</tr>")
    cls = "results" if comparison else "plain"
    anchor = table.relpath.replace("/", "-")
    parts = [f'<h3 id="{escape(anchor)}">{escape(table.title)}</h3>']
    if table.description:
        parts.append(f"<p>{escape(table.description)}</p>")
    parts.append(f'<div class="table-wrap"><table class="{cls}" data-table="{escape(anchor)}">'
                 f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")
    if not table.rows:
        parts.append('<p class="empty">No rows.</p>')
    footnotes = [f"Note {mark}: {status}" for status, mark in shared.items()]
    footnotes += _fresh_notes(table.footnotes, seen_notes)
    if footnotes:
        notes = "".join(f"<li>{escape(n)}</li>" for n in footnotes)
        parts.append(f'<ul class="footnotes">{notes}</ul>')
    if links:
        files = ", ".join(f'<a href="{escape(link)}">{escape(Path(link).name)}</a>'
                          for link in links)
        parts.append(f'<p class="files">Also as {files}</p>')
    return "\n".join(parts)


def _fresh_notes(notes: Sequence[str], seen: set[str] | None) -> list[str]:
    if seen is None:
        return list(notes)
    fresh = [n for n in notes if n not in seen]
    seen.update(notes)
    if len(fresh) < len(notes):
        fresh.append("Notes under the earlier tables (verdict rules, sources) apply here too.")
    return fresh


def render_figure(block: FigureBlock) -> str:
    title = f"<h3>{escape(block.title)}</h3>"
    if block.png is None:
        return f'{title}<p class="empty">{escape(block.empty)}</p>'
    img = f'<img src="{data_uri(block.png)}" alt="{escape(block.title)}">'
    return f"{title}<figure>{img}<figcaption>{escape(block.caption)}</figcaption></figure>"


def render_card(card: GalleryCard) -> str:
    def image(png: bytes | None, label: str) -> str:
        if png is None:
            return f'<div>{escape(label)}<p class="empty">not saved</p></div>'
        return (f'<div>{escape(label)}<img src="{data_uri(png)}" '
                f'alt="{escape(label)}: {escape(card.title)}"></div>')

    return (f'<div class="card"><h4>{escape(card.title)}</h4>'
            f'<div class="status">{escape(card.status)}</div><div class="pair">'
            f'{image(card.samples, "samples")}'
            f'{image(card.reconstructions, "test inputs / reconstructions")}'
            f"</div></div>")


def render_section(section: Section, links: dict[str, list[str]], seen_notes: set[str]) -> str:
    parts = [f'<section id="{escape(section.anchor)}"><h2>{escape(section.title)}</h2>']
    if section.intro:
        parts.append(f"<p>{escape(section.intro)}</p>")
    parts += [f'<p class="note">{escape(n)}</p>' for n in section.notes]
    parts += [render_table(t, links.get(t.relpath, ()), seen_notes) for t in section.tables]
    parts += [render_figure(f) for f in section.figures]
    if section.gallery:
        cards = "".join(render_card(c) for c in section.gallery)
        parts.append(f'<div class="gallery">{cards}</div>')
    parts.append("</section>")
    return "\n".join(parts)


def render_banner(banner: Banner) -> str:
    return (f'<div class="banner {escape(banner.kind)}" role="note">'
            f"<strong>{escape(banner.title)}</strong>{escape(banner.text)}</div>")


def render_page(page: Page) -> str:
    css = STYLE_CSS.read_text(encoding="utf-8")
    toc = " ".join(f'<a href="#{escape(s.anchor)}">{escape(s.title)}</a>' for s in page.sections)
    stats = "".join(f'<div class="stat"><b>{escape(v)}</b><span>{escape(k)}</span></div>'
                    for k, v in page.stats)
    seen_notes: set[str] = set()
    body = "\n".join(render_section(s, page.table_links, seen_notes) for s in page.sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(page.title)}</title>
<style>
{css}
</style>
</head>
<body>
<main>
<h1>{escape(page.title)}</h1>
<p class="subtitle">{escape(page.subtitle)}</p>
{''.join(render_banner(b) for b in page.banners)}
<div class="stats">{stats}</div>
<nav class="toc">{toc}</nav>
{body}
<footer>{escape(page.footer)}</footer>
</main>
</body>
</html>
"""
