"""Speed of the estimators beyond IWAE: DReG's and PIWAE's training step against the IWAE step
they change (same model, same samples per example), timed interleaved in the same run."""

from __future__ import annotations

import pytest
from conftest import EstimatorRow, interleaved_best

from benchmark.config import RunConfig
from benchmark.training.denormals import flush_denormals
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import standalone_group_step

CASES = {
    "DReG": (dict(model="iwae", k=50, estimator="dreg"), dict(model="iwae", k=50), "IWAE k=50"),
    "PIWAE(8, 8)": (dict(model="piwae", k=8, params={"m": 8}), dict(model="iwae", k=64),
                    "IWAE k=64"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_estimator_step_against_iwae(benchmark, recorder, bench_data_dir, name):
    estimator, iwae, baseline = CASES[name]
    steps = {}
    for label, kw in (("", estimator), ("iwae ", iwae)):
        config = RunConfig(data="mnist-dynamic", layers=1, **kw)
        for numerics in ("exact", "fast"):
            steps[f"{label}{numerics}"] = standalone_group_step(
                [config], bench_data_dir, ExecutionOptions(numerics=numerics))[0]
    with flush_denormals():
        times = interleaved_best(steps, rounds=4, reps=3, warmup=2)
    recorder.estimator_rows.append(EstimatorRow(f"step, 1 model, L1, {name}", baseline, times))
    with flush_denormals():
        benchmark.pedantic(steps["exact"], rounds=3, iterations=1)
