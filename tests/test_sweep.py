"""The sweep runner: grids, run ids, skip / resume / retry, locks, data checks, executors, CLI."""

from __future__ import annotations

import io
import os
import queue
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sweep_fakes import (
    calls_of,
    fake_timer,
    fake_train_group,
    fake_train_run,
    status_of,
    tasks_of,
    write_complete_record,
)

from benchmark.config import RunConfig, config_differences
from benchmark.errors import UserError
from benchmark.records.results import load_result, write_result
from benchmark.sweeps.availability import record_unselected_unavailable
from benchmark.sweeps.driver import SweepReport, run_sweep
from benchmark.sweeps.executors import (
    InlineExecutor,
    LocalExecutor,
    check_gpus_per_run,
    drain_queue,
    plan_local_workers,
)
from benchmark.sweeps.grids import (
    PlannedRun,
    SweepOptions,
    expand_grid,
    group_runs,
    run_id_for,
)
from benchmark.sweeps.locks import LOCK_FILE, LockInfo, RunDirLock, read_lock
from benchmark.sweeps.progress import StepEta, finished_line, format_duration
from benchmark.sweeps.tasks import (
    GroupMember,
    GroupTask,
    RunTask,
    execute_group,
    execute_run,
    run_real_group_trainer,
    run_real_trainer,
)
from benchmark.training.ensemble import group_key

REPO = Path(__file__).resolve().parents[1]
SMOKE = SweepOptions(schedule="smoke", steps=4)


def all_data_present(name: str, data_dir: Path) -> str | None:
    return None


def sweep_inline(grid: str, plan: list[PlannedRun], runner: Callable[..., dict] = fake_train_run,
                 check_data: Callable[[str, Path], str | None] = all_data_present,
                 group_runner: Callable[..., list[dict]] = fake_train_group, group: bool = True,
                 ) -> SweepReport:
    return run_sweep(grid, plan, data_dir=Path("unused"), runner=runner,
                     group_runner=group_runner, group=group, check_data=check_data,
                     timer=fake_timer,
                     executor_factory=lambda n: InlineExecutor(), stream=io.StringIO(),
                     out=io.StringIO())


def must_not_run(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("this runner must not be called")


def one_cell(results: Path, grid: str = "table1", data: str = "mnist-dynamic",
             **options: Any) -> list[PlannedRun]:
    plan = expand_grid(grid, SweepOptions(schedule="smoke", steps=4, data=(data,), **options),
                       results)
    return [run for run in plan if run.config.model == "iwae" and run.config.k == 5
            and run.config.layers == 1]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- grids and run ids -------------------------------------------------------------------------

def test_grid_sizes(tmp_path):
    assert len(expand_grid("table1", SweepOptions(), tmp_path)) == 24
    assert len(expand_grid("binarization", SweepOptions(), tmp_path)) == 24
    assert len(expand_grid("table2", SweepOptions(), tmp_path)) == 4  # 2 bases + 2 continuations
    assert len(expand_grid("table1", SweepOptions(seeds=3), tmp_path)) == 72
    assert len(expand_grid("table2", SweepOptions(seeds=3), tmp_path)) == 12
    assert len(expand_grid("table1", SweepOptions(data=("omniglot",)), tmp_path)) == 12


def test_grid_cells_and_seeds(tmp_path):
    plan = expand_grid("table1", SweepOptions(seeds=3), tmp_path)
    cells = {(r.config.data, r.config.model, r.config.k, r.config.layers) for r in plan}
    assert len(cells) == 24
    assert {r.config.seed for r in plan} == {0, 1, 2}
    assert {r.config.k for r in plan} == {1, 5, 50}
    assert len({r.run_dir for r in plan}) == 72


def test_data_outside_the_grid_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="mnist-fixed is not part of the table1 grid"):
        expand_grid("table1", SweepOptions(data=("mnist-fixed",)), tmp_path)
    with pytest.raises(UserError, match="omniglot"):
        expand_grid("table2", SweepOptions(data=("omniglot",)), tmp_path)


def test_options_pass_through_into_every_config(tmp_path):
    options = SweepOptions(schedule="quick", fidelity="paper", device="cpu", stages=2,
                           eval_k=10, eval_n=20)
    for run in expand_grid("binarization", options, tmp_path):
        c = run.config
        assert (c.schedule, c.fidelity, c.device, c.stages, c.eval_k, c.eval_n) == (
            "quick", "paper", "cpu", 2, 10, 20)


def test_binarization_shares_the_dynamic_half_with_table1(tmp_path):
    plan = expand_grid("binarization", SweepOptions(), tmp_path)
    homes = {(r.config.data, r.sweep) for r in plan}
    assert homes == {("mnist-dynamic", "table1"), ("mnist-fixed", "binarization")}
    table1 = expand_grid("table1", SweepOptions(data=("mnist-dynamic",)), tmp_path)
    assert {r.run_dir for r in table1} <= {r.run_dir for r in plan}


def test_run_ids_are_readable_and_stable():
    config = RunConfig(data="mnist-dynamic", model="iwae", k=50, layers=2)
    assert run_id_for(config) == "mnist-dynamic_iwae_k50_L2_s0_code_full"
    assert run_id_for(RunConfig(data="omniglot", model="vae", k=1, layers=1, seed=2,
                                fidelity="paper", schedule="quick", device="cuda")) == (
        "omniglot_vae_k1_L1_s2_paper_quick")


def test_cut_runs_get_their_own_ids():
    base = RunConfig(data="mnist-dynamic", model="iwae", k=50, layers=2)
    ids = {run_id_for(RunConfig(**{**base.to_dict(), **cut})) for cut in (
        {}, {"steps": 100}, {"stages": 2}, {"epochs": 0.5}, {"eval_k": 100}, {"eval_n": 200})}
    assert len(ids) == 6
    assert run_id_for(RunConfig(**{**base.to_dict(), "steps": 100})).endswith("_steps100")


def test_table2_continues_from_table1_bases(tmp_path):
    plan = expand_grid("table2", SweepOptions(), tmp_path)
    bases = [r for r in plan if r.depends_on is None]
    continuations = [r for r in plan if r.depends_on is not None]
    assert {r.sweep for r in bases} == {"table1"} and {r.sweep for r in continuations} == {"table2"}
    by_id = {r.run_id: r for r in continuations}
    vae_to_iwae = by_id["mnist-dynamic_vae_k1_L1_s0_code_full_to_iwae_k50"]
    assert (vae_to_iwae.config.model, vae_to_iwae.config.k) == ("iwae", 50)
    base_dir = tmp_path.resolve() / "table1" / "mnist-dynamic_vae_k1_L1_s0_code_full"
    assert vae_to_iwae.config.init_from == str(base_dir) == str(vae_to_iwae.depends_on)
    assert "mnist-dynamic_iwae_k50_L1_s0_code_full_to_vae_k1" in by_id
    assert plan.index(bases[0]) < plan.index(continuations[0])


def test_config_differences_ignore_device_and_results_path():
    config = RunConfig(data="mnist-dynamic", model="iwae", k=50, layers=1, init_from="/a/t1/base")
    recorded = {**config.to_dict(), "device": "cuda", "init_from": "/b/t1/base", "eval_k": 5000,
                "batch_size": 20}
    assert config_differences(recorded, config) == []
    assert config_differences({**recorded, "k": 5}, config) == ["k: 5 -> 50"]


# --- skip, resume, retry -----------------------------------------------------------------------

def test_complete_runs_are_skipped_without_calling_the_runner(tmp_path):
    plan = one_cell(tmp_path)
    for run in plan:
        write_complete_record(run.run_dir, run.config, run.run_id, run.sweep)

    report = sweep_inline("table1", plan, runner=must_not_run, group_runner=must_not_run)
    assert report.exit_code == 0 and len(report.complete) == len(plan) == 1


def test_a_record_of_another_config_stops_the_sweep(tmp_path):
    (run,) = one_cell(tmp_path)
    other = RunConfig(**{**run.config.to_dict(), "fidelity": "paper"})
    write_complete_record(run.run_dir, other, run.run_id, run.sweep)
    with pytest.raises(UserError, match="different configuration.*fidelity"):
        sweep_inline("table1", [run])


def test_a_partial_run_is_handed_to_the_runner_again(tmp_path):
    (run,) = one_cell(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "checkpoint").write_text("state")
    report = sweep_inline("table1", [run])
    assert report.exit_code == 0
    assert calls_of(run.run_dir) == ["resume"]
    assert status_of(run.run_dir) == "complete"


def test_a_crash_is_retried_once_and_then_succeeds(tmp_path):
    (run,) = one_cell(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "fail_raise").write_text("1")
    report = sweep_inline("table1", [run])
    assert report.exit_code == 0 and calls_of(run.run_dir) == ["fresh", "resume"]


def test_a_failing_run_is_reported_after_one_retry_and_the_sweep_goes_on(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=4, data=("omniglot",)),
                       tmp_path)[:3]
    crash, nonfinite, fine = plan
    for run, marker in ((crash, "fail_raise"), (nonfinite, "fail_status")):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / marker).write_text("99")
    report = sweep_inline("table1", plan)
    assert report.exit_code == 1
    assert set(report.failed) == {crash.label, nonfinite.label}
    assert report.complete == [fine.label]
    assert len(calls_of(crash.run_dir)) == len(calls_of(nonfinite.run_dir)) == 2
    crashed = load_result(crash.run_dir)
    assert crashed["status"] == "failed" and "simulated crash" in crashed["reason"]
    assert "simulated crash" in (crash.run_dir / "sweep_error.log").read_text()
    assert load_result(nonfinite.run_dir)["failure"]["reason"] == "non-finite loss"
    assert "2 failed" in report.summary_line()


@pytest.mark.parametrize("group", [True, False])
def test_table2_trains_the_missing_base_first(tmp_path, group):
    plan = [r for r in expand_grid("table2", SMOKE, tmp_path) if r.config.seed == 0]
    order: list[str] = []

    def note(config: RunConfig, run_id: str) -> None:
        if config.init_from is not None:
            assert status_of(Path(config.init_from)) == "complete"
        order.append(run_id)

    def recording_group_runner(configs, run_dirs, data_dir, **kwargs):
        for config, run_id in zip(configs, kwargs["run_ids"], strict=True):
            note(config, run_id)
        return fake_train_group(configs, run_dirs, data_dir, **kwargs)

    def recording_runner(config, run_dir, data_dir, **kwargs):
        note(config, kwargs["run_id"])
        return fake_train_run(config, run_dir, data_dir, **kwargs)

    report = sweep_inline("table2", plan, runner=recording_runner,
                          group_runner=recording_group_runner, group=group)
    assert report.exit_code == 0 and sorted(order) == sorted(r.run_id for r in plan)
    for run in plan:
        if run.depends_on is not None:
            assert order.index(run.depends_on.name) < order.index(run.run_id)


def test_table2_continuation_is_not_started_when_its_base_fails(tmp_path):
    plan = [r for r in expand_grid("table2", SMOKE, tmp_path) if r.config.seed == 0]
    vae_base = next(r for r in plan if r.depends_on is None and r.config.model == "vae")
    vae_to_iwae = next(r for r in plan if r.depends_on == vae_base.run_dir)
    vae_base.run_dir.mkdir(parents=True)
    (vae_base.run_dir / "fail_raise").write_text("99")
    report = sweep_inline("table2", plan)
    assert report.exit_code == 1
    assert list(report.failed) == [vae_base.label]
    assert list(report.blocked) == [vae_to_iwae.label] and len(report.complete) == 2
    assert calls_of(vae_to_iwae.run_dir) == []
    assert "not started" in report.summary_line()


# --- locks -------------------------------------------------------------------------------------

def write_lock(run_dir: Path, pid: int, hostname: str | None = None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = LockInfo(pid, hostname or socket.gethostname(), "2020-01-01T00:00:00+00:00", "other")
    (run_dir / LOCK_FILE).write_text(
        f'{{"pid": {info.pid}, "hostname": "{info.hostname}", "started": "{info.started}", '
        f'"token": "{info.token}"}}')


def test_lock_is_exclusive_and_released(tmp_path):
    first, second = RunDirLock(tmp_path / "run"), RunDirLock(tmp_path / "run")
    assert first.acquire()
    info = read_lock(first.path)
    assert info.pid == os.getpid() and info.hostname == socket.gethostname()
    assert not second.acquire() and "pid" in second.describe_holder()
    first.release()
    assert not first.path.exists()
    assert second.acquire()
    second.release()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    write_lock(tmp_path / "run", dead_pid())
    lock = RunDirLock(tmp_path / "run")
    assert lock.acquire()
    assert read_lock(lock.path).pid == os.getpid()
    lock.release()


def test_a_live_lock_and_a_lock_from_another_host_are_respected(tmp_path):
    write_lock(tmp_path / "live", os.getpid())
    write_lock(tmp_path / "remote", dead_pid(), hostname="some-other-host.invalid")
    assert not RunDirLock(tmp_path / "live").acquire()
    assert not RunDirLock(tmp_path / "remote").acquire()
    assert read_lock(tmp_path / "live" / LOCK_FILE).token == "other"


def test_release_leaves_a_lock_that_is_no_longer_ours(tmp_path):
    lock = RunDirLock(tmp_path / "run")
    assert lock.acquire()
    write_lock(tmp_path / "run", os.getpid())  # someone replaced it (e.g. after a takeover)
    lock.release()
    assert (tmp_path / "run" / LOCK_FILE).exists()


def test_the_sweep_skips_a_run_locked_by_a_live_process(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=4, data=("omniglot",)),
                       tmp_path)[:2]
    locked, stale = plan
    write_lock(locked.run_dir, os.getpid())
    write_lock(stale.run_dir, dead_pid())
    report = sweep_inline("table1", plan)
    assert report.exit_code == 1 and list(report.locked) == [locked.label]
    assert calls_of(locked.run_dir) == [] and status_of(stale.run_dir) == "complete"
    assert not (stale.run_dir / LOCK_FILE).exists()
    assert "locked by another sweep" in report.summary_line()


# --- grouping ----------------------------------------------------------------------------------

def recording_group_runner(calls: list[list[RunConfig]]) -> Callable[..., list[dict]]:
    """fake_train_group that also notes the configs of every call (in this process only)."""

    def runner(configs, run_dirs, data_dir, **kwargs):
        calls.append(list(configs))
        return fake_train_group(configs, run_dirs, data_dir, **kwargs)

    return runner


def mnist_dynamic_grid(results: Path, seeds: int = 1) -> list[PlannedRun]:
    return expand_grid("table1", SweepOptions(schedule="smoke", steps=4, data=("mnist-dynamic",),
                                              seeds=seeds), results)


@pytest.mark.parametrize(("seeds", "members"), [(1, 2), (2, 4)])
def test_grouping_by_default_trains_compatible_runs_as_one_task(tmp_path, seeds, members):
    plan = mnist_dynamic_grid(tmp_path, seeds)
    calls: list[list[RunConfig]] = []
    report = sweep_inline("table1", plan, runner=must_not_run,
                          group_runner=recording_group_runner(calls))
    assert report.exit_code == 0 and len(report.complete) == len(plan) == 12 * seeds
    # One worker: every (layers, k) cell is one task holding its VAE and IWAE (and every seed).
    assert sum(len(call) for call in calls) == len(plan) and len(calls) == 6
    for call in calls:
        assert len(call) == members and len({group_key(c) for c in call}) == 1
        assert sorted(c.model for c in call) == sorted(["vae", "iwae"] * seeds)
        assert {c.seed for c in call} == set(range(seeds))
    for run in plan:
        (task,) = tasks_of(run.run_dir)
        assert task.startswith("group ") and run.run_id in task.split()
        assert status_of(run.run_dir) == "complete"


def test_no_group_trains_every_run_as_its_own_task(tmp_path):
    plan = mnist_dynamic_grid(tmp_path)
    report = sweep_inline("table1", plan, group_runner=must_not_run, group=False)
    assert report.exit_code == 0 and len(report.complete) == 12
    assert all(tasks_of(run.run_dir) == [f"run {run.run_id}"] for run in plan)


def test_group_members_that_fail_are_retried_alone_once_and_reported(tmp_path):
    plan = mnist_dynamic_grid(tmp_path)
    cell = {(r.config.model, r.config.k, r.config.layers): r for r in plan}
    nonfinite, its_partner = cell["vae", 5, 1], cell["iwae", 5, 1]
    crash, crash_partner = cell["vae", 50, 2], cell["iwae", 50, 2]
    for run, marker, times in ((nonfinite, "fail_status", "99"), (crash, "fail_raise", "1")):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / marker).write_text(times)
    report = sweep_inline("table1", plan)
    assert report.exit_code == 1 and list(report.failed) == [nonfinite.label]
    assert len(report.complete) == 11
    # A member that failed alone in its group is retried alone; its partner is not retrained.
    assert [t.split()[0] for t in tasks_of(nonfinite.run_dir)] == ["group", "run"]
    assert tasks_of(its_partner.run_dir) == [tasks_of(nonfinite.run_dir)[0]]
    assert load_result(nonfinite.run_dir)["failure"]["reason"] == "non-finite loss"
    # A crashed group does not say which member broke it: every member is retried alone.
    for run in (crash, crash_partner):
        assert tasks_of(run.run_dir)[1:] == [f"run {run.run_id}"]
        assert calls_of(run.run_dir) == ["fresh", "resume"] and status_of(run.run_dir) == (
            "complete")
    assert f"in a group with {crash.run_id}" in (
        crash_partner.run_dir / "sweep_error.log").read_text()


def test_a_live_lock_on_one_member_keeps_only_that_member_out(tmp_path):
    plan = mnist_dynamic_grid(tmp_path)
    locked = next(r for r in plan if (r.config.model, r.config.k, r.config.layers) == (
        "vae", 5, 1))
    partner = next(r for r in plan if (r.config.model, r.config.k, r.config.layers) == (
        "iwae", 5, 1))
    write_lock(locked.run_dir, os.getpid())
    report = sweep_inline("table1", plan)
    assert report.exit_code == 1 and list(report.locked) == [locked.label]
    assert "pid" in report.locked[locked.label] and len(report.complete) == 11
    assert calls_of(locked.run_dir) == [] and status_of(partner.run_dir) == "complete"
    assert tasks_of(partner.run_dir) == [f"group {partner.run_id}"]
    assert read_lock(locked.run_dir / LOCK_FILE).token == "other"


def test_group_size_keeps_every_worker_busy_and_no_more(tmp_path):
    def sizes(plan: list[PlannedRun], workers: int) -> list[int]:
        return [len(group) for group in group_runs(plan, workers)]

    grid = mnist_dynamic_grid(tmp_path)  # 6 (layers, k) cells of 2
    assert sizes(grid, 1) == sizes(grid, 2) == sizes(grid, 6) == [2] * 6
    assert sizes(grid, 12) == [1] * 12  # a worker for every run: no group needed
    seeds = mnist_dynamic_grid(tmp_path, seeds=2)  # 6 cells of 4
    assert sizes(seeds, 1) == sizes(seeds, 6) == [4] * 6
    assert sizes(seeds, 8) == [2] * 12  # 4 on a cap of 3: 2 + 2, not 3 + 1
    for workers in (1, 3, 8):
        for group in group_runs(seeds, workers):
            assert len({group_key(run.config) for run in group}) == 1
    # binarization's mnist-dynamic runs live in table1: never in a group with mnist-fixed ones
    binarization = expand_grid("binarization", SMOKE, tmp_path)
    assert all(len({run.sweep for run in group}) == 1 for group in group_runs(binarization, 1))
    assert sizes(binarization, 1) == [2] * 12


def test_a_run_resumed_in_a_sweep_keeps_its_thread_count_apart(tmp_path):
    """Partial runs started with different thread counts never share a group: a group has one
    thread count, and each run must resume with the one it started with (issue 16 point 3)."""
    plan = [run for run in mnist_dynamic_grid(tmp_path) if run.config.k == 5
            and run.config.layers == 1]  # a VAE and an IWAE: one group when both are fresh
    for run, threads in zip(plan, (1, 2), strict=True):
        write_result(run.run_dir, {"config": run.config.to_dict(), "status": "running",
                                   "environment": {"execution": {"threads": threads}}})
    calls: list[list[RunConfig]] = []
    report = sweep_inline("table1", plan, runner=must_not_run,
                          group_runner=recording_group_runner(calls))
    assert report.exit_code == 0
    assert sorted(len(call) for call in calls) == [1, 1]


# --- odd records and runs another sweep finished -----------------------------------------------

@pytest.mark.parametrize("content", [b"\xff\xfe not UTF-8", b"[1, 2]", b'{"config": [1]}'])
def test_an_unreadable_record_is_trained_over_not_a_crash(tmp_path, content):
    plan = one_cell(tmp_path)
    for run in plan:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "result.json").write_bytes(content)
    report = sweep_inline("table1", plan)
    assert report.exit_code == 0
    assert all(status_of(run.run_dir) == "complete" for run in plan)


def test_a_locked_run_that_the_other_sweep_completed_counts_as_complete(tmp_path):
    """Two sweeps on one folder: a run skipped because the other holds it, and completed by the
    other by the time this one ends, is complete, not a reason to exit 1 (issue 16 point 8)."""
    plan = mnist_dynamic_grid(tmp_path)[:2]
    mine, theirs = plan
    write_lock(theirs.run_dir, os.getpid())  # the other sweep (alive: this very process)

    def train_then_the_other_finishes(config, run_dir, data_dir, **kwargs):
        record = fake_train_run(config, run_dir, data_dir, **kwargs)
        write_complete_record(theirs.run_dir, theirs.config, theirs.run_id, theirs.sweep)
        return record

    report = sweep_inline("table1", plan, runner=train_then_the_other_finishes, group=False)
    assert report.exit_code == 0, report.summary_line()
    assert sorted(report.complete) == sorted([mine.label, theirs.label])
    assert calls_of(theirs.run_dir) == []  # never trained here


def test_a_locked_run_still_training_elsewhere_is_reported_locked(tmp_path):
    plan = mnist_dynamic_grid(tmp_path)[:2]
    write_lock(plan[1].run_dir, os.getpid())
    report = sweep_inline("table1", plan, group=False)
    assert report.exit_code == 1 and list(report.locked) == [plan[1].label]


# --- unavailable data --------------------------------------------------------------------------

def test_an_unavailable_data_condition_is_recorded_and_the_rest_proceeds(tmp_path):
    plan = [r for r in expand_grid("table1", SMOKE, tmp_path) if r.config.k == 5]
    checked: list[str] = []

    def omniglot_missing(name: str, data_dir: Path) -> str | None:
        checked.append(name)
        return "omniglot: chardata.mat is missing; run python -m benchmark fetch omniglot" if (
            name == "omniglot") else None

    report = sweep_inline("table1", plan, check_data=omniglot_missing)
    assert checked == ["mnist-dynamic", "omniglot"]  # once per condition
    assert report.exit_code == 0 and len(report.unavailable) == len(report.complete) == 4
    for run in plan:
        record = load_result(run.run_dir)
        if run.config.data == "omniglot":
            assert record["status"] == "unavailable" and "chardata.mat" in record["reason"]
            assert record["config"]["data"] == "omniglot" and calls_of(run.run_dir) == []
        else:
            assert record["status"] == "complete"


# --- executors and progress --------------------------------------------------------------------

def test_local_worker_plan_never_oversubscribes():
    assert plan_local_workers(None, 24, 16) == (16, 1)
    assert plan_local_workers(None, 2, 16) == (2, 8)
    assert plan_local_workers(3, 24, 16) == (3, 5)
    assert plan_local_workers(None, 24, 1) == (1, 1)
    assert plan_local_workers(None, 24, 16, uses_gpu=True) == (1, 16)
    assert plan_local_workers(4, 24, 16, uses_gpu=True) == (4, 4)
    for workers, n_runs, cores in ((None, 5, 2), (4, 9, 2), (None, 1, 7)):
        w, t = plan_local_workers(workers, n_runs, cores)
        assert w * t <= max(cores, w)


def test_fractional_gpus_per_run():
    check_gpus_per_run(0.25)
    check_gpus_per_run(2)
    with pytest.raises(UserError):
        check_gpus_per_run(1.5)


def test_execute_run_turns_an_exception_into_an_outcome(tmp_path):
    (run,) = one_cell(tmp_path)
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "fail_raise").write_text("1")
    task = RunTask("key", fake_train_run, run.config.to_dict(), str(run.run_dir), "unused",
                   run.run_id, run.sweep, threads=1)
    outcome = execute_run(task)
    assert outcome.records is None and outcome.error == "RuntimeError: simulated crash"
    assert "Traceback" in outcome.details


def test_execute_group_reports_progress_under_each_members_key(tmp_path):
    plan = [run for run in mnist_dynamic_grid(tmp_path) if run.config.k == 5
            and run.config.layers == 1]
    channel: queue.Queue = queue.Queue()
    members = tuple(GroupMember(run.config.to_dict(), str(run.run_dir), run.run_id, f"key-{i}")
                    for i, run in enumerate(plan))
    outcome = execute_group(GroupTask("group-1", fake_train_group, members, "unused", "table1",
                                      threads=1, progress=channel))
    assert outcome.error is None and [r["run_id"] for r in outcome.records] == [
        run.run_id for run in plan]
    assert drain_queue(channel) == [("key-0", 2, 4), ("key-0", 4, 4), ("key-1", 2, 4),
                                    ("key-1", 4, 4)]


def test_step_eta_uses_the_measured_step_rate():
    now = [0.0]
    eta = StepEta(clock=lambda: now[0])
    eta.expect("a", steps_done_before=100)  # resumed: 100 steps were done before
    eta.expect("b")
    eta.start_clock()
    now[0] = 10.0
    eta.update("a", 200, 1000)  # 100 steps in 10 s: 10 steps/s
    assert eta.steps_left() == 800 + 1000  # b assumed as long as a
    assert eta.seconds_left() == pytest.approx(180.0)
    eta.finish("a")
    assert eta.steps_left() == 1000


def test_finished_line_and_durations():
    record = {"metrics": {"test_nll": 84.776, "active_units": [26, 7]}}
    assert finished_line("r", record, 90.0) == "r  test NLL 84.78  active units 26+7  1.5 min"
    assert format_duration(None) == "?" and format_duration(3 * 3600 + 5 * 60) == "3h05m"


@pytest.mark.slow
def test_local_executor_two_workers_on_smoke_configs(tmp_path):
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=4, data=("omniglot",)),
                       tmp_path)[:2]
    err = io.StringIO()
    report = run_sweep("table1", plan, data_dir=tmp_path, runner=fake_train_run,
                       check_data=all_data_present, stream=err, out=io.StringIO(),
                       timer=fake_timer,
                       executor_factory=lambda n: LocalExecutor(workers=2, threads_per_task=1))
    assert report.exit_code == 0 and len(report.complete) == 2
    assert all(status_of(run.run_dir) == "complete" for run in plan)
    assert "2 task(s) at a time" in err.getvalue()
    assert not any((run.run_dir / LOCK_FILE).exists() for run in plan)


@pytest.mark.slow
def test_local_executor_trains_groups_in_spawned_workers(tmp_path):
    plan = [run for run in mnist_dynamic_grid(tmp_path, seeds=2)
            if run.config.k == 5 and run.config.layers == 1]
    err = io.StringIO()
    report = run_sweep("table1", plan, data_dir=tmp_path, runner=must_not_run,
                       group_runner=fake_train_group, check_data=all_data_present, stream=err,
                       out=io.StringIO(), timer=fake_timer,
                       executor_factory=lambda n: LocalExecutor(workers=2, threads_per_task=1))
    assert report.exit_code == 0 and len(report.complete) == 4
    # 4 compatible runs on 2 workers: two groups of 2, one per worker
    tasks = {task for run in plan for task in tasks_of(run.run_dir)}
    assert len(tasks) == 2 and all(len(task.split()) == 3 for task in tasks)
    assert "2 task(s) at a time" in err.getvalue() and "4 run(s) ready: 2 task(s)" in (
        err.getvalue())
    assert not any((run.run_dir / LOCK_FILE).exists() for run in plan)


# --- the command line --------------------------------------------------------------------------

def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmark", "sweep", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_cli_bad_flag_combination_is_one_line(tmp_path):
    result = run_cli("table1", "--gpus-per-run", "0.5", "--results", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --address and --gpus-per-run need --executor ray"]


def test_cli_data_outside_the_grid_is_one_line(tmp_path):
    result = run_cli("table1", "--data", "mnist-fixed", "--results", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "mnist-fixed is not part of the table1 grid" in result.stderr


def test_cli_unknown_grid_exits_2(tmp_path):
    result = run_cli("table9", cwd=tmp_path)
    assert result.returncode == 2 and "invalid choice" in result.stderr


def test_cli_all_data_missing_records_unavailable_and_exits_1(tmp_path):
    result = run_cli("table1", "--schedule", "smoke", "--data", "omniglot", "--results",
                     str(tmp_path / "results"), "--data-dir", str(tmp_path / "empty"),
                     cwd=tmp_path)
    # not one selected run could start: a sweep that produced nothing does not succeed
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "sweep table1: 0 complete, 12 unavailable; none of the selected runs could start (their "
        "data is missing: fetch it, e.g. `python -m benchmark fetch all`, and run again)")
    records = [load_result(p) for p in (tmp_path / "results" / "table1").iterdir()]
    # the 12 selected omniglot runs, and the grid's 12 unselected mnist-dynamic runs, whose data
    # is missing too: recorded so that a table1 report says why they are absent
    assert len(records) == 24 and {r["status"] for r in records} == {"unavailable"}
    assert "not selected, and unavailable: mnist-dynamic" in result.stderr


def test_unselected_conditions_are_recorded_only_when_their_data_is_missing(tmp_path):
    options = SweepOptions(schedule="smoke", data=("mnist-dynamic",))
    plan = expand_grid("table1", options, tmp_path)

    def present(name: str, data_dir: Path) -> str | None:
        return None

    record_unselected_unavailable("table1", options, plan, tmp_path, tmp_path, present)
    assert not (tmp_path / "table1").exists()

    def omniglot_missing(name: str, data_dir: Path) -> str | None:
        assert name == "omniglot"  # the selected condition is not checked here
        return "chardata.mat is missing"

    record_unselected_unavailable("table1", options, plan, tmp_path, tmp_path, omniglot_missing)
    records = [load_result(p) for p in (tmp_path / "table1").iterdir()]
    assert len(records) == 12
    assert {(r["config"]["data"], r["status"]) for r in records} == {("omniglot", "unavailable")}


# --- with the real trainer on synthetic data ---------------------------------------------------

REAL_CUT = ("--schedule", "smoke", "--steps", "6", "--eval-k", "4", "--eval-n", "10")


def real_smoke_runs(results: Path, data: str = "mnist-dynamic") -> list[PlannedRun]:
    plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=6, eval_k=4, eval_n=10,
                                              data=(data,)), results)
    return [run for run in plan if run.config.k == 5 and run.config.layers == 1]


@pytest.mark.slow
def test_local_executor_two_workers_with_the_real_trainer(tmp_path, synthetic_data_dir):
    plan = real_smoke_runs(tmp_path / "results")
    out = io.StringIO()
    report = run_sweep("table1", plan, data_dir=synthetic_data_dir, runner=run_real_trainer,
                       stream=io.StringIO(), out=out,
                       executor_factory=lambda n: LocalExecutor(workers=2, threads_per_task=1))
    assert report.exit_code == 0 and len(report.complete) == 2
    for run in plan:
        record = load_result(run.run_dir)
        assert record["status"] == "complete" and record["sweep"] == "table1"
        assert record["progress"]["steps"] == 6
    assert all("test NLL" in line and "min" in line for line in out.getvalue().splitlines())


@pytest.mark.slow
def test_grouped_runs_match_runs_trained_alone(tmp_path, synthetic_data_dir):
    """The real trainer: 4 compatible runs as one group, and each alone (--no-group), give the
    same test NLL (members match single runs to float rounding: benchmark.training.ensemble)."""
    nll: dict[bool, dict[str, float]] = {}
    for group in (True, False):
        plan = expand_grid("table1", SweepOptions(schedule="smoke", steps=4, eval_k=4, eval_n=10,
                                                  data=("mnist-dynamic",), seeds=2),
                           tmp_path / f"group-{group}")
        plan = [run for run in plan if run.config.k == 5 and run.config.layers == 1]
        assert len(plan) == 4
        report = run_sweep("table1", plan, data_dir=synthetic_data_dir, group=group,
                           runner=run_real_trainer, group_runner=run_real_group_trainer,
                           executor_factory=lambda n: InlineExecutor(), stream=io.StringIO(),
                           out=io.StringIO())
        assert report.exit_code == 0 and len(report.complete) == 4
        records = {run.run_id: load_result(run.run_dir) for run in plan}
        for run_id, record in records.items():
            assert record["status"] == "complete" and record["run_id"] == run_id
            assert record["progress"]["steps"] == 4
            assert record["environment"]["execution"]["group_size"] == (4 if group else 1)
        nll[group] = {run_id: r["metrics"]["test_nll"] for run_id, r in records.items()}
    assert nll[True].keys() == nll[False].keys()
    for run_id, alone in nll[False].items():
        # Measured: identical to the last bit (the exact numerics run each member's matmuls as
        # its own slice of one bmm). 1e-9 nats still fails on any float32 reassociation
        # (~1e-5 nats at 220) while leaving the float64 summary's rounding alone.
        assert nll[True][run_id] == pytest.approx(alone, abs=1e-9), run_id


@pytest.mark.slow
def test_missing_omniglot_file_is_unavailable_with_the_real_data_check(tmp_path,
                                                                      synthetic_data_dir):
    (synthetic_data_dir / "raw" / "omniglot" / "chardata.mat").unlink()
    plan = real_smoke_runs(tmp_path / "results") + real_smoke_runs(tmp_path / "results",
                                                                   "omniglot")
    report = run_sweep("table1", plan, data_dir=synthetic_data_dir, runner=run_real_trainer,
                       executor_factory=lambda n: InlineExecutor(), stream=io.StringIO(),
                       out=io.StringIO())
    assert report.exit_code == 0
    assert len(report.complete) == len(report.unavailable) == 2
    for run in plan:
        record = load_result(run.run_dir)
        if run.config.data == "omniglot":
            assert record["status"] == "unavailable"
            assert "chardata.mat" in record["reason"] and "fetch omniglot" in record["reason"]
        else:
            assert record["status"] == "complete"


@pytest.mark.slow
def test_cli_table2_end_to_end_then_idempotent(tmp_path, synthetic_data_dir):
    args = ("table2", *REAL_CUT, "--workers", "2", "--data-dir", str(synthetic_data_dir),
            "--results", str(tmp_path / "results"))
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().splitlines()[-1] == "sweep table2: 4 complete"
    records = sorted((tmp_path / "results").glob("*/*/result.json"))
    assert [p.parent.parent.name for p in records] == ["table1"] * 2 + ["table2"] * 2
    stamps = [p.stat().st_mtime_ns for p in records]
    second = run_cli(*args, cwd=tmp_path)
    assert second.returncode == 0 and "4 complete" in second.stdout
    assert [p.stat().st_mtime_ns for p in records] == stamps  # nothing trained or rewritten


@pytest.mark.slow
def test_cli_exits_1_with_a_summary_when_a_run_fails(tmp_path, synthetic_data_dir):
    results = tmp_path / "results"
    (run,) = real_smoke_runs(results, "omniglot")[:1]
    run.run_dir.mkdir(parents=True)
    # The trainer refuses a directory that belongs to another configuration: a real failure.
    (run.run_dir / "config.json").write_text('{"data": "omniglot", "k": 999}')
    result = run_cli("table1", *REAL_CUT, "--data", "omniglot", "--data-dir",
                     str(synthetic_data_dir), "--results", str(results), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"sweep table1: 11 complete, 1 failed ({run.label})")
    assert "holds a different run" in (run.run_dir / "sweep_error.log").read_text()
    assert load_result(run.run_dir)["status"] == "failed"
