"""The report stage: measured results beside the published numbers, as HTML and tables.

    python -m benchmark report [--results DIR] [--grid GRID] [--out DIR]

runs.py reads the result records of a results folder (it reads records only, never a trainer's
internals); published.py holds the published numbers with their sources; summary.py and
verdict.py set each measured cell beside its published value; tables.py builds Tables 1-3 and
the binarization comparison, tableio.py writes them as CSV, Markdown and LaTeX; figures.py draws
the figures; provenance.py says what produced the runs; html.py renders the self-contained page
and build.py puts it all together. It is the end of the pipeline: it hands a person
reports/<name>/index.html.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "build_report": "build",
    "report_command": "build",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
