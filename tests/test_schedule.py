"""The stage schedule's table of epochs and learning rates, and the cuts."""

import pytest

from benchmark.config import RunConfig, run_id
from benchmark.errors import UserError
from benchmark.training.schedule import make_plan, stage_epochs, stage_learning_rate


def test_stage_table_matches_the_authors_code():
    assert [stage_epochs(i) for i in range(8)] == [1, 3, 9, 27, 81, 243, 729, 2187]
    lrs = [stage_learning_rate(i) for i in range(8)]
    assert lrs == pytest.approx([1.0e-3, 7.2e-4, 5.2e-4, 3.7e-4, 2.7e-4, 1.9e-4, 1.4e-4, 1.0e-4],
                                rel=1e-12)


def config(**kw):
    base = {"data": "mnist-dynamic", "model": "iwae", "k": 5, "layers": 1}
    return RunConfig(**{**base, **kw})


def test_full_plan_of_mnist():
    plan = make_plan(config(), 59_600)
    assert plan.steps_per_epoch == 2980
    assert plan.planned_steps == 9_774_400 and plan.epochs_total == 3280
    starts = [s.first_step // 2980 for s in plan.stages]
    assert starts == [0, 1, 4, 13, 40, 121, 364, 1093]
    assert make_plan(config(data="omniglot"), 23_000).planned_steps == 3_772_000
    assert make_plan(config(data="mnist-fixed"), 50_000).planned_steps == 8_200_000


def test_quick_smoke_and_cuts():
    assert make_plan(config(schedule="quick"), 59_600).planned_epochs == 40
    assert make_plan(config(schedule="smoke"), 59_600).planned_steps == 60
    assert make_plan(config(stages=2), 59_600).planned_epochs == 4
    assert make_plan(config(epochs=0.5), 59_600).planned_steps == 1490
    assert make_plan(config(steps=7, stages=3), 59_600).planned_steps == 7
    assert make_plan(config(steps=7), 59_600).epochs_total == 3280  # a cut never shortens this


def test_continuation_plan_is_3_to_the_7_epochs_at_1e_4():
    plan = make_plan(config(init_from="results/table1/x"), 59_600)
    assert len(plan.stages) == 1 and plan.stages[0].lr == 1e-4
    assert plan.planned_epochs == 2187 and plan.epochs_total == 2187


def test_run_ids_are_readable_and_distinguish_cut_runs():
    assert run_id(config(k=50, layers=2)) == "mnist-dynamic_iwae_k50_L2_s0_code_full"
    assert run_id(config(steps=100)) == "mnist-dynamic_iwae_k5_L1_s0_code_full_steps100"
    assert run_id(config(epochs=0.5)).endswith("_epochs0.5")


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="--layers"):
        config(layers=3)
    with pytest.raises(UserError, match="--stages"):
        config(stages=9)


def test_each_step_trains_at_its_own_stages_learning_rate():
    """Surviving mutants of stage_at, protocol_stages and stage_ends showed these unchecked: the
    first step of a stage already uses that stage's rate, a step past the plan stays in the last
    stage, stage indices (the metrics.csv column) count from 0, and a cut at a stage end is a
    stage end."""
    plan = make_plan(config(), 59_600)
    assert [s.index for s in plan.stages] == list(range(8))
    assert plan.stage_at(0).lr == plan.stage_at(2979).lr == 1e-3
    assert plan.stage_at(2980).index == 1 and plan.stage_at(2980).lr == 7.2e-4
    assert plan.stage_at(10**9).index == 7
    assert make_plan(config(stages=2), 59_600).stage_ends() == [2980, 11_920]
    continuation = make_plan(config(init_from="results/table1/x"), 59_600)
    assert continuation.stages[0].index == 0 and continuation.stage_at(0).lr == 1e-4


def test_tiny_cuts_and_training_sets():
    assert make_plan(config(epochs=1e-4), 59_600).planned_steps == 1  # never zero steps
    assert make_plan(config(), 20).steps_per_epoch == 1  # one minibatch is enough
    with pytest.raises(ValueError, match="19 examples is smaller than one minibatch"):
        make_plan(config(), 19)
    total = make_plan(config(), 59_600).epochs_total
    assert isinstance(total, int) and total == 3280  # the record says 3280, not 3280.0
