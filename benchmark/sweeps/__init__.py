"""The sweeps stage: a grid of runs trained, resumed and retried until each is complete.

grids.py defines the grids as data (table1, binarization, table2, estimators) and groups compatible
runs; driver.py feeds tasks to an executor and settles what comes back; tasks.py is what a worker
executes; executors.py runs tasks in a local process pool or on Ray, whose workers orphans.py makes
die with their sweep; locks.py keeps two sweeps off one run; run_state.py and availability.py read
the results folder and the data before anything trains; cost_model.py prices the tasks of a sweep on
this machine, calibration.py times them there, projection.py prints what a sweep will cost before it
trains and eta.py its ETA while it runs; progress.py is the display; grid_sweep.py sweeps a grid
from Python (sweep_grid, and score_grid for its test binarizations); test_scoring.py scores
the runs; command.py is `python -m benchmark sweep`, doctor.py `python -m
benchmark doctor` (this machine: checks, timings, projections). It hands the report a results
folder of one directory per run, each with its result record.
"""

from benchmark.exports import lazy_exports

EXPORTS = {  # public name: the module of this package that defines it
    "GRIDS": "grids",
    "PlannedRun": "grids",
    "SweepOptions": "grids",
    "expand_grid": "grids",
    "run_sweep": "driver",
    "sweep_grid": "grid_sweep",
    "sweep_options": "grid_sweep",
    "score_grid": "grid_sweep",
    "SweepReport": "driver",
    "sweep_command": "command",
    "doctor_command": "doctor",
}
__all__ = sorted(EXPORTS)
__getattr__ = lazy_exports(__name__, EXPORTS)
