"""The Ray executor on a local instance (num_cpus=2) with smoke configs, alone and in groups;
skipped without Ray."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from sweep_fakes import (  # noqa: E402
    calls_of,
    fake_timer,
    fake_train_group,
    fake_train_run,
    status_of,
    tasks_of,
)
from synthetic import write_synthetic_raw  # noqa: E402

from benchmark.records.results import load_result  # noqa: E402
from benchmark.sweeps.calibration import run_real_timer  # noqa: E402
from benchmark.sweeps.driver import run_sweep  # noqa: E402
from benchmark.sweeps.executors import RayExecutor  # noqa: E402
from benchmark.sweeps.grids import SweepOptions, expand_grid  # noqa: E402
from benchmark.sweeps.tasks import run_real_group_trainer, run_real_trainer  # noqa: E402

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    # The workers import the fake runner from tests/ by name, as the driver does.
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield ray
    ray.shutdown()


def smoke_runs(results: Path, **options):
    """The k=5, 1-layer cell: a VAE and an IWAE per seed, all compatible."""
    plan = expand_grid("table1", SweepOptions(schedule="smoke", data=("mnist-dynamic",),
                                              **options), results)
    return [run for run in plan if run.config.k == 5 and run.config.layers == 1]


def sweep_on_ray(plan, runner, group_runner, data_dir: Path, group: bool = True):
    """With the real trainer, the cost model is timed on Ray too."""
    err = io.StringIO()
    timer = fake_timer if runner is fake_train_run else run_real_timer
    report = run_sweep("table1", plan, data_dir=data_dir, runner=runner,
                       group_runner=group_runner, group=group, timer=timer,
                       check_data=lambda name, data_dir: None, stream=err, out=io.StringIO(),
                       executor_factory=lambda n: RayExecutor(None, None, 0.0))
    return report, err.getvalue()


def test_ray_executor_runs_two_smoke_configs_alone(local_ray, tmp_path):
    plan = smoke_runs(tmp_path, steps=4)
    assert len(plan) == 2
    report, log = sweep_on_ray(plan, fake_train_run, None, tmp_path, group=False)
    assert report.exit_code == 0 and len(report.complete) == 2
    assert "ray executor: 2 task(s) at a time" in log
    for run in plan:
        assert calls_of(run.run_dir) == ["fresh"] and tasks_of(run.run_dir) == [
            f"run {run.run_id}"]
        assert status_of(run.run_dir) == "complete"
    # The instance belongs to the caller: the executor must not have shut it down.
    assert ray.is_initialized()


def test_ray_executor_makes_each_group_one_task(local_ray, tmp_path):
    plan = smoke_runs(tmp_path, steps=4, seeds=2)
    report, log = sweep_on_ray(plan, fake_train_run, fake_train_group, tmp_path)
    assert report.exit_code == 0 and len(report.complete) == 4
    # 4 compatible runs, 2 CPUs: two group tasks of 2 runs
    tasks = {task for run in plan for task in tasks_of(run.run_dir)}
    assert len(tasks) == 2 and all(len(task.split()) == 3 for task in tasks)
    assert all(calls_of(run.run_dir) == ["fresh"] for run in plan)


def test_ray_executor_with_the_real_trainer(local_ray, tmp_path):
    data_dir = write_synthetic_raw(tmp_path / "data")
    plan = smoke_runs(tmp_path / "results", steps=6, eval_k=4, eval_n=10, seeds=2)
    report, log = sweep_on_ray(plan, run_real_trainer, run_real_group_trainer, data_dir)
    assert report.exit_code == 0, log
    assert "sweep table1: projected" in log and "step times timed now" in log
    for run in plan:
        record = load_result(run.run_dir)
        assert record["status"] == "complete" and record["run_id"] == run.run_id
        assert record["progress"]["steps"] == 6 and record["metrics"]["test_nll"] > 0
        assert record["environment"]["execution"]["group_size"] == 2
