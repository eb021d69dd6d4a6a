"""What the oracle compares: lockstep cases (one configuration, N steps on the same draws),
their evaluation, the Section 5.2 continuation and the data path; and the sets `make oracle`
and the test suite run."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, replace

from benchmark.config import RunConfig
from benchmark.definitions import paper_objectives
from benchmark.errors import UserError

AUTHORS_DATASET = {"mnist-dynamic": "MNIST", "mnist-fixed": "BinFixMNIST", "omniglot": "OMNI"}
STEPS_PER_EPOCH = {"mnist-dynamic": 2980, "mnist-fixed": 2500, "omniglot": 1150}


@dataclass(frozen=True)
class LockstepCase:
    data: str
    model: str
    k: int
    layers: int
    steps: int
    eval_k: int | None = None  # evaluate the trained model (L_k, units, pruning) when set
    eval_n: int = 0

    @property
    def id(self) -> str:
        return f"{self.data}_{self.model}_k{self.k}_L{self.layers}"

    @property
    def authors_dataset(self) -> str:
        return AUTHORS_DATASET[self.data]

    def config(self) -> RunConfig:
        return RunConfig(data=self.data, model=self.model, k=self.k, layers=self.layers,
                         steps=self.steps)

    def snapshot_steps(self) -> list[int]:
        """1, 2, 5, 10, 20, 50, ... up to the end, the end, and around every stage boundary."""
        steps = {self.steps}
        for decade in (1, 10, 100, 1000, 10000):
            steps.update(m * decade for m in (1, 2, 5))
        boundary = STEPS_PER_EPOCH[self.data]
        steps.update(boundary + d for d in (-1, 0, 1, 2, 10, 100))
        return sorted(s for s in steps if 1 <= s <= self.steps)


@dataclass(frozen=True)
class ContinuationCase:
    """Section 5.2: `first` steps of VAE k=1, then `then` steps of IWAE k=50 (vae_to_iwae)."""

    first: int
    then: int
    data: str = "mnist-dynamic"

    @property
    def id(self) -> str:
        return f"{self.data}_continuation_vae_k1_to_iwae_k50"

    def snapshot_steps(self) -> list[int]:
        end = self.first + self.then
        steps = {self.first, end} | {self.first + d for d in (1, 2, 5, 10, 20, 50, 100)}
        return sorted(s for s in steps if 1 <= s <= end)


@dataclass(frozen=True)
class DataCase:
    data: str

    @property
    def id(self) -> str:
        return f"{self.data}_data"


Case = LockstepCase | ContinuationCase | DataCase


def grid(steps_one_layer: int, steps_k50: int, steps_two_layers: int,
         data: Sequence[str] = ("mnist-dynamic", "mnist-fixed")) -> list[LockstepCase]:
    cases = []
    for d in data:
        for layers in (1, 2):
            for k in (1, 5, 50):
                for model in paper_objectives():
                    steps = (steps_two_layers if layers == 2
                             else steps_k50 if k == 50 else steps_one_layer)
                    cases.append(LockstepCase(d, model, k, layers, steps))
    return cases


def default_cases() -> list[Case]:
    """`make oracle`: about an hour on the 2-core development machine (see README)."""
    cases: list[Case] = [_with_evaluation(c) for c in grid(1000, 1000, 100)]
    across_stage_end = LockstepCase("mnist-dynamic", "vae", 1, 1, 2980 + 520)
    cases = [across_stage_end if c.id == across_stage_end.id else c for c in cases]
    cases.append(ContinuationCase(first=200, then=100))
    cases += [DataCase("mnist-dynamic"), DataCase("mnist-fixed")]
    return _unique(cases)


def short_cases() -> list[Case]:
    """The check `make test` runs: a few configurations, tens of steps, a small evaluation.
    Between them they cover both objectives, both depths, both data paths, an evaluation and
    the continuation; each further case costs about a minute of Theano compiling on a cold
    cache (CI's always is), so the full grid is `make oracle`'s."""
    return [
        LockstepCase("mnist-dynamic", "iwae", 5, 1, 30, eval_k=50, eval_n=10),
        LockstepCase("mnist-fixed", "vae", 1, 2, 20),
        ContinuationCase(first=10, then=10),
    ]


def _with_evaluation(case: LockstepCase) -> LockstepCase:
    """L_5000 on 100 test images for IWAE k=5 (one and two layers; fixed: one layer)."""
    if case.model == "iwae" and case.k == 5 and (case.layers == 1 or case.data != "mnist-fixed"):
        return replace(case, eval_k=5000, eval_n=100)
    return case


def _unique(cases: list[Case]) -> list[Case]:
    seen, out = set(), []
    for case in cases:
        key = (case.id, getattr(case, "steps", None))
        if key not in seen:
            seen.add(key)
            out.append(case)
    return out


def select(cases: list[Case], patterns: Sequence[str] | None, steps: int | None) -> list[Case]:
    """Cases whose id matches any pattern (fnmatch); --steps N sets every lockstep's length."""
    if patterns:
        chosen = [c for c in cases if any(fnmatch.fnmatch(c.id, p) for p in patterns)]
        if not chosen:
            known = ", ".join(sorted({c.id for c in cases}))
            raise UserError(f"--configs {' '.join(patterns)} matches no case; known: {known}")
        cases = chosen
    if steps is not None:
        cases = [replace(c, steps=steps) if isinstance(c, LockstepCase) else c for c in cases]
    return _unique(cases)
