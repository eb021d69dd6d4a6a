"""Every table of one fidelity, built once from the runs: the paper's Tables 1-3 with the
binarization and train - test comparisons, and which of them a report of one grid shows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmark.report.comparisons import binarization_table, gap_table
from benchmark.report.published import (
    Published,
)
from benchmark.report.runs import Run
from benchmark.report.tableio import ReportTable
from benchmark.report.tables import Grid, build_grid, paper_table, table2


@dataclass(frozen=True)
class FidelityTables:
    fidelity: str
    grid: Grid
    table1: ReportTable
    table1_mnist: ReportTable  # its dynamic MNIST rows: the binarization grid's half of Table 1
    table3: ReportTable
    binarization: ReportTable
    gap: ReportTable
    table2: ReportTable | None

    def all(self) -> list[ReportTable]:
        tables = [self.table1, self.table3, self.binarization, self.gap, self.table2]
        return [t for t in tables if t is not None]

    def for_grid(self, grid: str | None) -> list[ReportTable]:
        """The tables a report of one sweep grid shows (all of them without a grid)."""
        chosen = {
            None: [self.table1, self.table3, self.table2, self.binarization, self.gap],
            "table1": [self.table1, self.gap],
            "binarization": [self.table1_mnist, self.table3, self.binarization, self.gap],
            # its own section (benchmark.report.binarization_causes) comes first
            "binarization-causes": [self.table1_mnist, self.table3, self.binarization, self.gap],
            "table2": [self.table2],
            "estimators": [],  # its own table: benchmark.report.estimators
        }[grid]
        return [t for t in chosen if t is not None]


def build_fidelity_tables(runs: Sequence[Run], published: Published, fidelity: str,
                          results_dir: Path) -> FidelityTables:
    grid = build_grid(runs, published, fidelity)
    return FidelityTables(
        fidelity, grid, paper_table(grid, published, 1),
        paper_table(grid, published, 1, ("mnist-dynamic",)), paper_table(grid, published, 3),
        binarization_table(grid), gap_table(grid, published),
        table2(runs, published, fidelity, results_dir))
