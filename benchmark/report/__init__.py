"""The report: measured results beside the published numbers, as HTML and tables.

    python -m benchmark report [--results DIR] [--out DIR]
"""

from benchmark.report.build import build_report, report_command

__all__ = ["build_report", "report_command"]
