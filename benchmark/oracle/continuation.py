"""Section 5.2: what a continuation carries over, the authors' experiment2 against the suite's
--init-from, and the two trained in lockstep across the switch (VAE k=1, then IWAE k=50)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from benchmark.config import RunConfig
from benchmark.data import DynamicBinarizer
from benchmark.oracle.arrays import DrawFiles, link_draws, load_npz, save_npz, snapshot_path
from benchmark.oracle.cases import AUTHORS_DATASET, ContinuationCase
from benchmark.oracle.compare import Quantity
from benchmark.oracle.lockstep import (
    SUITE_FLOAT64,
    compare_initial,
    curve_quantities,
    read_result,
    train_suite,
    training_curve,
)
from benchmark.oracle.suite_side import SuiteRun
from benchmark.records import load_latest_checkpoint, save_checkpoint
from benchmark.training import DataCache


def prepare(case: ContinuationCase, data: DataCache, folder: Path) -> dict[str, list[dict]]:
    suite = folder / "suite"
    parent_dir = folder / "parent-run"
    parent_config = RunConfig(case.data, "vae", 1, 1, steps=case.first)
    parent = SuiteRun(parent_config, data)
    parent_twin = SuiteRun(parent_config, data, float64=True)
    save_npz(snapshot_path(suite, 0), parent.state_arrays())
    train_suite(parent, case.first, case.snapshot_steps(), suite,
                DrawFiles(folder / "draws", case.first, segment=0), twin=parent_twin)
    save_checkpoint(parent_dir, parent.payload())
    payload = load_latest_checkpoint(parent_dir)
    assert payload is not None
    child_config = RunConfig(case.data, "iwae", 50, 1, init_from=str(parent_dir),
                             steps=case.then)
    child = SuiteRun(child_config, data)
    child.continue_from(payload)
    carried = carried_over(parent, child, payload)
    child_twin = SuiteRun(child_config, data, float64=True)
    child_twin.adopt_state(parent_twin)  # the float64 twin continues in float64
    train_suite(child, case.then, case.snapshot_steps(), suite,
                DrawFiles(folder / "draws", case.then, segment=1), step_offset=case.first,
                twin=child_twin)
    save_npz(suite / "carried.npz", carried)
    tasks: dict[str, list[dict]] = {"float32": [], "float64": []}
    initial = {n[len("param/"):]: v for n, v in load_npz(snapshot_path(suite, 0)).items()
               if n.startswith("param/")}
    for float_type in tasks:
        authors = folder / f"authors-{float_type}"
        link_draws(folder / "draws", authors)
        if float_type == "float64":
            save_npz(authors / "initial_params.npz", initial)
        dataset = AUTHORS_DATASET[case.data]
        tasks[float_type].append({
            "task": "continue", "folder": str(authors), "layers": 1, "model": "vae", "k": 1,
            "dataset": dataset, "steps": case.first, "continuation_steps": case.then,
            "direction": "vae_to_iwae", "snapshots": case.snapshot_steps(),
            "first_run": {"layers": 1, "model": "vae", "k": 1, "dataset": dataset,
                          "exp": "train"}})
    tasks["float32"].append({"task": "carry", "folder": str(folder / "authors-carry"),
                             "layers": 1, "model": "vae", "k": 1, "dataset": dataset})
    (folder / "authors-carry").mkdir(parents=True, exist_ok=True)
    return tasks


def carried_over(parent: SuiteRun, child: SuiteRun, payload: dict) -> dict[str, np.ndarray]:
    """What the child starts with, against the parent's end: parameters, moments, timestep,
    and whether its first binarization draw is the parent's next one (the stream continues)."""
    before, after = parent.state_arrays(), child.state_arrays()
    state_equal = all(np.array_equal(before[n], after[n]) for n in before)
    binarizer = DynamicBinarizer(0, "cpu")
    binarizer.load_state_dict(payload["rng"]["binarizer"])
    parents_next = torch.rand((20, 784), generator=binarizer.generator).numpy()
    generator = child.member.binarizer.generator
    saved = generator.get_state()
    childs_first = torch.rand((20, 784), generator=generator).numpy()
    generator.set_state(saved)  # a look, not a draw: training takes this draw next
    return {"state_equal": np.asarray(state_equal), "timestep": after["t"],
            "parent_timestep": before["t"],
            "stream_continues": np.asarray(np.array_equal(parents_next, childs_first)),
            "child_lr": np.asarray(child.member.plan.stage_at(0).lr)}


def compare(case: ContinuationCase, folder: Path) -> tuple[list[Quantity], list[dict]]:
    suite, a32, a64 = folder / "suite", folder / "authors-float32", folder / "authors-float64"
    out = compare_initial(case.id, load_npz(snapshot_path(suite, 0)),
                          load_npz(snapshot_path(a32, 0)))
    curve = training_curve(case.snapshot_steps(), suite, a32, a64, folder / SUITE_FLOAT64)
    out += curve_quantities(case.id, case.first + case.then, curve)
    stages = read_result(a32)["stages"]
    carried = load_npz(suite / "carried.npz")
    theirs = read_result(folder / "authors-carry")
    lr_then = stages[-1]["learning_rate"]
    out.append(Quantity(case.id, "continuation: learning rate, k and objective",
                        0.0 if (lr_then == float(carried["child_lr"])
                                and stages[-1]["num_samples"] == 50
                                and stages[-1]["model_type"] == "iwae") else 1.0, 0.0,
                        f"theirs {lr_then} / k {stages[-1]['num_samples']} / "
                        f"{stages[-1]['model_type']}; suite {float(carried['child_lr'])}"))
    both_carry = bool(carried["state_equal"]) and theirs["state_equal"]
    out.append(Quantity(case.id, "continuation carries parameters, m, v and timestep",
                        0.0 if both_carry else 1.0, 0.0,
                        f"suite timestep {float(carried['parent_timestep']):g} -> "
                        f"{float(carried['timestep']):g}; theirs through their checkpoint: "
                        f"{theirs['state_equal']}"))
    out.append(Quantity(case.id, "continuation carries the random stream",
                        0.0 if (bool(carried["stream_continues"]) and theirs["rstate_equal"])
                        else 1.0, 0.0,
                        "suite: the generators continue (first draw = the parent's next); "
                        "theirs: srng.rstate is restored, so new random ops start where the "
                        "parent's stream would start its next op, not at a fresh seed 123 "
                        f"({not theirs['equals_fresh_seed_123']}) and not by continuing the "
                        f"parent's ops ({not theirs['continues_old_draws']}): both continue, "
                        "neither restarts"))
    return out, curve
