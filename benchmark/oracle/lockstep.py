"""A lockstep case: the suite trains N steps and records its draws; the authors' code trains
the same N steps on them (float32, and float64 for the rounding baseline), and so does the
suite's own float64 twin; then every quantity is compared: initial parameters, step-1 bounds
and gradients, parameters and Adam moments at the snapshot steps, the timestep, the minibatch
order and the stages."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.oracle.arrays import DrawFiles, link_draws, load_npz, save_npz, snapshot_path
from benchmark.oracle.cases import LockstepCase
from benchmark.oracle.compare import (
    BIAS_ULPS,
    LINEAR_LIMIT,
    Quantity,
    relative,
    tolerance,
    tolerance64,
    ulps_apart,
    worst,
)
from benchmark.oracle.suite_side import SuiteRun
from benchmark.training import DataCache, make_plan

OUTPUT_BIAS = "param/p0.logits.b"
SUITE_FLOAT64 = "suite-float64"  # the suite's float64 twin, beside "suite"
KINDS = {"param/": "parameters", "m/": "first moments m", "v/": "second moments v"}


def train_suite(run: SuiteRun, steps: int, snapshots: list[int], folder: Path,
                draws: DrawFiles, step_offset: int = 0, twin: SuiteRun | None = None
                ) -> dict[str, Any]:
    """Steps the suite (and its float64 twin on the same draws), writing its draws, both runs'
    snapshots and what step 1 saw; returns the minibatch rows it read and the steps where a
    binarization uniform equalled its pixel."""
    rows, ties = [], []
    wanted = set(snapshots)
    twin_folder = folder.parent / SUITE_FLOAT64

    def on_step(step: int, slots: dict[str, np.ndarray]) -> None:
        position = step - 1
        draws.write(position, slots)
        rows.append(run.minibatch_rows(position))
        if "u" in slots:  # 1[u < p] (suite) and 1[u <= p] (authors) differ exactly here
            gray = run.member.source.batch(position).numpy()  # served u > 0: ties at p > 0
            if (slots["u"] == gray).any():
                ties.append(step + step_offset)
        for side, where in ((run, folder), (twin, twin_folder)):
            if side is None:
                continue
            if step + step_offset == 1:
                save_npz(where / "step1.npz", {"bounds": side.last_bounds} | side.gradients())
            if step + step_offset in wanted:
                save_npz(snapshot_path(where, step + step_offset), side.state_arrays())

    run.train(steps, on_step, twin)
    draws.close()
    return {"rows": np.stack(rows) if rows else np.zeros((0, 20), np.int64), "ties": ties}


def prepare(case: LockstepCase, data: DataCache, folder: Path) -> dict[str, list[dict]]:
    """The suite's side; returns the authors' tasks per float type."""
    run, twin = SuiteRun(case.config(), data), SuiteRun(case.config(), data, float64=True)
    suite = folder / "suite"
    save_npz(snapshot_path(suite, 0), run.state_arrays())
    trained = train_suite(run, case.steps, case.snapshot_steps(), suite,
                          DrawFiles(folder / "draws", case.steps), twin=twin)
    np.save(suite / "rows.npy", trained["rows"])
    plan = make_plan(case.config(), run.member.dataset.train.shape[0])
    save_npz(suite / "facts.npz", {"ties": np.asarray(trained["ties"], dtype=np.int64),
                                   "lrs": np.asarray([s.lr for s in plan.stages]),
                                   "stage_steps": np.asarray([s.steps for s in plan.stages]),
                                   "per_epoch": np.asarray(plan.steps_per_epoch)})
    tasks: dict[str, list[dict]] = {"float32": [], "float64": []}
    initial = {n[len("param/"):]: v for n, v in load_npz(snapshot_path(suite, 0)).items()
               if n.startswith("param/")}
    for float_type in tasks:
        authors = folder / f"authors-{float_type}"
        link_draws(folder / "draws", authors)
        if float_type == "float64":
            save_npz(authors / "initial_params.npz", initial)
        tasks[float_type].append({"task": "train", "folder": str(authors),
                                  "layers": case.layers, "model": case.model, "k": case.k,
                                  "dataset": case.authors_dataset, "steps": case.steps,
                                  "snapshots": case.snapshot_steps()})
    if case.eval_k:
        from benchmark.oracle.evaluation import prepare_evaluation

        for float_type, more in prepare_evaluation(run, case, folder / "evaluation").items():
            tasks[float_type] += more
    return tasks


def compare(case: LockstepCase, folder: Path) -> tuple[list[Quantity], list[dict]]:
    """Every quantity of the case against its tolerance, and the curve of differences."""
    suite, a32, a64 = folder / "suite", folder / "authors-float32", folder / "authors-float64"
    s64 = folder / SUITE_FLOAT64
    out: list[Quantity] = []
    out += compare_initial(case.id, load_npz(snapshot_path(suite, 0)),
                           load_npz(snapshot_path(a32, 0)))
    out += compare_step1(case.id, case.model, *(load_npz(f / "step1.npz")
                                                for f in (suite, a32, a64, s64)))
    curve = training_curve(case.snapshot_steps(), suite, a32, a64, s64)
    out += curve_quantities(case.id, case.steps, curve)
    out.append(compare_rows(case.id, np.load(suite / "rows.npy"), np.load(a32 / "indices.npy")))
    facts = load_npz(suite / "facts.npz")
    out.append(compare_stages(case.id, facts, read_result(a32)["stages"], case.steps))
    if facts["ties"].size:
        out.append(Quantity(case.id, "draws where u == p > 0 (1[u < p] against their 1[u <= p])",
                            float(facts["ties"].size), float("inf"),
                            f"at steps {facts['ties'].tolist()}: a deliberate difference"))
    if case.eval_k:
        from benchmark.oracle.evaluation import compare_evaluation

        out += compare_evaluation(case.id, folder / "evaluation")
    return out, curve


def read_result(folder: Path) -> dict[str, Any]:
    import json

    result = json.loads((folder / "result.json").read_text())
    if "error" in result:
        raise RuntimeError(f"the authors' code failed in {folder}: {result['error']}")
    return result


def compare_initial(case: str, suite: dict, authors: dict) -> list[Quantity]:
    weights = [n for n in authors if n.startswith("param/") and n != OUTPUT_BIAS]
    differing = sum(int(not np.array_equal(suite[n], authors[n])) for n in weights)
    return [
        Quantity(case, "initial weights and biases (bitwise)", float(differing), 0.0,
                 f"{differing} of {len(weights)} arrays differ"),
        Quantity(case, "initial output bias (float32 ulps)",
                 float(ulps_apart(suite[OUTPUT_BIAS], authors[OUTPUT_BIAS])), float(BIAS_ULPS),
                 "logit of the mean training pixel"),
    ]


def compare_step1(case: str, model: str, suite: dict, a32: dict, a64: dict, s64: dict
                  ) -> list[Quantity]:
    """Tolerances from the larger of the two sides' rounding (each float32 run against its own
    float64 run); the two float64 runs against each other as well."""
    bound = f"{model}_bound"
    rounding_b = max(relative(a32[bound], a64[bound]), relative(suite["bounds"], s64["bounds"]))
    grads_s = {n: v for n, v in suite.items() if n.startswith("grad/")}
    grads_64 = {n: v for n, v in s64.items() if n.startswith("grad/")}
    measured_g, name_g = worst(grads_s, a32, "grad/")
    theirs_g, mine_g = worst(a32, a64, "grad/")[0], worst(grads_s, s64, "grad/")[0]
    rounding_g = max(theirs_g, mine_g)
    float64_b = relative(s64["bounds"], a64[bound])
    float64_g, name_64 = worst(grads_64, a64, "grad/")
    return [
        Quantity(case, "step-1 per-example bounds", relative(suite["bounds"], a32[bound]),
                 tolerance(rounding_b), f"rounding (larger side): {rounding_b:.1e}"),
        Quantity(case, "step-1 gradients", measured_g, tolerance(rounding_g),
                 f"worst {name_g[5:]}; rounding theirs {theirs_g:.1e}, suite's {mine_g:.1e}"),
        Quantity(case, "step-1 bounds, float64 runs", float64_b, tolerance64(rounding_b),
                 "the suite's float64 twin against theirs"),
        Quantity(case, "step-1 gradients, float64 runs", float64_g, tolerance64(rounding_g),
                 f"worst {name_64[5:]}; the suite's float64 twin against theirs"),
    ]


def training_curve(steps: list[int], suite: Path, a32: Path, a64: Path, s64: Path
                   ) -> list[dict]:
    """Per snapshot step and kind: the suite against the authors in float32 ("measured"), each
    side's rounding (its float32 run against its float64 run), the tolerance from the larger,
    and the two float64 runs against each other."""
    curve = []
    for step in steps:
        s, t32, t64, d64 = (load_npz(snapshot_path(f, step)) for f in (suite, a32, a64, s64))
        row: dict[str, Any] = {"step": step, "timestep_suite": float(s["t"]),
                               "timestep_authors": float(t32["t"])}
        for prefix, label in KINDS.items():
            measured, name = worst(s, t32, prefix)
            theirs, mine = worst(t32, t64, prefix)[0], worst(s, d64, prefix)[0]
            rounding = max(theirs, mine)
            row[label] = {"measured": measured, "rounding": rounding,
                          "rounding_authors": theirs, "rounding_suite": mine,
                          "tolerance": tolerance(rounding), "worst": name,
                          "float64": worst(d64, t64, prefix)[0],
                          "tolerance64": tolerance64(rounding)}
        curve.append(row)
    return curve


def curve_quantities(case: str, steps: int, curve: list[dict]) -> list[Quantity]:
    out = []
    for label in KINDS.values():
        ratios = [(row[label]["measured"] / row[label]["tolerance"], row) for row in curve]
        ratio, row = max(ratios, key=lambda r: r[0])
        last = curve[-1][label]
        out.append(Quantity(case, f"{label}, steps 1-{steps}", row[label]["measured"],
                            row[label]["tolerance"],
                            f"tightest at step {row['step']} ({row[label]['worst']}); at step "
                            f"{curve[-1]['step']}: {last['measured']:.1e} (rounding "
                            f"{last['rounding']:.1e})"))
        linear = linear_regime(curve, label)
        ratios = [(row[label]["float64"] / row[label]["tolerance64"], row) for row in linear]
        ratio, row = max(ratios, key=lambda r: r[0])
        past = (f"; past it (float32 rounding above {LINEAR_LIMIT:g}), at step "
                f"{curve[-1]['step']}: {last['float64']:.1e}, not judged"
                if len(linear) < len(curve) else "")
        out.append(Quantity(case, f"{label}, float64 runs, steps 1-{linear[-1]['step']}",
                            row[label]["float64"], row[label]["tolerance64"],
                            f"tightest at step {row['step']}{past}"))
    wrong = [row["step"] for row in curve if row["timestep_suite"] != row["timestep_authors"]]
    out.append(Quantity(case, "Adam timestep", float(len(wrong)), 0.0,
                        "equal at every snapshot" if not wrong else f"differs at {wrong}"))
    return out


def linear_regime(curve: list[dict], label: str) -> list[dict]:
    """The snapshots up to the last where float32 rounding (the larger side) is below
    LINEAR_LIMIT: where the float64 runs' differences are still a fixed fraction of it.
    Step 1 always counts."""
    linear = list(itertools.takewhile(lambda row: row[label]["rounding"] <= LINEAR_LIMIT,
                                      curve))
    return linear or curve[:1]


def compare_rows(case: str, suite_rows: np.ndarray, authors_index: np.ndarray) -> Quantity:
    """The suite reads rows [20 i, 20 i + 20) at the step where the authors pass index i."""
    expected = authors_index[:, None] * 20 + np.arange(20)[None, :]
    same = suite_rows.shape == expected.shape and np.array_equal(suite_rows, expected)
    return Quantity(case, "minibatch order", 0.0 if same else 1.0, 0.0,
                    f"{len(authors_index)} steps; their index sequence "
                    f"{authors_index[:3].tolist()}...{authors_index[-2:].tolist()}")


def compare_stages(case: str, facts: dict, stages: list[dict], steps: int) -> Quantity:
    """The learning rate and length of every stage their code entered (or, dry, all eight)
    against the suite's plan, exactly."""
    per_epoch = int(facts["per_epoch"])
    mismatched = [i for i, stage in enumerate(stages)
                  if i >= len(facts["lrs"]) or stage["learning_rate"] != float(facts["lrs"][i])
                  or stage["n_epochs"] * per_epoch != int(facts["stage_steps"][i])]
    return Quantity(case, "stages (learning rate, steps)", float(len(mismatched)), 0.0,
                    f"{len(stages)} stage(s) within {steps} steps: learning rates "
                    f"{[s['learning_rate'] for s in stages]}")
