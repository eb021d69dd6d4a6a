"""`python -m benchmark diagnose [RUN_DIR] --snr`: the gradient SNR of the estimators against K
(benchmark.evaluation.snr), at a run's newest checkpoint or, without a run, at the
initialisation a run would start from (hence this lives with the trainer).

Writes, beside the run (RUN_DIR/diagnostics/) or in --out: snr.json (the record: what was
measured, on which parameters and minibatch, the summaries and the fitted slopes), snr.csv
(the table) and snr.png (the figure). The report shows every snr.json under a results folder.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path
from typing import Any

import torch

from benchmark.config import RunConfig
from benchmark.data import load_dataset
from benchmark.definitions import default_snr_estimators, find_estimator
from benchmark.errors import UserError
from benchmark.evaluation import (
    AGREEMENT_RULE,
    DEFAULT_KS,
    EXCLUSION_RULE,
    binary_split,
    load_trained_model,
    noise_floor,
    prediction_checks,
    prediction_line,
    random_subset,
    relative_standard_error,
    snr_estimators,
    snr_figure_png,
    snr_study,
    weight_regime,
)
from benchmark.records import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_latest_checkpoint,
    resolve_device,
)
from benchmark.training.group import initial_member_model

SNR_MINIBATCH_SEED = 20153  # which training examples form the fixed minibatch
SNR_FILE = "snr.json"
EXPECTED = ("Rainforth et al. 2018 (arXiv 1802.04537): for IWAE the inference network's SNR "
            "falls with K (about K^-1/2) while the generative network's rises (about K^1/2); "
            "Tucker et al. 2018 (arXiv 1810.04152): DReG's inference-network SNR does not fall. "
            "Both describe large K: the regime where the effective sample size of the weights "
            "grows like K.")


def parse_list(text: str, cast: type, what: str) -> list:
    try:
        values = [cast(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"{what} must be a comma-separated list, got {text!r}") from None
    if not values:
        raise UserError(f"{what} is empty")
    return values


def choose_estimators(text: str | None, layers: int) -> list[str]:
    if text is None:
        return [e for e in default_snr_estimators() if fits(e, layers)]
    chosen = parse_list(text, str, "--estimators")
    unknown = [e for e in chosen if e not in snr_estimators()]
    if unknown:
        raise UserError(f"--estimators: unknown {', '.join(unknown)}; choose from "
                        f"{', '.join(snr_estimators())}")
    for e in chosen:
        if not fits(e, layers):
            raise UserError(f"--estimators {e} is {find_estimator(e).layers_reason}; this "
                            f"model has {layers} stochastic layers: leave {e} out")
    return chosen


def fits(estimator: str, layers: int) -> bool:
    """Whether the estimator is defined for a model with this many stochastic layers."""
    chosen = find_estimator(estimator)
    return chosen is None or chosen.max_layers is None or layers <= chosen.max_layers


def diagnose_command(args: argparse.Namespace) -> int:
    if not args.snr:
        raise UserError("choose a diagnostic: --snr (the gradient signal-to-noise ratio)")
    device = resolve_device(args.device)
    if args.run_dir is not None:
        config, model, source, out = _from_run(Path(args.run_dir), device)
    else:
        config, model, source, out = _at_initialisation(args, device)
    if args.out is not None:
        out = Path(args.out)
    ks = sorted(set(parse_list(args.k, int, "--k"))) if args.k else list(DEFAULT_KS)
    if min(ks) < 1:
        raise UserError("--k values must be at least 1")
    estimators = choose_estimators(args.estimators, config.layers)
    dataset = load_dataset(config.data, args.data_dir)
    index = random_subset(dataset.train.shape[0], args.batch, SNR_MINIBATCH_SEED)
    x = binary_split(dataset.train[index], dataset.dynamic).to(device)
    started = time.perf_counter()
    study = snr_study(model, x, ks, estimators, args.draws, config.seed, show_progress=True)
    weights = weight_regime(model, x, ks, config.seed)
    rows = [s.as_dict() for s in study.summaries]
    record = {
        "kind": "gradient_snr",
        "source": source,
        "config": {"data": config.data, "layers": config.layers, "fidelity": config.fidelity,
                   "seed": config.seed},
        "minibatch": {"n": int(len(index)), "seed": SNR_MINIBATCH_SEED,
                      "rule": "a seeded random subset of the training set, binarized once "
                              "with the test-binarization seed"},
        "draws": args.draws,
        "std_relative_error": relative_standard_error(args.draws),
        "noise_floor": noise_floor(args.draws),
        "ks": ks, "estimators": estimators,
        "snr": "per coordinate |mean| / sd of the estimator's gradient over the draws; "
               "median and quartiles over each network's coordinates",
        "exclusion_rule": EXCLUSION_RULE,
        "expected": EXPECTED,
        "results": rows, "slopes": study.slopes,
        "slope_interval": "delete-a-group jackknife over the draws: the study summarised again "
                          "without each of G groups of draws in turn; se^2 = (G - 1) / G * "
                          "sum of squared deviations of those slopes; interval slope +- "
                          "t(G - 1) se (conservative: the jackknife variance is biased "
                          "upwards); trend: falls or rises when the interval excludes 0, flat "
                          "otherwise",
        "predictions": prediction_checks(study.slopes), "weights": weights,
        "agreement": {"rule": AGREEMENT_RULE, "rows": study.agreement},
        "seconds": round(time.perf_counter() - started, 1),
    }
    atomic_write_json(out / SNR_FILE, record)
    atomic_write_text(out / "snr.csv", snr_csv(rows))
    png = snr_figure_png(rows, snr_title(record), weights["ess"], record["noise_floor"])
    if png is not None:
        atomic_write_bytes(out / "snr.png", png)
    print(snr_text(record))
    print(f"written to {out}/")
    return 0


def _from_run(run_dir: Path, device: torch.device) -> tuple[RunConfig, Any, dict, Path]:
    config, model = load_trained_model(run_dir, device)
    payload = load_latest_checkpoint(run_dir, map_location="cpu")
    step = int(payload["step"]) if payload is not None else None
    source = {"run_dir": str(run_dir), "run_id": run_dir.name, "step": step,
              "model": config.model, "k": config.k}
    return config, model, source, run_dir / "diagnostics"


def _at_initialisation(args: argparse.Namespace, device: torch.device
                       ) -> tuple[RunConfig, Any, dict, Path]:
    if args.data is None or args.layers is None:
        raise UserError("without RUN_DIR, say which initial model to diagnose: --data and "
                        "--layers (and optionally --fidelity, --seed)")
    config = RunConfig(data=args.data, model="iwae", k=1, layers=args.layers, seed=args.seed,
                       fidelity=args.fidelity)
    dataset = load_dataset(config.data, args.data_dir)
    model = initial_member_model(config, dataset).to(device)
    name = f"init_{config.data}_L{config.layers}_{config.fidelity}_s{config.seed}"
    source = {"initialisation": name, "step": 0}
    return config, model, source, Path("results") / "diagnostics" / name


def snr_title(record: dict) -> str:
    source = record["source"]
    where = (f"{source['run_id']} at step {source['step']}" if "run_id" in source
             else f"initialisation ({source['initialisation']})")
    return f"Gradient SNR, {where}; {record['draws']} draws, minibatch of " \
           f"{record['minibatch']['n']}"


def snr_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    fields = ["estimator", "network", "k", "median", "q1", "q3", "coordinates", "excluded"]
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({f: row[f] for f in fields})
    return buffer.getvalue()


def snr_text(record: dict) -> str:
    lines = [snr_title(record), f"{'estimator':10} {'network':8} {'K':>6} {'median':>10} "
                                f"{'q1':>10} {'q3':>10}"]
    for r in record["results"]:
        lines.append(f"{r['estimator']:10} {r['network']:8} {r['k']:6d} {r['median']:10.4g} "
                     f"{r['q1']:10.4g} {r['q3']:10.4g}")
    for s in record["slopes"]:
        interval = (f" [{s['interval'][0]:+.3f}, {s['interval'][1]:+.3f}] "
                    f"({s['confidence']:.0%}): {s['trend']}" if "interval" in s else "")
        lines.append(f"slope of log SNR against log K: {s['estimator']} {s['network']}: "
                     f"{s['slope']:+.3f}{interval}")
    if "noise_floor" in record:
        lines.append(f"noise floor: a coordinate whose mean is 0 shows a median SNR of "
                     f"{record['noise_floor']:.3g} from {record['draws']} draws")
    lines += [prediction_line(c) for c in record.get("predictions", [])]
    if record.get("weights"):
        lines.append(record["weights"]["summary"])
    lines += [row["summary"] for row in record.get("agreement", {}).get("rows", [])]
    return "\n".join(lines)

