"""`python -m benchmark ...`: fetch the data, train, evaluate, sweep and report, in one place.

Each subcommand's arguments are declared here; the work is done by the module that owns it.
Errors a user can cause end in one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from benchmark.config import DATA_CONDITIONS, GRIDS, default_data_dir
from benchmark.definitions import (
    default_snr_estimators,
    describe,
    describe_objectives,
    estimator_names,
    estimators,
    objective_names,
    parameters,
    snr_names,
    users_of,
)
from benchmark.errors import UserError, filesystem_error_line
from benchmark.plugins import PLUGIN_ENV, PLUGIN_FLAG, load_plugins, loaded_plugins

FETCH_CHOICES = ("mnist", "binarized-mnist", "omniglot", "all")


def default_mirrors() -> list[str]:
    value = os.environ.get("IWAE_MIRROR", "")
    return [m for m in value.split() if m]


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset cache (default: $IWAE_DATA_DIR or datasets/)")


def add_execution_flags(p: argparse.ArgumentParser) -> None:
    """How runs execute (benchmark.training.execution); recorded, never part of a run's identity."""
    g = p.add_argument_group("execution (recorded in result.json; the run id does not change)")
    g.add_argument("--numerics", choices=("exact", "fast"), default="exact",
                   help="exact (default): the reference arithmetic, bit-reproducible; fast: "
                        "fused and compiled kernels, within float rounding of exact")
    g.add_argument("--tf32", action="store_true",
                   help="allow TF32 matmuls on Ampere+ GPUs (faster, 10-bit mantissa; off by "
                        "default so results are float32)")
    g.add_argument("--no-cuda-graphs", action="store_true",
                   help="on a GPU, run the step eagerly instead of replaying a CUDA graph")
    g.add_argument("--no-compile", action="store_true",
                   help="fast numerics on the CPU without torch.compile (no C++ compiler)")


def add_trust_flag(p: argparse.ArgumentParser) -> None:
    """The opt-in to read checkpoints pickled by older versions (they can run code when read)."""
    from benchmark.records import TRUST_ENV, TRUST_FLAG

    p.add_argument(TRUST_FLAG, action="store_true",
                   help="read the pickled checkpoints older versions wrote (reading a pickle can "
                        "run code it holds: only for run folders you trust) and rewrite them as "
                        f"plain tensors; the same as {TRUST_ENV}=1")


def add_plugin_flag(p: argparse.ArgumentParser) -> None:
    """Objectives of your own (benchmark.plugins): main() loads them before parsing the rest."""
    p.add_argument(PLUGIN_FLAG, action="append", default=[], metavar="PATH_OR_MODULE",
                   help="load objectives of your own from a .py file or a module that defines "
                        f"OBJECTIVES (repeatable; also ${PLUGIN_ENV} and installed entry points)")


def add_objective_flags(p: argparse.ArgumentParser) -> None:
    """What a run trains: the bound, its gradient estimator and their parameters, as their
    definitions (benchmark.definitions) say, a loaded plugin's included."""
    p.add_argument("--model", required=True, choices=objective_names(),
                   help=f"the objective ({describe_objectives()})")
    p.add_argument("--k", required=True, type=positive_int,
                   help="importance samples per bound (for miwae/piwae: K of each of the M)")
    p.add_argument("--estimator", choices=estimator_names(), default=None,
                   help="a gradient estimator other than the reparameterisation gradient (" +
                        "; ".join(f"{describe(e)}, with --model {e.of}"
                                  for e in estimators()) + ")")
    for parameter in parameters():
        p.add_argument(f"--{parameter.name}", type=parameter.kind, default=None,
                       help=f"{' and '.join(users_of(parameter.name))}: {parameter.help}")
    add_plugin_flag(p)


def step_counts(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers, e.g. 100,1000,10000."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got "
                                         f"{text!r}")
    return values


def test_binarizations(text: str) -> list:
    """A comma-separated list of test binarizations: lm, dynamic, resampled:R."""
    from benchmark.data import parse_test_binarization
    from benchmark.errors import UserError as Refused

    try:
        return [parse_test_binarization(part) for part in text.split(",")]
    except Refused as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_ais_flags(p: argparse.ArgumentParser) -> None:
    """Annealed importance sampling and BDMC (benchmark.evaluation.ais_command)."""
    g = p.add_argument_group("AIS and BDMC (recorded in result.json beside L_k)")
    g.add_argument("--ais", action="store_true",
                   help="estimate log p(x) of the --n test examples by annealed importance "
                        "sampling with HMC (Wu et al. 2017)")
    g.add_argument("--bdmc", action="store_true",
                   help="bidirectional Monte Carlo on --simulated examples drawn from the model: "
                        "lower and upper bounds of log p(x) and their gap, for each T")
    g.add_argument("--intermediate", type=step_counts, default=None, metavar="T[,T...]",
                   help="intermediate distributions (sigmoid schedule); several: one evaluation "
                        "each (default: 10000 for --ais, 100,1000,10000 for --bdmc)")
    g.add_argument("--chains", type=positive_int, default=16,
                   help="independent AIS chains per example (default 16)")
    g.add_argument("--leapfrog", type=positive_int, default=10,
                   help="leapfrog steps per HMC transition (default 10)")
    g.add_argument("--ais-start", choices=("prior", "encoder"), default="prior",
                   help="anneal from the prior p(h) (default) or from the encoder's q(h|x)")
    g.add_argument("--simulated", type=positive_int, default=None, metavar="M",
                   help="BDMC: examples simulated from the model (default 100)")
    g.add_argument("--ais-batch", type=positive_int, default=100, metavar="B",
                   help="examples whose chains run as one batch (default 100); the noise "
                        "depends on it, the estimate's distribution does not")


def build_parser() -> argparse.ArgumentParser:
    """The parser, with a flag for every parameter of every registered objective."""
    try:
        return _build_parser()
    except argparse.ArgumentError as err:  # a plugin's parameter named like a flag
        raise UserError(f"{err}: a parameter of an objective plugin "
                        f"({', '.join(spec for spec, _ in loaded_plugins())}) is named like a "
                        f"flag of the command; rename it in its definition") from err


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark",
                                     description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download and verify dataset files")
    p.add_argument("names", nargs="*", choices=FETCH_CHOICES, default=["all"], metavar="DATASET",
                   help=f"one or more of {', '.join(FETCH_CHOICES)} (default: all)")
    add_data_dir(p)
    p.add_argument("--mirror", action="append", default=None, metavar="URL",
                   help="base URL laid out like datasets/raw/ (mnist/, binarized_mnist/, "
                        "omniglot/), tried first (repeatable; env IWAE_MIRROR)")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="copy and verify from a local folder laid out like datasets/raw/ "
                        "(mnist/, binarized_mnist/, omniglot/)")

    p = sub.add_parser("info", help="which dataset files are present and verified, and the splits")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("match", help="match the Larochelle-Murray binarized MNIST files to the "
                                     "MNIST images they were drawn from (cached, verified)")
    add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("train", help="train one model (resumes if --out already holds a run)")
    p.add_argument("--data", required=True, choices=DATA_CONDITIONS)
    add_objective_flags(p)
    p.add_argument("--layers", required=True, type=int, choices=(1, 2))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fidelity", choices=("code", "paper"), default="code")
    p.add_argument("--schedule", choices=("full", "quick", "smoke"), default="full")
    p.add_argument("--stages", type=positive_int, default=None, help="stop after N stages")
    p.add_argument("--epochs", type=positive_float, default=None,
                   help="stop after E epochs (fractions allowed)")
    p.add_argument("--steps", type=positive_int, default=None, help="stop after N steps")
    p.add_argument("--eval-k", type=positive_int, default=None,
                   help="importance samples of the final evaluation (default 5000; smoke: 100)")
    p.add_argument("--eval-n", type=positive_int, default=None,
                   help="evaluate a seeded random subset of N test examples (default: all; "
                        "smoke: 200)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--init-from", type=Path, default=None, metavar="RUN_DIR",
                   help="continue from that run's final checkpoint (paper Section 5.2)")
    add_data_dir(p)
    p.add_argument("--out", type=Path, default=None, metavar="RUN_DIR",
                   help="run directory (default: results/runs/<run-id>)")
    p.add_argument("--checkpoint-every", type=positive_float, default=300.0, metavar="SECONDS",
                   help="checkpoint at least this often inside long stages (default 300)")
    add_trust_flag(p)
    add_execution_flags(p)

    p = sub.add_parser("evaluate", help="re-evaluate a trained run")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--k", type=positive_int, default=5000,
                   help="importance samples of L_k (with --ais: the bound AIS is set beside)")
    p.add_argument("--n", type=positive_int, default=None,
                   help="a seeded random subset of N examples, as --eval-n (default: all)")
    p.add_argument("--split", choices=("test", "train"), default="test")
    p.add_argument("--test", type=test_binarizations, default=None, metavar="NAME[,NAME...]",
                   help="MNIST runs: score on these binarizations of the MNIST test images: lm "
                        "(the Larochelle-Murray test file), dynamic (the suite's seed-123 draw), "
                        "resampled:R (the mean over R fresh draws); with --split train, the "
                        "run's training images too")
    p.add_argument("--stage", default=None, metavar="all|S|final",
                   help="with --test or --split train: score the model saved at the end of "
                        "stage S (0-based), of every stage (all), or the final one (default)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    add_data_dir(p)
    add_ais_flags(p)
    add_trust_flag(p)
    add_plugin_flag(p)

    p = sub.add_parser("diagnose", help="gradient diagnostics of a trained run (or of the "
                                        "initial model): --snr")
    p.add_argument("run_dir", type=Path, nargs="?", default=None,
                   help="a run directory (its newest checkpoint); omit it to diagnose the "
                        "initial model given by --data, --layers, --fidelity, --seed")
    p.add_argument("--snr", action="store_true",
                   help="gradient signal-to-noise ratio of the estimators against K")
    p.add_argument("--k", default=None, metavar="K,...",
                   help="importance samples to compare (default 1,10,100)")
    p.add_argument("--estimators", default=None, metavar="NAME,...",
                   help=f"of {', '.join(snr_names())} (default "
                        f"{','.join(default_snr_estimators())}, those defined for the model's "
                        f"stochastic layers)")
    p.add_argument("--draws", type=positive_int, default=400,
                   help="independent gradient estimates per estimator and K (default 400)")
    p.add_argument("--batch", type=positive_int, default=20,
                   help="examples in the fixed minibatch (default 20, the paper's)")
    p.add_argument("--data", choices=DATA_CONDITIONS, default=None, help="without RUN_DIR")
    p.add_argument("--layers", type=int, choices=(1, 2), default=None, help="without RUN_DIR")
    p.add_argument("--fidelity", choices=("code", "paper"), default="code",
                   help="without RUN_DIR: which initialisation")
    p.add_argument("--seed", type=int, default=0,
                   help="without RUN_DIR: the run seed of the initial model; the draws' seed")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default RUN_DIR/diagnostics, or "
                        "results/diagnostics/init_...)")
    add_data_dir(p)
    add_trust_flag(p)
    add_plugin_flag(p)

    p = sub.add_parser("sweep", help="train and evaluate a grid of runs")
    p.add_argument("grid", choices=GRIDS)
    p.add_argument("--schedule", choices=("full", "quick", "smoke"), default="full")
    p.add_argument("--fidelity", choices=("code", "paper"), default="code")
    p.add_argument("--data", nargs="+", choices=DATA_CONDITIONS, default=None)
    p.add_argument("--seeds", type=positive_int, default=1)
    p.add_argument("--cells", nargs="+", default=None, metavar="CELL",
                   help="only these cells, written as in a run id: e.g. vae_k1_L1 iwae_k5_L1 "
                        "(table1, binarization, binarization-causes), iwae-dreg_k5 miwae_m8_k8 "
                        "(estimators); default: all")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="parallel runs (default: one per core, up to the number of runs)")
    p.add_argument("--address", default=None,
                   help="Ray cluster address (ray executor; default: start a local instance)")
    p.add_argument("--gpus-per-run", type=non_negative_float, default=0.0,
                   help="ray only; GPUs per task, so per group of runs unless --no-group; "
                        "fractions pack several tasks onto one GPU")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--stages", type=positive_int, default=None)
    p.add_argument("--epochs", type=positive_float, default=None)
    p.add_argument("--steps", type=positive_int, default=None)
    p.add_argument("--eval-k", type=positive_int, default=None)
    p.add_argument("--eval-n", type=positive_int, default=None)
    p.add_argument("--tests", type=test_binarizations, default=None, metavar="NAME[,NAME...]",
                   help="MNIST runs: once trained, also score each complete run on these "
                        "binarizations of the MNIST test images (lm, dynamic, resampled:R) and "
                        "on its training images, at its own --eval-k and --eval-n")
    p.add_argument("--stage-k", type=positive_int, default=None, metavar="K",
                   help="with --tests: also score the model saved at every stage end, with L_K")
    p.add_argument("--no-group", action="store_true",
                   help="train every run alone (default: compatible runs, same layers, "
                        "samples per example, fidelity and device, train together as batched "
                        "ensembles)")
    add_execution_flags(p)
    add_data_dir(p)
    p.add_argument("--results", type=Path, default=Path("results"))
    add_trust_flag(p)
    add_plugin_flag(p)

    p = sub.add_parser("report", help="write the HTML report and tables")
    p.add_argument("--results", type=Path, default=Path("results"))
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default: reports/<name of the results folder>)")
    p.add_argument("--grid", choices=GRIDS,
                   default=None,
                   help="show only that sweep grid's runs and tables")
    add_plugin_flag(p)

    p = sub.add_parser("publish", help="copy a sweep's complete records, without checkpoints, "
                                       "into a folder to commit or share")
    p.add_argument("sweep_dir", type=Path, help="a results/<sweep> folder")
    p.add_argument("dest", type=Path, help="where the records go, e.g. results/reference/NAME")

    p = sub.add_parser("oracle", help="run the authors' own code beside the suite and compare")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps of every lockstep case (default: per case, see --list)")
    p.add_argument("--configs", nargs="+", default=None, metavar="PATTERN",
                   help="cases whose id matches a pattern, e.g. 'mnist-dynamic_iwae_*'")
    p.add_argument("--short", action="store_true", help="the short check `make test` runs")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--from", dest="from_dir", type=Path, default=None, metavar="DIR",
                   help="a folder holding the authors' nine files (iwae.py, experiments.py, ...) "
                        "as in their repository; default: $IWAE_ORACLE_FROM, else a developer's "
                        "local mirror beside the checkout when there is one, else downloaded from "
                        "github:yburda/iwae; always verified by checksum)")
    p.add_argument("--keep-work", action="store_true", help="keep draws and snapshots")
    p.add_argument("--independent", action="store_true",
                   help="independent runs instead of the lockstep: each side its own seeds, "
                        "both scored by L_k on one binary test set (docs/protocol-and-fidelity.md)")
    p.add_argument("--epochs", type=positive_float, default=1.0,
                   help="--independent: training length in epochs (default 1)")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="--independent: the suite's seeds 0..S-1 (default 3)")
    p.add_argument("--eval-n", type=positive_int, default=200,
                   help="--independent: test images scored (the suite's seeded subset; "
                        "default 200)")
    p.add_argument("--eval-k", type=positive_int, default=5000,
                   help="--independent: importance samples of L_k (default 5000)")
    p.add_argument("--spread", type=positive_float, nargs="+", default=None, metavar="EPOCHS",
                   help="--independent: the suite's side only, its seeds scored at each of "
                        "these lengths (epochs) of one run")
    add_data_dir(p)
    p.add_argument("--results", type=Path, default=Path("results") / "oracle")
    p = sub.add_parser("doctor", help="this machine: checks, step timings, projected wall times")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--numerics", choices=("exact", "fast"), default="exact",
                   help="the numerics the make targets would run with (NUMERICS=...)")
    p.add_argument("--seconds", type=positive_float, default=3.0,
                   help="timed seconds per group kind and size (default 3)")
    p.add_argument("--no-tests", action="store_true", help="on a GPU, skip the CUDA tests")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "data_dir", "unset") is None:
        args.data_dir = default_data_dir()
    if getattr(args, "trust_pickled_checkpoints", False):
        from benchmark.records import trust_pickled_checkpoints

        trust_pickled_checkpoints()
    if args.command == "fetch":
        from benchmark.data import fetch_command

        mirrors = args.mirror if args.mirror is not None else default_mirrors()
        return fetch_command(args.names, args.data_dir, mirrors, args.from_dir)
    if args.command == "info":
        from benchmark.data import info_command

        return info_command(args.data_dir, as_json=args.json)
    if args.command == "match":
        from benchmark.data import match_command

        return match_command(args.data_dir, as_json=args.json)
    if args.command == "train":
        from benchmark.training import train_command

        return train_command(args)
    if args.command == "evaluate" and (args.ais or args.bdmc):
        from benchmark.evaluation import ais_evaluate_command

        return ais_evaluate_command(args)
    if args.command == "evaluate":
        from benchmark.evaluation import evaluate_command

        return evaluate_command(args)
    if args.command == "diagnose":
        from benchmark.training import diagnose_command

        return diagnose_command(args)
    if args.command == "sweep":
        from benchmark.sweeps import sweep_command

        return sweep_command(args)
    if args.command == "doctor":
        from benchmark.sweeps import doctor_command

        return doctor_command(args)
    if args.command == "report":
        from benchmark.report import report_command

        return report_command(args.results, args.out, args.grid)
    if args.command == "publish":
        from benchmark.records import publish_records

        copied = publish_records(args.sweep_dir, args.dest)
        print(f"{len(copied)} complete run(s) published to {args.dest}")
        return 0
    if args.command == "oracle":
        from benchmark.oracle import oracle_command

        return oracle_command(args)
    raise AssertionError(args.command)


def plugins_named(argv: list[str]) -> list[str]:
    """The --objective-module values, read before the parser is built: a plugin's objectives and
    parameters become choices and flags of that parser."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument(PLUGIN_FLAG, action="append", default=[])
    return early.parse_known_args(argv)[0].objective_module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        load_plugins(plugins_named(argv))
        parser = build_parser()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    try:
        return dispatch(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk, a read-only folder, a file where a folder belongs
        line = filesystem_error_line(err)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; partial work is kept and resumes on the next call", file=sys.stderr)
        return 130
