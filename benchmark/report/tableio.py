"""A report table as one structure, written to CSV, Markdown and LaTeX from the same strings.

The HTML page renders these same Cell strings, so every number on the page and in the files is
formatted once and cannot drift apart.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.records import atomic_write_text

# Cell attribute -> CSV column suffix. The order is the order of the CSV columns.
CELL_FIELDS = (
    ("value", ""),
    ("spread", " ±"),
    ("published", " published"),
    ("difference", " difference"),
    ("tolerance", " tolerance"),
    ("verdict", " verdict"),
    ("status", " status"),
    ("notes", " notes"),
)


@dataclass(frozen=True)
class Cell:
    value: str = ""
    spread: str = ""
    published: str = ""
    difference: str = ""
    tolerance: str = ""
    verdict: str = ""
    status: str = ""
    notes: tuple[str, ...] = ()

    def field_text(self, name: str) -> str:
        value = getattr(self, name)
        return "; ".join(value) if isinstance(value, tuple) else value

    def compact(self) -> str:
        """One line for Markdown and LaTeX: measured ± spread · published · Δ · verdict · status."""
        parts = []
        if self.value:
            parts.append(f"{self.value} ± {self.spread}" if self.spread else self.value)
        if self.published:
            parts.append(f"published {self.published}")
        if self.difference:
            parts.append(f"Δ {self.difference}")
        if self.verdict:
            tol = f" (tol. {self.tolerance})" if self.tolerance else ""
            parts.append(f"{self.verdict}{tol}")
        if self.status and self.status != "complete":
            parts.append(self.status)
        parts.extend(self.notes)
        return " · ".join(parts)


@dataclass(frozen=True)
class ReportTable:
    name: str  # file stem, unique within its folder
    title: str
    description: str
    index_columns: tuple[str, ...]
    value_columns: tuple[str, ...]
    rows: tuple[tuple[tuple[str, ...], tuple[Cell, ...]], ...]
    folder: str = ""  # e.g. the fidelity, so that tables of two fidelities never share a file
    footnotes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.name}" if self.folder else self.name

    @property
    def is_comparison(self) -> bool:
        """Measured beside published: rendered and written with every cell field."""
        return any(c.published or c.verdict for _, cells in self.rows for c in cells)

    def used_fields(self, column: int) -> list[tuple[str, str]]:
        """The CSV columns of one value column.

        Comparison tables always carry every field, so their CSV layout does not depend on which
        runs exist; plain tables (run lists, provenance) keep only fields that hold something.
        """
        if self.is_comparison:
            return list(CELL_FIELDS)
        return [(name, suffix) for name, suffix in CELL_FIELDS
                if name == "value" or any(cells[column].field_text(name)
                                          for _, cells in self.rows)]

    def frame(self) -> pd.DataFrame:
        """One row per table row; each value column spread over its non-empty cell fields."""
        records = []
        for index, cells in self.rows:
            record = dict(zip(self.index_columns, index, strict=True))
            for i, column in enumerate(self.value_columns):
                for name, suffix in self.used_fields(i):
                    record[column + suffix] = cells[i].field_text(name)
            records.append(record)
        return pd.DataFrame.from_records(records, columns=self._frame_columns())

    def _frame_columns(self) -> list[str]:
        columns = list(self.index_columns)
        for i, column in enumerate(self.value_columns):
            columns += [column + suffix for _, suffix in self.used_fields(i)]
        return columns

    def compact_frame(self) -> pd.DataFrame:
        records = [[*index, *(c.compact() for c in cells)] for index, cells in self.rows]
        return pd.DataFrame(records, columns=[*self.index_columns, *self.value_columns])


def to_csv(table: ReportTable) -> str:
    buffer = io.StringIO()
    table.frame().to_csv(buffer, index=False)
    return buffer.getvalue()


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: ReportTable) -> str:
    frame = table.compact_frame()
    header = "| " + " | ".join(_md_escape(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(_md_escape(v) for v in row) + " |"
            for row in frame.itertuples(index=False)]
    lines = [f"### {table.title}", "", table.description, "", header, rule, *body]
    lines += ["", *(f"* {note}" for note in table.footnotes)] if table.footnotes else []
    return "\n".join(lines) + "\n"


# "\\" is handled apart (first, through a placeholder): its replacement contains braces.
LATEX_SPECIALS = (
    ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"), ("_", r"\_"), ("{", r"\{"),
    ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}"),
)
# Applied after escaping, so the math they introduce is not escaped again.
LATEX_SYMBOLS = (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("−", r"$-$"), ("·", r"$\cdot$"),
                 ("–", "--"), ("≥", r"$\geq$"), ("≤", r"$\leq$"))


def latex_escape(text: str) -> str:
    out = str(text).replace("\\", "\x00")
    for old, new in LATEX_SPECIALS:
        out = out.replace(old, new)
    out = out.replace("\x00", r"\textbackslash{}")
    for old, new in LATEX_SYMBOLS:
        out = out.replace(old, new)
    return out


def to_latex(table: ReportTable) -> str:
    """A booktabs tabular; comparison cells are long and wrap in p-columns."""
    frame = table.compact_frame()
    n_index, n_values = len(table.index_columns), len(table.value_columns)
    value_spec = r"p{0.2\linewidth}" if table.is_comparison else "l"
    spec = "l" * n_index + value_spec * n_values
    lines = [f"% {latex_escape(table.title)}", f"% {latex_escape(table.description)}",
             r"% needs \usepackage{booktabs}",
             f"\\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(latex_escape(c) for c in frame.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(v) for v in row) + r" \\"
              for row in frame.itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(table: ReportTable, tables_dir: Path) -> list[Path]:
    """table.csv, table.md and table.tex under tables_dir/<folder>/, each written atomically."""
    base = Path(tables_dir) / table.relpath
    written = []
    for suffix, render in ((".csv", to_csv), (".md", to_markdown), (".tex", to_latex)):
        path = base.with_suffix(suffix)
        atomic_write_text(path, render(table))
        written.append(path)
    return written
