"""A small results tree that looks like real sweeps, for the report tests.

It holds complete full-protocol runs (two seeds in one cell), cut runs (quick and smoke),
a run that failed on a non-finite loss, runs still in progress, an OMNIGLOT condition whose data
is missing, a Section 5.2 continuation, a run of the other fidelity, and grid cells with no run.
Values are close to the paper's but chosen so that some cells agree and some differ.
"""

from __future__ import annotations

import copy
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.config import CONTINUATION_EPOCHS, PROTOCOL_EPOCHS
from benchmark.records.results import write_result

STAGE_STARTS = (0, 1, 4, 13, 40, 121, 364, 1093)
CURVE_EPOCHS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 13, 20, 40, 80, 121, 200, 364, 600, 1093,
                2000, 3280)
ENVIRONMENT = {
    "package_version": "0.1.0", "torch": "2.13.0+cpu", "python": "3.11.9",
    "device": "cuda", "git_commit": "3f2c1a9e8b7d6c5f4e3d2c1b0a9f8e7d6c5b4a39",
    "dataset_sha256": {
        "mnist/train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "binarized_mnist/binarized_mnist_test.amat":
            "3ae6d87ce3cf4e1e9c5b0c54d1b1d9bb8e6d2d73cb06b24be6e0bca3c0a1e2a1",
    },
    "dataset_catalogue": "built-in",
    "execution": {"numerics": "exact", "group_size": 2, "compiled": False, "cuda_graphs": True,
                  "tf32": False, "flush_denormal": False,
                  "numerics_segments": [{"from_step": 0, "numerics": "exact"}]},
}


@dataclass(frozen=True)
class Spec:
    data: str
    model: str
    k: int
    layers: int
    kind: str  # full | quick | smoke | failed | running | unavailable
    nll: float | None = None
    units: tuple[int, ...] = ()
    seed: int = 0
    fidelity: str = "code"
    sweep: str = "table1"
    init_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def schedule(self) -> str:
        return self.kind if self.kind in ("full", "quick", "smoke") else "full"

    @property
    def run_id(self) -> str:
        """Named as benchmark.config.run_id names runs (init_from holds the base run's id)."""
        if self.init_from:
            return f"{self.init_from}_to_{self.model}_k{self.k}"
        name = (f"{self.data}_{self.model}_k{self.k}_L{self.layers}_s{self.seed}_"
                f"{self.fidelity}_{self.schedule}")
        return name + ("_steps50" if self.kind == "smoke" else "")


DYN, FIX, OMNI = "mnist-dynamic", "mnist-fixed", "omniglot"
MISSING_OMNIGLOT = ("data file missing: datasets/omniglot/chardata.mat "
                    "(run `python -m benchmark fetch omniglot`)")
FAILURE_REASON = "non-finite loss (nan) in the training objective"
FAILED_STEP = 48211

SPECS: tuple[Spec, ...] = (
    Spec(DYN, "vae", 1, 1, "full", 86.80, (19,)),
    Spec(DYN, "iwae", 1, 1, "full", 86.71, (19,)),
    Spec(DYN, "vae", 5, 1, "quick", 88.93, (18,)),
    Spec(DYN, "iwae", 5, 1, "quick", 88.12, (21,)),
    Spec(DYN, "vae", 50, 1, "full", 86.41, (20,)),
    Spec(DYN, "iwae", 50, 1, "full", 84.74, (25,)),
    Spec(DYN, "iwae", 50, 1, "full", 84.88, (24,), seed=1),
    Spec(DYN, "vae", 1, 2, "full", 85.40, (16, 5)),
    Spec(DYN, "vae", 5, 2, "failed"),
    Spec(DYN, "iwae", 5, 2, "running"),
    Spec(DYN, "vae", 50, 2, "full", 85.31, (17, 5)),
    Spec(DYN, "iwae", 50, 2, "full", 82.97, (26, 7)),
    Spec(FIX, "vae", 1, 1, "quick", 90.14, (19,), sweep="binarization"),
    Spec(FIX, "iwae", 1, 1, "quick", 90.02, (19,), sweep="binarization"),
    Spec(FIX, "vae", 5, 1, "smoke", 180.22, (3,), sweep="binarization"),
    Spec(FIX, "iwae", 50, 1, "full", 87.15, (24,), sweep="binarization"),
    Spec(FIX, "iwae", 50, 2, "running", sweep="binarization"),
    *(Spec(OMNI, m, k, n, "unavailable") for m in ("vae", "iwae") for k in (1, 5, 50)
      for n in (1, 2)),
    Spec(DYN, "iwae", 50, 2, "quick", 86.04, (22, 6), fidelity="paper"),
    Spec(DYN, "iwae", 50, 1, "full", 84.95, (22,), sweep="table2",
         init_from="mnist-dynamic_vae_k1_L1_s0_code_full"),
)


def _epochs(spec: Spec) -> tuple[float, float]:
    """(epochs done, epochs total) for the spec's kind."""
    total = CONTINUATION_EPOCHS if spec.init_from else PROTOCOL_EPOCHS
    done = {"full": total, "quick": 40, "smoke": 0.02, "failed": 16.18, "running": 121,
            "unavailable": 0}[spec.kind]
    return float(done), float(total)


def _config(spec: Spec, results: Path) -> dict[str, Any]:
    # The sweep records the base run's absolute directory, as benchmark.sweeps.grids does.
    init_from = str((results / "table1" / spec.init_from).resolve()) if spec.init_from else None
    return {"data": spec.data, "model": spec.model, "k": spec.k, "layers": spec.layers,
            "seed": spec.seed, "fidelity": spec.fidelity, "schedule": spec.schedule,
            "stages": None, "epochs": None, "steps": 50 if spec.kind == "smoke" else None,
            "eval_k": 100 if spec.kind == "smoke" else 5000,
            "eval_n": 500 if spec.kind == "smoke" else None, "device": "auto",
            "init_from": init_from, "batch_size": 20}


def _unit_variances(units: tuple[int, ...], rng: np.random.Generator) -> list[list[float]]:
    """Bimodal log-variances as in the paper's Appendix C: active near 1, inactive near 1e-4."""
    sizes = (100, 50)
    out = []
    for layer, active in enumerate(units):
        logs = np.concatenate([rng.normal(-0.2, 0.35, active),
                               rng.normal(-4.0, 0.5, sizes[layer] - active)])
        out.append([float(v) for v in 10.0**logs])
    return out


def _metrics(spec: Spec, rng: np.random.Generator) -> dict[str, Any]:
    eval_k = 100 if spec.kind == "smoke" else 5000
    eval_n = 500 if spec.kind == "smoke" else (8070 if spec.data == OMNI else 10000)
    gap = {DYN: 0.7, FIX: 3.4, OMNI: 2.5}[spec.data]
    return {"test_nll": spec.nll, "test_nll_se": 0.21 if spec.kind == "smoke" else 0.03,
            "train_nll": round(spec.nll - gap - rng.uniform(-0.05, 0.05), 3),
            "train_nll_se": 0.03, "train_eval_n": 2000,
            "active_units": list(spec.units),
            "unit_variances": _unit_variances(spec.units, rng),
            "test_nll_pruned": round(spec.nll + 0.01, 3), "eval_k": eval_k, "eval_n": eval_n}


def _record(spec: Spec, results: Path, rng: np.random.Generator) -> dict[str, Any]:
    done, total = _epochs(spec)
    status = {"full": "complete", "quick": "complete", "smoke": "complete"}.get(spec.kind,
                                                                                  spec.kind)
    record: dict[str, Any] = {
        "run_id": spec.run_id, "sweep": spec.sweep, "config": _config(spec, results),
        "status": status,
        "reason": MISSING_OMNIGLOT if spec.kind == "unavailable" else None,
        "failure": None,
        "progress": {"epochs": done, "epochs_planned": done if spec.kind != "running" else total,
                     "epochs_total": total, "steps": int(done * 2980), "stage": 0},
        "curves": "metrics.csv", "environment": ENVIRONMENT,
        "timing": ({"train_s": done * 2.9 + 12.0, "eval_s": 95.0}
                   if spec.kind != "unavailable" else None),
        "command": f"python -m benchmark train --data {spec.data} --model {spec.model} "
                   f"--k {spec.k} --layers {spec.layers}",
    }
    if spec.kind == "failed":
        record["failure"] = {"step": FAILED_STEP, "epoch": done, "reason": FAILURE_REASON}
        record["reason"] = FAILURE_REASON
    if spec.nll is not None:
        record["metrics"] = _metrics(spec, rng)
        record["artifacts"] = {"test_loglik": "loglik_test.npy", "samples": "samples.npy",
                               "reconstructions": "reconstructions.npy"}
    return record


def _write_curve(run_dir: Path, spec: Spec, rng: np.random.Generator) -> None:
    done, _ = _epochs(spec)
    final = spec.nll if spec.nll is not None else 95.0
    rows = []
    for epoch in (e for e in CURVE_EPOCHS if e <= done):
        stage = sum(epoch > s for s in STAGE_STARTS) - 1
        bound = final + 1.2 + 90.0 / (1.0 + 8.0 * epoch) + rng.normal(0, 0.05)
        rows.append({"epoch": epoch, "step": int(epoch * 2980), "stage": max(stage, 0),
                     "lr": 1e-3 * 10 ** (-max(stage, 0) / 7), "train_bound_nll": round(bound, 3),
                     "test_nll_subset": round(bound - 0.8, 3), "subset_k": 100,
                     "subset_n": 500, "seconds": round(epoch * 2.9, 1)})
    with open(run_dir / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["epoch"])
        writer.writeheader()
        writer.writerows(rows)


def _write_arrays(run_dir: Path, rng: np.random.Generator) -> None:
    # Blobs on a dark background: enough structure to see a grid render, kilobytes on disk.
    yy, xx = np.mgrid[0:28, 0:28]
    centres = rng.uniform(8, 20, size=(64, 2))
    samples = np.exp(-((yy[None] - centres[:, 0, None, None]) ** 2
                       + (xx[None] - centres[:, 1, None, None]) ** 2) / 18.0)
    samples = samples.reshape(64, 784).astype(np.float32)
    np.save(run_dir / "samples.npy", samples)
    inputs = (samples[:32] > 0.5).astype(np.float32)
    np.save(run_dir / "reconstructions.npy", np.stack([inputs, samples[:32] * 0.9]))
    np.save(run_dir / "loglik_test.npy", -rng.normal(85.0, 20.0, size=100))


def build_results_tree(root: Path, specs: tuple[Spec, ...] = SPECS) -> Path:
    """Write the fixture runs under root/results and return that folder."""
    results = Path(root) / "results"
    rng = np.random.default_rng(20151102)
    for spec in specs:
        run_dir = results / spec.sweep / spec.run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        write_result(run_dir, _record(spec, results, rng))
        if spec.kind in ("full", "quick", "smoke", "failed", "running"):
            _write_curve(run_dir, spec, rng)
        if spec.nll is not None and spec.kind != "smoke":
            _write_arrays(run_dir, rng)
    return results


# --- a record whose every string is markup (issue 30: it must reach the page escaped) ---------

SCRIPT = "<script>document.body.setAttribute('data-pwned', '1')</script>"
IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', '1')\">"


def hostile_record(record: dict[str, Any], status: str) -> dict[str, Any]:
    """Every string field of `record` (and the keys of its free-form maps) prefixed with markup
    that would run if it reached the page raw; status, checked against its choices, cannot."""
    def poison(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {(poison(k) if key in ("dataset_sha256", "artifacts") else k):
                    poison(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [poison(v, key) for v in value]
        if isinstance(value, str) and key != "status":
            return f"{SCRIPT}{IMG}{value}"
        return value

    out = poison(copy.deepcopy(record))
    out.update(status=status, reason=f"{SCRIPT}{IMG}",
               failure={"step": 3, "epoch": 0.1, "reason": f"{IMG}{SCRIPT}"})
    return out


def build_hostile_tree(root: Path, specs: tuple[Spec, ...]) -> Path:
    """The fixture runs of `specs`, beside a complete and a failed run whose records hold markup
    in every string, in a folder whose name is markup too."""
    results = build_results_tree(root, specs)
    rng = np.random.default_rng(30)
    record = _record(specs[0], results, rng)
    record["metrics"] = _metrics(Spec(DYN, "iwae", 5, 1, "full", 85.0, (20,)), rng)
    for status in ("complete", "failed"):
        run_dir = results / f"{SCRIPT}{IMG}".replace("/", "_") / status
        run_dir.mkdir(parents=True)
        write_result(run_dir, hostile_record(record, status))
    return results
