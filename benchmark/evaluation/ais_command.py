"""`python -m benchmark evaluate RUN_DIR --ais` and `--bdmc`: how tight is the run's L_k?

--ais   forward AIS of the run's test subset (the same seeded examples as --eval-n / --n),
        beside the L_k bound (--k, default 5000) on the same examples;
--bdmc  forward and reverse AIS on --simulated examples drawn from the model, for every
        number of intermediate distributions in --intermediate.

Per-example values go to RUN_DIR/evaluations/<name>.npz, a summary to <name>.json and into
result.json (metrics.ais, the evaluation with the most distributions, chains and examples;
metrics.ais_evaluations, all of them by name; metrics.bdmc). Finished batches are kept in
evaluations/.partial-<name>/ until the evaluation completes: running the same command again
resumes where an interrupted one stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.config import RunConfig
from benchmark.data import load_dataset
from benchmark.errors import UserError
from benchmark.evaluation.ais import chain_standard_error
from benchmark.evaluation.ais_evaluation import (
    BDMC_DEFAULT_SIMULATED,
    BDMC_DEFAULT_STEPS,
    DEFAULT_STEPS,
    AISOutcome,
    AISSettings,
    BDMCRow,
    evaluate_ais,
    evaluate_bdmc,
)
from benchmark.evaluation.batch_store import BatchStore
from benchmark.evaluation.inputs import evaluation_inputs
from benchmark.evaluation.run import score
from benchmark.evaluation.trained_model import load_trained_model
from benchmark.models import IWAEModel
from benchmark.records import (
    EVALUATIONS_DIR,
    atomic_write,
    atomic_write_json,
    load_result,
    read_array,
    resolve_device,
    write_result,
)

BELOW_BOUND_SE = 3.0  # AIS this many paired standard errors below L_k: too few distributions


def ais_evaluate_command(args: argparse.Namespace) -> int:
    """`evaluate RUN_DIR --ais | --bdmc ...`: evaluate_run_ais and evaluate_run_bdmc, each
    summary printed as one JSON line."""
    if args.split != "test":
        raise UserError("--ais scores the test split and --bdmc its own simulated data; "
                        "drop --split train")
    device = resolve_device(args.device)
    settings = {"chains": args.chains, "leapfrog": args.leapfrog, "start": args.ais_start,
                "batch": args.ais_batch, "device": device}
    if args.ais:
        for summary in evaluate_run_ais(args.run_dir, intermediate=args.intermediate, n=args.n,
                                        k=args.k, data_dir=args.data_dir, **settings):
            print(json.dumps(summary))
    if args.bdmc:
        summary = evaluate_run_bdmc(args.run_dir, intermediate=args.intermediate,
                                    simulated=args.simulated, **settings)
        print(json.dumps(summary))
    return 0


def complete_model(run_dir: Path, device: torch.device) -> tuple[RunConfig, IWAEModel, str]:
    """A complete run's final model, frozen, and the digest of its parameters."""
    config, model = load_trained_model(run_dir, device)
    status = (load_result(run_dir) or {}).get("status")
    if status != "complete":
        raise UserError(f"{run_dir} is {status}, not complete; AIS is recorded in result.json "
                        "only for a finished run: finish (or resume) its training first")
    model.requires_grad_(False)
    return config, model, model_digest(model)


def evaluate_run_ais(run_dir: Path, *, intermediate: Sequence[int] | None = None,
                     chains: int = 16, leapfrog: int = 10, start: str = "prior",
                     batch: int = 100, n: int | None = None, k: int = 5000,
                     data_dir: Path = Path("datasets"), device: torch.device | str = "auto",
                     ) -> list[dict[str, Any]]:
    """AIS estimates of log p(x) on a complete run's seeded test subset (n examples; None: all),
    one evaluation per number of intermediate distributions T (default 10,000), each beside
    L_k on the same examples; saved under RUN_DIR/evaluations and recorded in result.json
    (metrics.ais, metrics.ais_evaluations). Returns the summaries; an interrupted evaluation
    resumes with the same numbers when called again."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    config, model, digest = complete_model(run_dir, device)
    dataset = load_dataset(config.data, Path(data_dir))
    inputs = evaluation_inputs(dataset, config, split_n=n)
    x, index = inputs.test[inputs.test_index], inputs.test_index
    return [run_ais_evaluation(run_dir, model, x.to(device), index,
                               AISSettings(steps=T, chains=chains, leapfrog=leapfrog,
                                           start=start, batch=batch), k, digest, device)
            for T in intermediate or (DEFAULT_STEPS,)]


def evaluate_run_bdmc(run_dir: Path, *, intermediate: Sequence[int] | None = None,
                      simulated: int | None = None, chains: int = 16, leapfrog: int = 10,
                      start: str = "prior", batch: int = 100,
                      device: torch.device | str = "auto") -> dict[str, Any]:
    """Bidirectional Monte Carlo on `simulated` examples (default 100) drawn from a complete
    run's model: forward and reverse AIS bound log p(x) from below and above for every number
    of intermediate distributions T (default 100, 1,000, 10,000); saved under
    RUN_DIR/evaluations and recorded in result.json (metrics.bdmc). Returns the summary."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    _, model, digest = complete_model(run_dir, device)
    settings = AISSettings(steps=1, chains=chains, leapfrog=leapfrog, start=start, batch=batch)
    return run_bdmc_evaluation(run_dir, model, simulated or BDMC_DEFAULT_SIMULATED,
                               tuple(intermediate or BDMC_DEFAULT_STEPS), settings, digest)


def model_digest(model: IWAEModel) -> str:
    """Which parameters an evaluation ran on: a run trained further gets a fresh evaluation."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _progress_bar(total: int, name: str) -> tqdm:
    return tqdm(total=total, desc=name, unit="transition", mininterval=2.0, smoothing=0.05)


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = values.size
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


def run_ais_evaluation(run_dir: Path, model: IWAEModel, x: torch.Tensor, index: np.ndarray,
                       settings: AISSettings, k: int, digest: str, device: torch.device
                       ) -> dict[str, Any]:
    """AIS of the examples x (N, 784) of test indices `index`, saved and recorded."""
    n = len(index)
    name = (f"ais_T{settings.steps}_C{settings.chains}_L{settings.leapfrog}_{settings.start}"
            f"_n{n}")
    out = run_dir / EVALUATIONS_DIR
    store = BatchStore(out / f".partial-{name}", {
        "model": digest, "test_index": hashlib.sha256(index.tobytes()).hexdigest(),
        **settings.to_dict()})
    batches = math.ceil(n / settings.batch)
    with _progress_bar(batches * (settings.steps - 1), name) as bar:
        outcome = evaluate_ais(model, x[None], settings, store, bar.update)
    bound, source = bound_on_examples(run_dir, model, x, index, k, device)
    summary = ais_summary(name, outcome, bound, source, k, settings)
    log_px = outcome.log_likelihood[0]
    _save_npz(out / f"{name}.npz", test_index=index, log_px=log_px,
              chain_se=_numpy_chain_se(outcome), log_weights=outcome.log_weights[0],
              acceptance=outcome.acceptance[0], bound=bound)
    atomic_write_json(out / f"{name}.json", summary)
    record_ais(run_dir, name, summary)
    store.remove()
    return summary


def _numpy_chain_se(outcome: AISOutcome) -> np.ndarray:
    return chain_standard_error(torch.from_numpy(outcome.log_weights))[0].numpy()


def bound_on_examples(run_dir: Path, model: IWAEModel, x: torch.Tensor, index: np.ndarray,
                      k: int, device: torch.device) -> tuple[np.ndarray, str]:
    """L_k of the examples: the run's own saved per-example values when they were computed with
    this k and cover these examples, else computed now with the evaluation's noise seed."""
    record = load_result(run_dir) or {}
    metrics = record.get("metrics") or {}
    try:
        # inside the run folder, never unpickled (a RecordError is a ValueError)
        saved = read_array(run_dir, "loglik_test.npy")
        saved_index = read_array(run_dir, "loglik_test_index.npy")
    except (OSError, ValueError):
        saved = saved_index = None
    if saved is not None and metrics.get("eval_k") == k and saved.shape == saved_index.shape:
        position = {int(i): p for p, i in enumerate(saved_index)}
        if all(int(i) in position for i in index):
            return np.array([saved[position[int(i)]] for i in index]), "run"
    return score(model, x, k, device, show_progress=True), "computed"


def ais_summary(name: str, outcome: AISOutcome, bound: np.ndarray, source: str, k: int,
                settings: AISSettings) -> dict[str, Any]:
    log_px = outcome.log_likelihood[0]
    n = log_px.size
    nll, se = _mean_se(-log_px)
    gap, gap_se = _mean_se(log_px - bound)
    bound_nll, bound_se = _mean_se(-bound)
    with np.errstate(all="ignore"):  # T = 1 makes no transition: no acceptance rate
        per_example = np.nanmean(outcome.acceptance[0], axis=0) if settings.steps > 1 else None
    acceptance = None if per_example is None else {
        "mean": float(per_example.mean()), "min_example": float(per_example.min()),
        "max_example": float(per_example.max())}
    return {
        "name": name, "nll": nll, "se": _finite_or_none(se), "n": n, **settings.to_dict(),
        "acceptance": acceptance,
        "chain_se_mean": _finite_or_none(float(np.mean(_numpy_chain_se(outcome)))),
        "bound_k": k, "bound_nll": bound_nll, "bound_se": _finite_or_none(bound_se),
        "bound_source": source,
        "gap": gap, "gap_se": _finite_or_none(gap_se),
        "below_bound": bool(math.isfinite(gap_se) and gap < -BELOW_BOUND_SE * gap_se),
        "seconds": round(outcome.seconds, 3), "seconds_per_example": outcome.seconds / n,
        "resumed_batches": outcome.resumed_batches,
        "file": f"{EVALUATIONS_DIR}/{name}.npz",
    }


def headline_key(summary: dict[str, Any]) -> tuple:
    """The evaluation result.json shows as metrics.ais: most distributions, chains, examples."""
    return summary.get("intermediate", 0), summary.get("chains", 0), summary.get("n", 0)


def record_ais(run_dir: Path, name: str, summary: dict[str, Any]) -> None:
    record = load_result(run_dir)
    if record is None:
        raise UserError(f"{run_dir}/result.json disappeared during the evaluation")
    metrics = record.setdefault("metrics", {})
    evaluations = dict(metrics.get("ais_evaluations") or {})
    evaluations[name] = summary
    metrics["ais_evaluations"] = evaluations
    metrics["ais"] = max(evaluations.values(), key=headline_key)
    write_result(run_dir, record)


def run_bdmc_evaluation(run_dir: Path, model: IWAEModel, simulated: int, steps: tuple[int, ...],
                        settings: AISSettings, digest: str) -> dict[str, Any]:
    name = f"bdmc_C{settings.chains}_L{settings.leapfrog}_{settings.start}_m{simulated}"
    out = run_dir / EVALUATIONS_DIR
    described = {key: value for key, value in settings.to_dict().items()
                 if key != "intermediate"}
    store = BatchStore(out / f".partial-{name}", {"model": digest, "simulated": simulated,
                                                   **described})
    batches = math.ceil(simulated / settings.batch)
    with _progress_bar(batches * sum(2 * (T - 1) for T in steps), name) as bar:
        rows = evaluate_bdmc(model, simulated, steps, settings, store, bar.update)
    for row in rows:
        _save_npz(out / f"{name}_T{row.steps}.npz", lower=row.lower[0], upper=row.upper[0],
                  forward_acceptance=row.forward_acceptance[0],
                  reverse_acceptance=row.reverse_acceptance[0])
    summary = {"name": name, "simulated": simulated, **described,
               "rows": [bdmc_row_summary(row) for row in rows]}
    summary = record_bdmc(run_dir, summary)
    atomic_write_json(out / f"{name}.json", summary)
    store.remove()
    return summary


def bdmc_row_summary(row: BDMCRow) -> dict[str, Any]:
    lower, lower_se = _mean_se(row.lower[0])
    upper, upper_se = _mean_se(row.upper[0])
    gap, gap_se = _mean_se(row.upper[0] - row.lower[0])
    with np.errstate(all="ignore"):
        forward, reverse = (float(np.nanmean(a[0])) for a in (row.forward_acceptance,
                                                               row.reverse_acceptance))
    return {"intermediate": row.steps, "lower": lower, "lower_se": _finite_or_none(lower_se),
            "upper": upper, "upper_se": _finite_or_none(upper_se), "gap": gap,
            "gap_se": _finite_or_none(gap_se),
            "forward_acceptance": _finite_or_none(forward),
            "reverse_acceptance": _finite_or_none(reverse), "seconds": round(row.seconds, 3)}


def record_bdmc(run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write metrics.bdmc; rows of an earlier BDMC with the same settings are kept (by T), so
    that adding a larger T later extends the curve. Returns the summary as recorded."""
    record = load_result(run_dir)
    if record is None:
        raise UserError(f"{run_dir}/result.json disappeared during the evaluation")
    metrics = record.setdefault("metrics", {})
    previous = metrics.get("bdmc") or {}
    same = {k: v for k, v in previous.items() if k != "rows"} == \
        {k: v for k, v in summary.items() if k != "rows"}
    rows = {row["intermediate"]: row for row in (previous.get("rows", []) if same else [])}
    rows.update({row["intermediate"]: row for row in summary["rows"]})
    summary = {**summary, "rows": [rows[T] for T in sorted(rows)]}
    metrics["bdmc"] = summary
    write_result(run_dir, record)
    return summary
