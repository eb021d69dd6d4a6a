"""How much work a run is, in the units the cost model prices: training steps, and importance-
sampled rows (examples x samples) scored by its learning curve and its final evaluation.

Computed from the configuration and the size of its data condition alone (no data loaded), with
the trainer's own rules: the plan of benchmark.training.schedule, the curve points of run_setup,
the evaluated examples of benchmark.evaluation.inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.config import RunConfig
from benchmark.evaluation import ACTIVE_UNIT_EXAMPLES, TRAIN_SUBSET_N
from benchmark.training.loop import CURVE_SUBSET_K
from benchmark.training.run_setup import CURVE_SUBSET_N, log_steps
from benchmark.training.schedule import make_plan


@dataclass(frozen=True)
class Workload:
    steps: int  # planned training steps
    curve_points: tuple[int, ...]  # steps at which the learning curve is scored
    curve_rows: int  # rows scored at each curve point
    eval_rows: int  # rows of the final evaluation: test, pruned test, train
    eval_k: int

    def steps_left(self, done: float) -> float:
        return max(0.0, self.steps - done)

    def curve_rows_after(self, done: float) -> int:
        return self.curve_rows * sum(1 for s in self.curve_points if s > done)


def run_workload(config: RunConfig, n_train: int, n_test: int) -> Workload:
    plan = make_plan(config, n_train)
    k = config.effective_eval_k
    n_eval_test = min(n_test, config.effective_eval_n or n_test)
    if config.schedule == "full" and not config.is_cut:
        n_eval_train = n_train
    elif config.schedule == "smoke":
        n_eval_train = min(n_train, config.effective_eval_n or n_train)
    else:
        n_eval_train = min(n_train, TRAIN_SUBSET_N)
    # test and pruned test at eval_k, the training examples at eval_k, active units one sample
    rows = (2 * n_eval_test + n_eval_train) * k + ACTIVE_UNIT_EXAMPLES
    return Workload(steps=plan.planned_steps, curve_points=tuple(log_steps(plan)),
                    curve_rows=min(CURVE_SUBSET_N, n_test) * CURVE_SUBSET_K, eval_rows=rows,
                    eval_k=k)
