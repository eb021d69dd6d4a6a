"""`python -m benchmark oracle`: choose the cases, run them, print the summary table."""

from __future__ import annotations

import argparse

from benchmark.oracle.cases import default_cases, select, short_cases
from benchmark.oracle.records import format_summary
from benchmark.oracle.run import run_oracle
from benchmark.oracle.sources import default_cache, default_from_dir


def oracle_command(args: argparse.Namespace) -> int:
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
