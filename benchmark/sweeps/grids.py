"""What a sweep consists of: the grids, the run ids, and where each run lives on disk.

Grids (paper arXiv 1509.00519v4):
  table1        {mnist-dynamic, omniglot} x {vae, iwae} x k {1, 5, 50} x layers {1, 2}  (Table 1)
  binarization  {mnist-dynamic, mnist-fixed} x the same 12 cells              (Tables 1 and 3)
  binarization-causes  {mnist-fixed, mnist-dynamic-lm50k, mnist-dynamic} x the same cells: what
                the fixed-vs-dynamic gap consists of (resampling, more images, the test draw)
  table2        Section 5.2: the 1-layer mnist-dynamic VAE k=1 continued as IWAE k=50, and the
                IWAE k=50 continued as VAE k=1, each from its table1 run (the base run)
  estimators    the objectives that came after the paper on its protocol (mnist-dynamic, one
                stochastic layer, Burda's schedule and batch): at k {5, 50} the VAE, IWAE,
                IWAE-STL, IWAE-DReG, CIWAE(0.05) and RWS; at 64 samples per example
                MIWAE / PIWAE(M, K) for M x K = 64 with (M, K) in {(4, 16), (8, 8), (16, 4)}
                (Rainforth et al. 2018), beside IWAE k=64 (= MIWAE(1, 64)), VAE k=64
                (= MIWAE(64, 1)) and CIWAE(0.05) k=64. Each objective's definition lists
                its cells (benchmark.builtin_objectives); a loaded plugin's join them.

A run's directory is <results>/<sweep>/<run-id>. Runs that are cells of Table 1 always live in
results/table1, whichever grid asks for them: the table2 base runs, the mnist-dynamic half of
the binarization grid and the VAE / IWAE k {5, 50} runs of the estimators grid, whose
configurations are identical to Table 1's (training them twice would double the most expensive
part of the comparison for nothing).

Grouping (group_runs): runs that benchmark.training.ensemble.group_key calls compatible (same
layers, samples per example, fidelity and device) and that live in the same sweep directory are
trained together as one batched ensemble, in groups sized so that every worker has something to
train.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from benchmark.config import GRID_DATA, GRIDS, RunConfig, run_id
from benchmark.definitions import (
    Params,
    estimators,
    listing_order,
    normalise_params,
    objective_token,
    objectives,
    paper_objectives,
)
from benchmark.errors import UserError
from benchmark.training import split_into_groups

MODEL_CELLS = tuple(itertools.product(paper_objectives(), (1, 5, 50), (1, 2)))  # Table 1


@dataclass(frozen=True)
class ObjectiveCell:
    """One objective of the estimators grid: RunConfig's model, k, estimator and params."""

    model: str
    k: int
    estimator: str | None = None
    params: Params = ()

    @property
    def name(self) -> str:
        """As in a run id: iwae_k5, iwae-dreg_k50, miwae_m8_k8, vr_alpha0.5_k5."""
        return f"{objective_token(self.model, self.estimator, self.params)}_k{self.k}"

    @property
    def order(self) -> tuple:
        """Listed as the report lists objectives (benchmark.definitions.listing_order)."""
        return listing_order(self.model, self.k, self.estimator, self.params)


ESTIMATORS_LAYERS = 1  # DReG as published is for one stochastic layer


def estimator_cells() -> tuple[ObjectiveCell, ...]:
    """The estimators grid: the cells every registered objective and estimator declares (a
    plugin's too, once loaded)."""
    cells = [ObjectiveCell(d.name, k, None, normalise_params(d.name, params))
             for d in objectives() for k, params in d.grid]
    cells += [ObjectiveCell(e.of, k, e.name) for e in estimators() for k in e.grid]
    return tuple(sorted(cells, key=lambda cell: cell.order))


# Section 5.2: (base model, base k) -> (continued as model, k). 1 stochastic layer, MNIST.
CONTINUATIONS = ((("vae", 1), ("iwae", 50)), (("iwae", 50), ("vae", 1)))
CONTINUATION_DATA = "mnist-dynamic"
CONTINUATION_LAYERS = 1
TABLE1_SWEEP = "table1"


@dataclass(frozen=True)
class SweepOptions:
    """What the user chose on the command line, applied to every run of the grid."""

    schedule: str = "full"
    fidelity: str = "code"
    data: tuple[str, ...] | None = None
    seeds: int = 1
    device: str = "auto"
    stages: int | None = None
    epochs: float | None = None
    steps: int | None = None
    eval_k: int | None = None
    eval_n: int | None = None
    # --cells as written in a run id (vae_k1_L1; estimators: iwae-dreg_k5); None: every cell
    cells: tuple[str, ...] | None = None

    def run_config(self, data: str, model: str, k: int, layers: int, seed: int,
                   init_from: str | None = None, estimator: str | None = None,
                   params: Params = ()) -> RunConfig:
        return RunConfig(
            data=data, model=model, k=k, layers=layers, seed=seed, fidelity=self.fidelity,
            schedule=self.schedule, stages=self.stages, epochs=self.epochs, steps=self.steps,
            eval_k=self.eval_k, eval_n=self.eval_n, device=self.device, init_from=init_from,
            estimator=estimator, params=params,
        )


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    sweep: str  # the sweep directory the run lives in (not necessarily the grid asked for)
    config: RunConfig
    run_dir: Path
    depends_on: Path | None = None  # the run_dir that must be complete first (table2 bases)

    @property
    def label(self) -> str:
        return f"{self.sweep}/{self.run_id}"


def run_id_for(config: RunConfig) -> str:
    """A stable, readable id (device excluded): the same as `train` gives a run by default."""
    return run_id(config)


def selected_data(grid: str, requested: Sequence[str] | None) -> tuple[str, ...]:
    available = GRID_DATA[grid]
    if requested is None:
        return available
    outside = [d for d in requested if d not in available]
    if outside:
        raise UserError(f"--data {' '.join(outside)} is not part of the {grid} grid "
                        f"(it has {', '.join(available)})")
    return tuple(d for d in available if d in requested)


def is_table1_cell(config: RunConfig) -> bool:
    return (config.is_plain and config.data in GRID_DATA["table1"] and config.init_from is None
            and (config.model, config.k, config.layers) in MODEL_CELLS)


def home_sweep(grid: str, config: RunConfig) -> str:
    """The sweep directory a cell lives in: Table 1 cells are shared with the table1 sweep."""
    if grid in ("binarization", "estimators") and is_table1_cell(config):
        return TABLE1_SWEEP
    return grid


def planned_run(results_dir: Path, sweep: str, config: RunConfig) -> PlannedRun:
    run_id = run_id_for(config)
    return PlannedRun(run_id, sweep, config, results_dir / sweep / run_id)


def parse_cell(text: str) -> tuple[str, int, int]:
    """'vae_k1_L1' -> ('vae', 1, 1): a cell of Table 1 as it reads in a run id."""
    parts = text.split("_")
    try:
        model, k, layers = parts[0], int(parts[1].removeprefix("k")), \
            int(parts[2].removeprefix("L"))
    except (IndexError, ValueError):
        model, k, layers = "", 0, 0
    if len(parts) != 3 or (model, k, layers) not in MODEL_CELLS:
        cells = ", ".join(f"{m}_k{kk}_L{ll}" for m, kk, ll in MODEL_CELLS)
        raise UserError(f"--cells {text!r} is not a cell of Table 1; choose among {cells}")
    return model, k, layers


def expand_cells(grid: str, options: SweepOptions, results_dir: Path) -> list[PlannedRun]:
    """table1 / binarization / binarization-causes: every data x cell x seed (the cells asked
    for with --cells, else all 12 of Table 1)."""
    runs = []
    cells = ([parse_cell(c) for c in options.cells] if options.cells is not None
             else MODEL_CELLS)
    for data in selected_data(grid, options.data):
        for (model, k, layers), seed in itertools.product(cells, range(options.seeds)):
            config = options.run_config(data, model, k, layers, seed)
            runs.append(planned_run(results_dir, home_sweep(grid, config), config))
    return runs


def chosen_estimator_cells(names: Sequence[str] | None) -> tuple[ObjectiveCell, ...]:
    """The estimators grid's cells named as in a run id (iwae-dreg_k5, miwae_m8_k8), or all."""
    cells = estimator_cells()
    if names is None:
        return cells
    by_name = {cell.name: cell for cell in cells}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise UserError(f"--cells {' '.join(unknown)}: not a cell of the estimators grid; "
                        f"choose among {', '.join(by_name)}")
    return tuple(cell for cell in cells if cell.name in names)


def expand_estimators(options: SweepOptions, results_dir: Path) -> list[PlannedRun]:
    """estimators: every objective cell x seed, one stochastic layer."""
    runs = []
    for data in selected_data("estimators", options.data):
        for cell, seed in itertools.product(chosen_estimator_cells(options.cells),
                                            range(options.seeds)):
            config = options.run_config(data, cell.model, cell.k, ESTIMATORS_LAYERS, seed,
                                        estimator=cell.estimator, params=cell.params)
            runs.append(planned_run(results_dir, home_sweep("estimators", config), config))
    return runs


def expand_continuations(options: SweepOptions, results_dir: Path) -> list[PlannedRun]:
    """table2: each base run (in results/table1) followed by its continuation."""
    selected_data("table2", options.data)
    runs = []
    for seed in range(options.seeds):
        for (base_model, base_k), (model, k) in CONTINUATIONS:
            base_config = options.run_config(CONTINUATION_DATA, base_model, base_k,
                                             CONTINUATION_LAYERS, seed)
            base = planned_run(results_dir, TABLE1_SWEEP, base_config)
            # Absolute, because the trainer may run with another working directory (Ray).
            config = replace(base_config, model=model, k=k, init_from=str(base.run_dir))
            run_id = run_id_for(config)
            runs.append(base)
            runs.append(PlannedRun(run_id, "table2", config, results_dir / "table2" / run_id,
                                   depends_on=base.run_dir))
    return runs


def expand_grid(grid: str, options: SweepOptions, results_dir: Path) -> list[PlannedRun]:
    """Every run the grid needs, base runs before the runs that depend on them."""
    if grid not in GRIDS:
        raise UserError(f"unknown grid {grid!r}; choose one of {', '.join(GRIDS)}")
    results_dir = Path(results_dir).resolve()
    if grid == "table2":
        return expand_continuations(options, results_dir)
    if grid == "estimators":
        return expand_estimators(options, results_dir)
    return expand_cells(grid, options, results_dir)


def max_group_members(n_runs: int, workers: int) -> int:
    """The largest group that still lets `n_runs` ready runs keep `workers` workers busy.

    The rule: ceil(n_runs / workers). One worker trains everything compatible as one group;
    with more workers than compatible sets, sets are split so that no worker idles; a grid is
    never cut finer than that (12 runs on 2 workers: groups of up to 6, not singletons).
    """
    return max(1, math.ceil(n_runs / max(1, workers)))


def even_pieces(indices: list[int], max_members: int) -> list[list[int]]:
    """`indices` cut into as few contiguous pieces of at most max_members as possible, of
    nearly equal size: a group lasts as long as its slowest member, so 4 on a cap of 3 is
    better as 2 + 2 than 3 + 1."""
    n_pieces = math.ceil(len(indices) / max_members)
    size, extra = divmod(len(indices), n_pieces)
    pieces, start = [], 0
    for i in range(n_pieces):
        end = start + size + (1 if i < extra else 0)
        pieces.append(indices[start:end])
        start = end
    return pieces


def group_runs(runs: Sequence[PlannedRun], workers: int,
               apart: Callable[[PlannedRun], Hashable] = lambda run: None
               ) -> list[list[PlannedRun]]:
    """`runs` (all ready to train) partitioned into groups to train together, in plan order.

    Runs of different sweep directories are never grouped: train_group records one sweep name
    for all its members (binarization's mnist-dynamic runs live in table1, mnist-fixed ones in
    binarization). Nor are runs for which `apart` differs (the driver: the thread count a
    partial run was started with, which it keeps)."""
    cap = max_group_members(len(runs), workers)
    groups: list[list[PlannedRun]] = []
    for sweep, kept_apart in dict.fromkeys((run.sweep, apart(run)) for run in runs):
        of_sweep = [run for run in runs if run.sweep == sweep and apart(run) == kept_apart]
        for indices in split_into_groups([run.config for run in of_sweep]):
            groups.extend([of_sweep[i] for i in piece] for piece in even_pieces(indices, cap))
    return groups
