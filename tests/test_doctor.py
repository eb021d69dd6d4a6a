"""`python -m benchmark doctor`: it needs no data (a fresh clone), prints the machine, the checks,
a timing of every group kind of the targets and their projections, and exits 1 with one line when
a check fails. The timings here are the fake trainers' (tests/sweep_fakes.py): the real ones are
tested in tests/test_cost_model.py."""

from __future__ import annotations

import argparse

from sweep_fakes import fake_timer

from benchmark.sweeps.doctor import doctor_command, make_target_executor
from benchmark.sweeps.executors import InlineExecutor, plan_local_workers

KINDS = [f"L{layers}-k{k}-code" for layers in (1, 2) for k in (1, 5, 50)]


def args(**overrides) -> argparse.Namespace:
    return argparse.Namespace(**{"device": "cpu", "numerics": "exact", "seconds": 0.01,
                                 "no_tests": False, **overrides})


def run_doctor(timer, tmp_path, monkeypatch) -> tuple[int, list[str]]:
    monkeypatch.chdir(tmp_path)  # a fresh clone: no datasets/, no results/
    monkeypatch.setenv("IWAE_DATA_DIR", str(tmp_path / "no-data"))
    lines: list[str] = []
    status = doctor_command(args(), timer=timer, write=lines.append,
                            executor_factory=lambda uses_gpu: InlineExecutor())
    assert list(tmp_path.iterdir()) == []  # doctor writes nothing
    return status, lines


def test_doctor_describes_times_and_projects_without_data(tmp_path, monkeypatch, capsys):
    status, lines = run_doctor(fake_timer, tmp_path, monkeypatch)
    assert status == 0, lines
    text = "\n".join(lines)
    for heading in ("machine", "timings (cpu, exact numerics", "projections", "checks"):
        assert any(line.startswith(heading) for line in lines), heading
    assert "C++ compiler:" in text and "--device auto picks" in text
    timed = {line.split()[0] for line in lines if line.startswith("  L")}
    assert timed == set(KINDS)  # every group kind of the Table 1 grid
    for target in ("reproduce-table1", "compare-binarization", "reproduce-table2"):
        (row,) = [line for line in lines if line.split()[:1] == [target]]
        assert len(row.split()) == 3  # the target, full, quick
    assert "the MNIST Table 1 grid (12 models, 6 groups of 2)" in text
    assert "ok    a training step of every group kind gives finite bounds" in text
    assert lines[-1].startswith("doctor: every check that can run here passed")
    assert capsys.readouterr().err == ""


def test_a_failed_check_is_exit_1_and_one_line(tmp_path, monkeypatch, capsys):
    def diverging(*a):
        timings = fake_timer(*a)
        timings["not_finite"] = ["L2-k50-code"]
        return timings

    status, lines = run_doctor(diverging, tmp_path, monkeypatch)
    assert status == 1
    assert "FAIL  a training step of every group kind gives finite bounds: not finite: " \
           "L2-k50-code" in "\n".join(lines)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["doctor: 1 check(s) failed: a training step of every group kind gives finite "
                   "bounds (not finite: L2-k50-code)"]


def test_a_timing_that_fails_is_a_failed_check(tmp_path, monkeypatch, capsys):
    def broken(*a):
        raise RuntimeError("out of memory")

    status, _ = run_doctor(broken, tmp_path, monkeypatch)
    assert status == 1
    assert capsys.readouterr().err.strip() == (
        "doctor: 1 check(s) failed: timing a training step of every group kind "
        "(RuntimeError: out of memory)")


def test_doctor_times_on_the_executor_the_make_targets_use():
    executor = make_target_executor(uses_gpu=False)
    try:
        from benchmark.sweeps.executors import available_cores

        workers, threads = plan_local_workers(None, 24, available_cores())
        assert (executor.capacity, executor.threads_per_task) == (workers, threads)
    finally:
        executor.close()
