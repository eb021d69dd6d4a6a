"""The independent comparison (`python -m benchmark oracle --independent`): the suite and the
authors' code each train one configuration with their own random streams (the suite with its
seeds, their code with its own seed 123, unmodified), and both are scored by L_k (k = 5000) on
ONE binary test set: the suite's seeded random test subset, binarized once as the suite's
evaluation does, handed to their measure_marginal_log_likelihood as the test split.

Unlike the lockstep, nothing is shared but the data, so the two sides agree only statistically:
the verdict (independent_records.py) asks whether their result lies where another seed of the
suite would. The suite's seeds train together as one stacked group (each member draws from its
own generators, as a run of its own does) and can be scored at several lengths of one run
(`--spread`: how the spread across seeds shrinks with training).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.config import RunConfig
from benchmark.data import DataUnavailable
from benchmark.errors import UserError
from benchmark.evaluation import score_members
from benchmark.models import bound
from benchmark.oracle.authors_run import Job, run_jobs
from benchmark.oracle.cases import AUTHORS_DATASET, STEPS_PER_EPOCH
from benchmark.oracle.environment import oracle_env, oracle_python
from benchmark.oracle.sources import fetch_authors_code
from benchmark.training import (
    DataCache,
    EagerStep,
    ExecutionOptions,
    StackedState,
    StepSpec,
    flush_denormals,
    loss_reduction,
    new_member,
)

AUTHORS_EVAL_MINIBATCH = 20  # their measure_marginal_log_likelihood's default, as post_experiment


@dataclass(frozen=True)
class IndependentCase:
    data: str
    model: str
    k: int
    layers: int

    @property
    def id(self) -> str:
        return f"{self.data}_{self.model}_k{self.k}_L{self.layers}"


@dataclass(frozen=True)
class IndependentSettings:
    epochs: float = 1.0
    seeds: int = 3
    eval_n: int = 200
    eval_k: int = 5000
    steps: int | None = None  # overrides epochs (tests: a few steps)

    def steps_for(self, data: str) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, round(self.epochs * STEPS_PER_EPOCH[data]))


def independent_cases() -> list[IndependentCase]:
    """What the issue asks for: one-layer VAE k=1, one-layer IWAE k=5 and a two-layer model
    (IWAE k=5), on dynamic and on fixed MNIST."""
    return [IndependentCase(d, m, k, layers) for d in ("mnist-dynamic", "mnist-fixed")
            for m, k, layers in (("vae", 1, 1), ("iwae", 5, 1), ("iwae", 5, 2))]


def test_set_digest(x: np.ndarray) -> str:
    """sha256 of a binary test set as bytes of 0/1 (what each side actually scored)."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.uint8).tobytes()).hexdigest()


# --- the suite's side ---------------------------------------------------------------------------

def suite_scores(case: IndependentCase, seeds: Sequence[int], score_at: Sequence[int],
                 eval_n: int, eval_k: int, data: DataCache, show_progress: bool = True
                 ) -> tuple[dict[int, np.ndarray], np.ndarray, float]:
    """Trains one member per seed (one stacked group, code fidelity, exact numerics, CPU) and
    scores every member by L_eval_k on the suite's seeded test subset after each step count in
    score_at. Returns ({steps: per-example L (seeds, eval_n)}, the scored binary test set,
    seconds)."""
    started = time.perf_counter()
    device = torch.device("cpu")
    last = max(score_at)
    configs = [RunConfig(data=case.data, model=case.model, k=case.k, layers=case.layers,
                         seed=s, steps=last, eval_n=eval_n, eval_k=eval_k) for s in seeds]
    options = ExecutionOptions()
    members = [new_member(c, Path("."), None, None, data, device, options, len(configs))
               for c in configs]
    state = StackedState.fresh(members, device, fused=False)
    spec = StepSpec(k=case.k, reduction=loss_reduction("code"),
                    objectives=tuple(c.model for c in configs))
    step = EagerStep(state, members, spec, bound)
    inputs = members[0].inputs
    x = inputs.test[inputs.test_index]
    scores: dict[int, np.ndarray] = {}
    current_lr = None
    with flush_denormals(True), tqdm(total=last, unit="step", disable=not show_progress,
                                     desc=f"suite {case.id} ({len(seeds)} seeds)") as bar:
        for done in range(1, last + 1):
            lr = members[0].plan.stage_at(members[0].step).lr  # the members share their plan
            if lr != current_lr:
                state.optimizer.set_learning_rates([lr] * len(members))
                current_lr = lr
            step([m.step for m in members])
            for m in members:
                m.step += 1
            bar.update(1)
            if done in score_at:
                with torch.no_grad():
                    scores[done] = score_members(state.model, x, eval_k, device)
    return scores, x.numpy(), time.perf_counter() - started


# --- the authors' side --------------------------------------------------------------------------

def authors_task(case: IndependentCase, steps: int, eval_k: int, x: np.ndarray, folder: Path
                 ) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "test_x.npy", np.ascontiguousarray(x, dtype=np.float32))
    return {"task": "independent", "folder": str(folder), "layers": case.layers,
            "model": case.model, "k": case.k, "dataset": AUTHORS_DATASET[case.data],
            "steps": steps, "eval_k": eval_k, "eval_minibatch": AUTHORS_EVAL_MINIBATCH}


def read_authors_result(folder: Path) -> dict[str, Any]:
    path = folder / "result.json"
    if not path.exists():
        return {"error": "the authors' code left no result"}
    return json.loads(path.read_text())


# --- the command --------------------------------------------------------------------------------

def run_independent(cases: Sequence[IndependentCase], settings: IndependentSettings,
                    data_dir: Path, results: Path, code_cache: Path, from_dir: Path | None,
                    keep_work: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Both sides of every case (the suite's seeds first, then the authors' code, one process
    at a time); writes results/oracle/independent.json and .txt and returns the summary."""
    from benchmark.oracle.independent_records import comparison_row, write_independent

    python = oracle_python()
    code_dir = fetch_authors_code(code_cache, from_dir)
    from benchmark.oracle import datapath

    work = results / "work" / "independent"
    work.mkdir(parents=True, exist_ok=True)
    theirs_data = datapath.authors_data_dir(data_dir, work / "authors-datasets")
    data = DataCache(data_dir, torch.device("cpu"))
    seeds = list(range(settings.seeds))
    suite: dict[str, tuple[np.ndarray, str, float]] = {}
    tasks = []
    for case in cases:
        steps = settings.steps_for(case.data)
        try:
            scores, x, seconds = suite_scores(case, seeds, [steps], settings.eval_n,
                                              settings.eval_k, data, show_progress)
        except DataUnavailable as err:
            raise UserError(f"independent comparison {case.id}: {err}") from err
        suite[case.id] = (scores[steps], test_set_digest(x), seconds)
        tasks.append(authors_task(case, steps, settings.eval_k, x, work / case.id))
    job = Job("float32", "float32", tasks, work / "driver")
    with tqdm(total=len(tasks), unit="case", desc="authors' code (own seed)",
              disable=not show_progress) as bar:
        run_jobs(python, oracle_env(), code_dir, theirs_data, [job],
                 lambda _label, event: bar.update(1) if event.get("event") in ("done", "error")
                 else None)
    rows = []
    for case in cases:
        per_example, digest, seconds = suite[case.id]
        theirs = read_authors_result(work / case.id)
        rows.append(comparison_row(case.id, settings, settings.steps_for(case.data), seeds,
                                   per_example, digest, theirs, seconds))
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return write_independent(results, rows)


def run_spread(cases: Sequence[IndependentCase], epochs: Sequence[float],
               settings: IndependentSettings, data_dir: Path, results: Path,
               show_progress: bool = True) -> dict[str, Any]:
    """The suite's side only: the seeds trained once to the longest length and scored at each
    length; writes results/oracle/independent-spread.json and .txt."""
    from benchmark.oracle.independent_records import spread_row, write_spread

    data = DataCache(data_dir, torch.device("cpu"))
    seeds = list(range(settings.seeds))
    rows = []
    for case in cases:
        lengths = sorted({max(1, round(e * STEPS_PER_EPOCH[case.data])) for e in epochs})
        try:
            scores, _, seconds = suite_scores(case, seeds, lengths, settings.eval_n,
                                              settings.eval_k, data, show_progress)
        except DataUnavailable as err:
            raise UserError(f"spread {case.id}: {err}") from err
        rows += [spread_row(case.id, STEPS_PER_EPOCH[case.data], steps, seeds, scores[steps],
                            settings, seconds) for steps in lengths]
    return write_spread(results, rows)
