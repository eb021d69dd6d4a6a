"""`python -m benchmark doctor` (`make doctor`): what this machine is, whether the suite's paths
work on it, and what the make targets would cost here.

1. The machine: Python, torch, CUDA, the device --device auto picks, cores and threads, the C++
   compiler that --numerics fast needs on a CPU.
2. Checks: a training step of every group kind gives finite bounds here; on a GPU, the CUDA-graph
   step passes its self-check (benchmark.training.step_check) with exact and fast numerics, and
   the CUDA tests pass (`pytest -m cuda`, when the tests are beside the package).
3. Timings: one training step of every group kind the make targets form (the Table 1 kinds, at
   each group size they use), for a few seconds each, timed on the executor the make targets
   use, exactly as a sweep calibrates its cost model, on synthetic inputs of the real shapes (no
   data needed); and the evaluation's cost per importance sample.
4. Projections: the wall time of reproduce-table1, compare-binarization and reproduce-table2
   from a fresh results folder, for the full and the quick schedule.

Exit status 0 when every check passed, 1 with one line naming the failed checks otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmark.config import PROTOCOL_EPOCHS
from benchmark.data import CONDITION_SIZES
from benchmark.records import resolve_device
from benchmark.sweeps.calibration import Timer, calibrate, run_real_timer
from benchmark.sweeps.cost_model import CostModel, TaskCost, project
from benchmark.sweeps.executors import (
    Executor,
    available_cores,
    describe_executor,
    make_executor,
)
from benchmark.sweeps.grids import SweepOptions, expand_grid
from benchmark.sweeps.progress import format_duration
from benchmark.sweeps.projection import planned_tasks
from benchmark.training import ExecutionOptions, synthetic_self_check

TARGETS = (("reproduce-table1", "table1"), ("compare-binarization", "binarization"),
           ("reproduce-table2", "table2"))
SCHEDULES = ("full", "quick")
TESTS_DIR = Path(__file__).resolve().parents[2] / "tests"
CUDA_TESTS_TIMEOUT_S = 1800


@dataclass
class Check:
    name: str
    ok: bool | None  # None: skipped
    detail: str = ""


def make_target_executor(uses_gpu: bool) -> Executor:
    """The executor `make reproduce-*` uses here: the local pool, sized to this machine."""
    return make_executor("local", n_runs=24, workers=None, address=None, gpus_per_run=0,
                         uses_gpu=uses_gpu)


def doctor_command(args: argparse.Namespace, timer: Timer = run_real_timer,
                   write: Callable[[str], None] = print,
                   executor_factory: Callable[[bool], Executor] = make_target_executor) -> int:
    device = resolve_device(args.device)
    options = ExecutionOptions(numerics=args.numerics)
    checks: list[Check] = []
    write("machine")
    for line in machine_lines(device.type):
        write(f"  {line}")
    checks.extend(cuda_checks(run_tests=not args.no_tests))

    executor = executor_factory(device.type == "cuda")
    try:
        targets = {(target, schedule): planned_tasks(
            expand_grid(grid, SweepOptions(schedule=schedule, device=args.device),
                        Path("results")), executor.capacity, fresh=True)
            for target, grid in TARGETS for schedule in SCHEDULES}
        every_task = [task for tasks in targets.values() for task in tasks]
        write(f"timings ({device.type}, {args.numerics} numerics, synthetic inputs of the real "
              f"shapes; {describe_executor(executor)}, as the make targets run)")
        model, why_not = calibrate(executor, every_task, options, timer, None, args.device,
                                   step_seconds=args.seconds, eval_seconds=args.seconds / 3)
    finally:
        executor.close()
    if model is None:
        checks.append(Check("timing a training step of every group kind", False, why_not or ""))
        return finish(checks, write)
    for line in timing_lines(model):
        write(f"  {line}")
    checks.append(Check("a training step of every group kind gives finite bounds",
                        not model.not_finite,
                        f"not finite: {', '.join(model.not_finite)}" if model.not_finite else ""))
    write(f"  {grid_step_line(model, executor)}")
    write(f"projections (a fresh results folder; {describe_executor(executor)})")
    for line in projection_lines(model, targets, executor.capacity):
        write(f"  {line}")
    return finish(checks, write)


def machine_lines(device_type: str) -> list[str]:
    import torch as t

    lines = [f"python {platform.python_version()}, torch {t.__version__}, "
             f"{platform.system()} {platform.machine()}"]
    if t.cuda.is_available():
        props = t.cuda.get_device_properties(0)
        lines.append(f"CUDA {t.version.cuda}: {t.cuda.device_count()} GPU(s); GPU 0 {props.name}, "
                     f"compute capability {props.major}.{props.minor}, "
                     f"{props.total_memory / 2**30:.0f} GiB; TF32 "
                     f"{'available (off unless --tf32)' if props.major >= 8 else 'not available'}")
    else:
        built = f"built for CUDA {t.version.cuda}" if t.version.cuda else "a CPU-only build"
        lines.append(f"CUDA: no GPU visible (torch is {built})")
    lines.append(f"--device auto picks {resolve_device('auto').type}; this doctor runs on "
                 f"{device_type}; {available_cores()} core(s), torch "
                 f"threads {t.get_num_threads()}")
    compiler = next((c for c in (os.environ.get("CXX"), "g++", "c++", "clang++")
                     if c and shutil.which(c)), None)
    lines.append(f"C++ compiler: {compiler or 'none found'} (--numerics fast on a CPU "
                 f"{'compiles its step' if compiler else 'falls back to eager; or --no-compile'})")
    ray = importlib.util.find_spec("ray") is not None
    lines.append(f"ray: {'installed' if ray else 'not installed'} (EXECUTOR=ray)")
    return lines


def cuda_checks(run_tests: bool) -> list[Check]:
    """The GPU's own checks: the self-check of the CUDA-graph step, and the CUDA tests."""
    import torch

    if not torch.cuda.is_available():
        how = "run `make doctor` (or `pytest -m cuda`) on a machine with a CUDA GPU"
        return [Check("the CUDA-graph step's self-check and the CUDA tests", None,
                      f"no CUDA GPU here; {how}")]
    checks = [Check("--device auto chooses the GPU", resolve_device("auto").type == "cuda")]
    for numerics in ("exact", "fast"):
        verdict = synthetic_self_check(numerics)
        detail = (f"{verdict.get('tolerance')}, max |difference| {verdict.get('max_abs_diff')}"
                  if verdict["matches"] else str(verdict.get("mismatch")))
        checks.append(Check(f"the CUDA-graph step is the eager step ({numerics} numerics)",
                            bool(verdict["matches"]), detail))
    if not run_tests:
        checks.append(Check("the CUDA tests", None, "--no-tests"))
    elif not TESTS_DIR.is_dir() or importlib.util.find_spec("pytest") is None:
        checks.append(Check("the CUDA tests", None, "no tests/ beside the package, or no pytest"))
    else:
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p",
                                 "no:cacheprovider", str(TESTS_DIR)], capture_output=True,
                                text=True, timeout=CUDA_TESTS_TIMEOUT_S,
                                cwd=TESTS_DIR.parent)
        last = (result.stdout.strip().splitlines() or ["no output"])[-1]
        checks.append(Check("the CUDA tests (pytest -m cuda)", result.returncode == 0, last))
    return checks


def timing_lines(model: CostModel) -> list[str]:
    lines = [f"{'kind':<16}{'members':>8}{'step (ms)':>11}{'one-off (s)':>13}  step path"]
    for name in sorted(model.step_s, key=_kind_order):
        for members, seconds in sorted(model.step_s[name].items()):
            lines.append(f"{name:<16}{members:>8}{seconds * 1e3:>11.2f}"
                         f"{model.one_off_s.get(name, 0.0):>13.2f}  {model.paths.get(name, '')}")
    for name, seconds in sorted(model.eval_row_s.items(), key=lambda kv: _kind_order(kv[0])):
        lines.append(f"evaluation {name}: {seconds * 1e6:.2f} us per (example x sample) row")
    return lines


def _kind_order(name: str) -> tuple[int, int, str]:
    layers, k, *rest = name.split("-")
    return int(layers[1:]), int(k[1:]), "-".join(rest)


def grid_step_line(model: CostModel, executor: Executor) -> str:
    """The MNIST Table 1 grid trained together: its 6 groups of 2 (VAE and IWAE) stepped."""
    n_train = CONDITION_SIZES["mnist-dynamic"][0]
    steps = PROTOCOL_EPOCHS * (n_train // 20)
    seconds = sum(model.step_seconds((layers, k, "code"), 2)
                  for layers in (1, 2) for k in (1, 5, 50))
    hours = seconds * steps / 3600 / max(1, executor.capacity)
    return (f"the MNIST Table 1 grid (12 models, 6 groups of 2): one step of every group "
            f"{seconds * 1e3:.1f} ms in all; its {steps:,} full-protocol steps: "
            f"{hours:,.0f} h of training on {executor.capacity} worker(s)")


def projection_lines(model: CostModel, targets: dict[tuple[str, str], list[TaskCost]],
                     workers: int) -> list[str]:
    lines = [f"{'target':<24}" + "".join(f"{s:>14}" for s in SCHEDULES)]
    for target, _grid in TARGETS:
        cells = []
        for schedule in SCHEDULES:
            projection = project(model, targets[(target, schedule)], workers)
            cells.append(f"{format_duration(projection.seconds):>14}")
        lines.append(f"{target:<24}" + "".join(cells))
    lines.append("(after reproduce-table1 the other two cost less: compare-binarization shares "
                 "its mnist-dynamic half, reproduce-table2 its base runs)")
    return lines


def finish(checks: list[Check], write: Callable[[str], None]) -> int:
    failed = [c for c in checks if c.ok is False]
    skipped = [c for c in checks if c.ok is None]
    write("checks")
    for check in checks:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[check.ok]
        write(f"  {mark}  {check.name}" + (f": {check.detail}" if check.detail else ""))
    if failed:
        print(f"doctor: {len(failed)} check(s) failed: " + "; ".join(
            f"{c.name} ({c.detail})" if c.detail else c.name for c in failed), file=sys.stderr)
        return 1
    if skipped:
        write(f"doctor: every check that can run here passed ({len(skipped)} skipped)")
    else:
        write("doctor: every check passed")
    return 0

