"""Evaluation on one trained model (the suite's parameters, loaded into the authors' model):
L_k per example with shared noise (their measure_marginal_log_likelihood), the unit variances
and active-unit counts (get_units_variances), and L_k after pruning
(chop_units_with_variance_under_threshold)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.evaluation import (
    EVAL_SUBSET_SEED,
    active_unit_masks,
    count_active_units,
    fresh_generators,
    random_subset,
    score,
    unit_variances,
)
from benchmark.oracle.arrays import load_npz, save_npz, save_slots
from benchmark.oracle.capture import DrawRecorder
from benchmark.oracle.cases import LockstepCase
from benchmark.oracle.compare import Quantity, relative, tolerance
from benchmark.oracle.layout import LayoutError, evaluation_slots, units_slots
from benchmark.oracle.suite_side import SuiteRun

KEEP_BINARY = 0.5  # served as their binarization uniform: 1[0.5 <= x] leaves 0/1 data as it is


def prepare_evaluation(run: SuiteRun, case: LockstepCase, folder: Path) -> dict[str, list]:
    """Scores the suite's trained model as its evaluation does, recording the noise; writes
    what the authors' evaluate task reads. Returns its tasks per float type."""
    assert case.eval_k is not None
    model, inputs, device = run.state.model, run.member.inputs, torch.device("cpu")
    k, layers = case.eval_k, case.layers
    x = inputs.test[random_subset(inputs.test.shape[0], case.eval_n, EVAL_SUBSET_SEED)]
    with DrawRecorder() as recorder:
        ll = score(model, x, k, device)
    eval_slots = evaluation_slots(recorder.take(), layers, k, x.shape[0])
    units_x = inputs.active_units
    with DrawRecorder() as recorder:
        variances = unit_variances(model, units_x[None], fresh_generators(1, device))
    u_slots = units_slots(recorder.take(), layers)
    masks = active_unit_masks(variances)
    with DrawRecorder() as recorder:
        pruned = score(model, x, k, device, masks=masks)
    pruned_slots = evaluation_slots(recorder.take(), layers, k, x.shape[0])
    if any(not np.array_equal(pruned_slots[s], eval_slots[s]) for s in eval_slots):
        raise LayoutError("the suite's pruned evaluation drew other noise than the unpruned")
    if run.dynamic:
        eval_slots["u"] = np.full((x.shape[0], 1, x.shape[1]), KEEP_BINARY, np.float32)
        u_slots["u"] = np.full((1, *units_x.shape), KEEP_BINARY, np.float32)
    save_slots(folder / "eval_draws", eval_slots)
    save_slots(folder / "units_draws", u_slots)
    counts = count_active_units(variances)
    save_npz(folder / "suite.npz", {"per_example": ll, "pruned_per_example": pruned,
                                    "active_units": np.asarray([int(c[0]) for c in counts])}
             | {f"variances/{i}": v[0] for i, v in enumerate(variances)}
             | {f"mask/{i}": m[0].numpy() for i, m in enumerate(masks)})
    state = run.state_arrays()
    params = {n[len("param/"):]: v for n, v in state.items() if n.startswith("param/")}
    tasks: dict[str, list] = {}
    for float_type in ("float32", "float64"):
        authors = folder / f"authors-{float_type}"
        authors.mkdir(parents=True, exist_ok=True)
        save_npz(authors / "params.npz", params)
        np.save(authors / "test_x.npy", x.numpy())
        np.save(authors / "units_x.npy", units_x.numpy())
        for name in ("eval_draws", "units_draws"):
            link = authors / name
            if not link.exists():
                link.symlink_to((folder / name).resolve(), target_is_directory=True)
        tasks[float_type] = [{"task": "evaluate", "folder": str(authors), "layers": layers,
                              "model": case.model, "k": k, "dataset": case.authors_dataset}]
    return tasks


def compare_evaluation(case: str, folder: Path) -> list[Quantity]:
    suite = load_npz(folder / "suite.npz")
    a32 = load_npz(folder / "authors-float32" / "evaluation.npz")
    a64 = load_npz(folder / "authors-float64" / "evaluation.npz")
    n = suite["per_example"].shape[0]
    out = []
    for key, label in (("per_example", "L_k per example"),
                       ("pruned_per_example", "L_k per example after pruning")):
        rounding = relative(a32[key], a64[key])
        diff = float(np.max(np.abs(suite[key] - a32[key])))
        out.append(Quantity(case, label, relative(suite[key], a32[key]), tolerance(rounding),
                            f"{n} test examples; largest difference {diff:.2e} nats; mean "
                            f"{-suite[key].mean():.3f} vs {-a32[key].mean():.3f} (NLL)"))
    layers = sum(1 for name in suite if name.startswith("variances/"))
    for layer in range(layers):
        key = f"variances/{layer}"
        rounding = relative(a32[key], a64[key])
        out.append(Quantity(case, f"unit variances, layer {layer + 1}",
                            relative(suite[key], a32[key]), tolerance(rounding),
                            f"float32 vs float64 of theirs: {rounding:.1e}"))
        kept_theirs = set(a32[f"kept/{layer}"].tolist())
        kept_ours = set(np.flatnonzero(suite[f"mask/{layer}"]).tolist())
        out.append(Quantity(case, f"active units, layer {layer + 1}",
                            float(len(kept_theirs ^ kept_ours)), 0.0,
                            f"suite {len(kept_ours)}, authors {len(kept_theirs)} active; units "
                            "counted differently: "
                            f"{sorted(kept_theirs ^ kept_ours) or 'none'}"))
    return out
