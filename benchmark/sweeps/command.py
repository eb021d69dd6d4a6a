"""The `sweep` subcommand: flags to a plan, an executor and a sweep, and its exit status."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.errors import UserError
from benchmark.records import resolve_device
from benchmark.sweeps.availability import record_unselected_unavailable
from benchmark.sweeps.driver import run_sweep
from benchmark.sweeps.executors import (
    Executor,
    available_cores,
    check_gpus_per_run,
    import_ray,
    make_executor,
)
from benchmark.sweeps.grids import GRIDS, SweepOptions, expand_grid, parse_cell
from benchmark.sweeps.test_scoring import TestScoring, score_runs
from benchmark.training import execution_from_args


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        schedule=args.schedule, fidelity=args.fidelity,
        data=tuple(args.data) if args.data else None, seeds=args.seeds, device=args.device,
        stages=args.stages, epochs=args.epochs, steps=args.steps, eval_k=args.eval_k,
        eval_n=args.eval_n,
        cells=tuple(parse_cell(c) for c in args.cells) if args.cells else None,
    )


@contextmanager
def termination_as_interrupt() -> Iterator[None]:
    """SIGTERM (a batch scheduler, `kill`) ends the sweep as Ctrl-C does: workers are stopped and
    run locks released, instead of dying with the locks left for the next sweep to clear."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def check_executor_flags(args: argparse.Namespace) -> None:
    """Flag mistakes surface before any data is loaded or anything starts."""
    if args.executor == "local" and (args.address or args.gpus_per_run):
        raise UserError("--address and --gpus-per-run need --executor ray")
    if args.executor == "ray":
        check_gpus_per_run(args.gpus_per_run)
        import_ray()


def sweep_command(args: argparse.Namespace) -> int:
    """The `sweep` subcommand (see the module docstring); returns the exit status."""
    if args.grid not in GRIDS:
        raise UserError(f"unknown grid {args.grid!r}; choose one of {', '.join(GRIDS)}")
    if args.results.exists() and not args.results.is_dir():
        raise UserError(f"--results {args.results} is a file, not a folder; choose a folder")
    options = options_from_args(args)
    plan = expand_grid(args.grid, options, args.results)

    uses_gpu = resolve_device(args.device).type == "cuda"

    def executor_factory(n_runs: int) -> Executor:
        return make_executor(args.executor, n_runs=n_runs, workers=args.workers,
                             address=args.address, gpus_per_run=args.gpus_per_run,
                             uses_gpu=uses_gpu)

    check_executor_flags(args)
    if args.stage_k is not None and not args.tests:
        raise UserError("--stage-k scores the stage snapshots on the --tests binarizations: "
                        "add --tests lm,dynamic (or others)")
    record_unselected_unavailable(args.grid, options, plan, args.results, Path(args.data_dir))
    with termination_as_interrupt():
        report = run_sweep(args.grid, plan, data_dir=Path(args.data_dir),
                           executor_factory=executor_factory, group=not args.no_group,
                           options=execution_from_args(args))
    print(report.summary_line(), file=sys.stdout if report.ok else sys.stderr)
    if args.tests:
        scoring = TestScoring(tuple(t.name for t in args.tests), args.stage_k)
        failures = score_runs(plan, scoring, Path(args.data_dir), str(resolve_device(args.device)),
                              args.workers or available_cores(),
                              lambda text: print(text, file=sys.stderr, flush=True))
        if failures:
            print(f"{len(failures)} run(s) could not be scored on the test binarizations "
                  f"({', '.join(sorted(failures))})", file=sys.stderr)
            return report.exit_code or 1
    return report.exit_code
