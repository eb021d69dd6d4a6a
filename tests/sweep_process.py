"""`python tests/sweep_process.py ARGS...` is `python -m benchmark sweep ARGS...` with the
trainers replaced by the slow stand-ins of sweep_fakes and every data condition present: a real
sweep process (its signal handling, executor, locks and exit status) for tests to signal."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

# This checkout's package and the test helpers, whichever checkout the environment installed.
sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parent)]

import sweep_fakes  # noqa: E402

import benchmark.sweeps.grid_sweep as grid_sweep  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.sweeps.driver import run_sweep  # noqa: E402


def all_present(name: str, data_dir: Path) -> None:
    return None


if __name__ == "__main__":
    # The cost model's timings are faked too: what these tests signal and race is the sweep,
    # not its calibration (tests/test_cost_model.py times real steps).
    grid_sweep.run_sweep = functools.partial(run_sweep, runner=sweep_fakes.slow_train_run,
                                             group_runner=sweep_fakes.slow_train_group,
                                             check_data=all_present,
                                             timer=sweep_fakes.fake_timer)
    sys.exit(main(["sweep", *sys.argv[1:]]))
