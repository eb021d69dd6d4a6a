"""`python -m benchmark oracle`: choose the cases, run them, print the summary table
(`--independent`: the independent comparison, benchmark.oracle.independent)."""

from __future__ import annotations

import argparse
import fnmatch

from benchmark.errors import UserError
from benchmark.oracle.cases import default_cases, select, short_cases
from benchmark.oracle.records import format_summary
from benchmark.oracle.run import run_oracle
from benchmark.oracle.sources import default_cache, default_from_dir


def oracle_command(args: argparse.Namespace) -> int:
    if args.independent:
        return _independent(args)
    if args.spread is not None:
        raise UserError("--spread belongs to --independent: add --independent")
    cases = select(short_cases() if args.short else default_cases(), args.configs, args.steps)
    if args.list:
        for case in cases:
            print(case.id, getattr(case, "steps", ""))
        return 0
    from_dir = args.from_dir if args.from_dir is not None else default_from_dir()
    summary = run_oracle(cases, args.data_dir, args.results, default_cache(), from_dir,
                         keep_work=args.keep_work)
    print(format_summary(summary), end="")
    return 0 if summary["holds"] else 1


def _independent(args: argparse.Namespace) -> int:
    from benchmark.oracle.independent import (
        IndependentSettings,
        independent_cases,
        run_independent,
        run_spread,
    )
    from benchmark.oracle.independent_records import format_independent, format_spread

    cases = independent_cases()
    if args.configs:
        cases = [c for c in cases if any(fnmatch.fnmatch(c.id, p) for p in args.configs)]
        if not cases:
            known = ", ".join(c.id for c in independent_cases())
            raise UserError(f"--configs {' '.join(args.configs)} matches no independent "
                            f"configuration; known: {known}")
    settings = IndependentSettings(epochs=args.epochs, seeds=args.seeds, eval_n=args.eval_n,
                                   eval_k=args.eval_k, steps=args.steps)
    if args.list:
        for case in cases:
            print(case.id, settings.steps_for(case.data))
        return 0
    if args.spread is not None:
        spread = run_spread(cases, args.spread, settings, args.data_dir, args.results)
        print(format_spread(spread), end="")
        return 0
    from_dir = args.from_dir if args.from_dir is not None else default_from_dir()
    summary = run_independent(cases, settings, args.data_dir, args.results, default_cache(),
                              from_dir, keep_work=args.keep_work)
    print(format_independent(summary), end="")
    return 0 if summary["holds"] else 1
