"""The `sweep` subcommand: its flags parsed and handed to benchmark.sweeps.grid_sweep."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.errors import UserError
from benchmark.sweeps.grid_sweep import score_grid, sweep_grid
from benchmark.sweeps.grids import SweepOptions
from benchmark.training import execution_from_args


def options_from_args(args: argparse.Namespace) -> SweepOptions:
    return SweepOptions(
        schedule=args.schedule, fidelity=args.fidelity,
        data=tuple(args.data) if args.data else None, seeds=args.seeds, device=args.device,
        stages=args.stages, epochs=args.epochs, steps=args.steps, eval_k=args.eval_k,
        eval_n=args.eval_n,
        cells=tuple(args.cells) if args.cells else None,
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


def sweep_command(args: argparse.Namespace) -> int:
    """The `sweep` subcommand: its flags to sweep_grid (and score_grid with --tests); prints
    the summary line and returns the exit status."""
    if args.stage_k is not None and not args.tests:
        raise UserError("--stage-k scores the stage snapshots on the --tests binarizations: "
                        "add --tests lm,dynamic (or others)")
    options = options_from_args(args)
    with termination_as_interrupt():
        report = sweep_grid(args.grid, options, args.results, Path(args.data_dir),
                            executor=args.executor, workers=args.workers, address=args.address,
                            gpus_per_run=args.gpus_per_run, group=not args.no_group,
                            execution=execution_from_args(args))
    print(report.summary_line(), file=sys.stdout if report.ok else sys.stderr)
    if args.tests:
        failures = score_grid(args.grid, options, args.results, Path(args.data_dir),
                              [t.name for t in args.tests], args.stage_k, args.workers,
                              lambda text: print(text, file=sys.stderr, flush=True))
        if failures:
            print(f"{len(failures)} run(s) could not be scored on the test binarizations "
                  f"({', '.join(sorted(failures))})", file=sys.stderr)
            return report.exit_code or 1
    return report.exit_code
