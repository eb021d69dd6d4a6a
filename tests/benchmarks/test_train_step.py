"""Speed of one training step: one model, a 12-member ensemble, and the MNIST Table 1 grid,
each against the plain eager baseline (tests/benchmarks/plain.py) measured alongside."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Row, interleaved_best
from costs import ADAM_ARRAYS_PER_STREAM, optimizer_traffic, step_matmuls, train_step_flops
from plain import PlainRun

from benchmark.config import RunConfig
from benchmark.data.splits import load_dataset
from benchmark.training.denormals import flush_denormals
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import standalone_group_step

CASES = [(layers, k) for layers in (1, 2) for k in (1, 5, 50)]
ENSEMBLE = [("vae", seed) if seed % 2 == 0 else ("iwae", seed) for seed in range(12)]


def suite_steps(configs: list[RunConfig], data_dir: Path) -> dict[str, object]:
    return {numerics: standalone_group_step(configs, data_dir,
                                            ExecutionOptions(numerics=numerics))[0]
            for numerics in ("exact", "fast")}


def plain_times(plain: list[PlainRun], rounds: int, reps: int) -> dict[str, float]:
    """The baseline as torch runs it by default, and with flush-to-zero (to show that share)."""
    times = interleaved_best({"plain": plain_steps(plain)}, rounds=rounds, reps=reps)
    with flush_denormals():
        times.update(interleaved_best({"plain+FTZ": plain_steps(plain)}, rounds=rounds,
                                      reps=reps))
    return times


def plain_steps(runs: list[PlainRun]):  # noqa: ANN201
    def run() -> None:
        for r in runs:
            r.step()
    return run


def compare(benchmark, recorder, case: str, configs: list[RunConfig], plain: list[PlainRun],
            data_dir: Path, rounds: int, reps: int) -> None:
    ours = suite_steps(configs, data_dir)
    with flush_denormals():
        for step in ours.values():  # the fused optimizer compiles on its first call
            step()
        times = interleaved_best({
            "exact": ours["exact"], "fast": ours["fast"],
        }, rounds=rounds, reps=reps)
    times.update(plain_times(plain, rounds, reps))
    flops = sum(train_step_flops(c.layers, c.k) for c in configs)
    recorder.rows.append(Row(case, times, {"fast": flops}, step_floor(configs, rounds, reps)))
    with flush_denormals():
        benchmark.pedantic(ours["fast"], rounds=max(3, reps), iterations=1)


def step_floor(configs: list[RunConfig], rounds: int, reps: int) -> float:
    """costs.py's floor of one group's step (ms)."""
    layers, k, members = configs[0].layers, configs[0].k, len(configs)
    times = interleaved_best({"matmuls": step_matmuls(layers, k, members),
                              "stream": optimizer_traffic(layers, members)},
                             rounds=rounds, reps=reps)
    return times["matmuls"] + ADAM_ARRAYS_PER_STREAM * times["stream"]


def train_set(data_dir: Path):  # noqa: ANN201
    return load_dataset("mnist-dynamic", data_dir).train


@pytest.mark.parametrize("layers,k", CASES)
def test_step_of_one_model(benchmark, recorder, bench_data_dir, layers, k):
    config = RunConfig(data="mnist-dynamic", model="iwae", k=k, layers=layers)
    plain = [PlainRun(layers, k, "iwae", train_set(bench_data_dir), seed=0)]
    rounds, reps = (5, 8) if k < 50 else (4, 3)
    compare(benchmark, recorder, f"step, 1 model, L{layers} k={k}", [config], plain,
            bench_data_dir, rounds=rounds, reps=reps)


@pytest.mark.parametrize("layers,k", CASES)
def test_step_of_a_12_member_ensemble(benchmark, recorder, bench_data_dir, layers, k):
    configs = [RunConfig(data="mnist-dynamic", model=m, k=k, layers=layers, seed=s)
               for m, s in ENSEMBLE]
    train = train_set(bench_data_dir)
    plain = [PlainRun(layers, k, m, train, seed=s) for m, s in ENSEMBLE]
    rounds, reps = (4, 3) if k < 50 else (4, 1)
    compare(benchmark, recorder, f"step, 12 members, L{layers} k={k}", configs, plain,
            bench_data_dir, rounds=rounds, reps=reps)


def test_step_of_the_mnist_table1_grid(benchmark, recorder, bench_data_dir):
    """All 12 models of MNIST Table 1 (VAE and IWAE x k in 1, 5, 50 x 1, 2 layers) trained
    together: six groups of two, one step each."""
    train = train_set(bench_data_dir)
    groups = [[RunConfig(data="mnist-dynamic", model=m, k=k, layers=layers)
               for m in ("vae", "iwae")] for layers, k in CASES]
    steps = {numerics: [standalone_group_step(g, bench_data_dir,
                                              ExecutionOptions(numerics=numerics))[0]
                        for g in groups] for numerics in ("exact", "fast")}
    plain = [PlainRun(c.layers, c.k, c.model, train, seed=0) for g in groups for c in g]

    def grid(numerics: str):  # noqa: ANN202
        def run() -> None:
            for step in steps[numerics]:
                step()
        return run

    with flush_denormals():
        grid("exact")()
        grid("fast")()
        times = interleaved_best({"exact": grid("exact"), "fast": grid("fast")}, rounds=3,
                                 reps=1)
    times.update(plain_times(plain, rounds=3, reps=1))
    flops = sum(train_step_flops(c.layers, c.k) for g in groups for c in g)
    floor = sum(step_floor(g, rounds=3, reps=1) for g in groups)
    recorder.rows.append(Row("step, MNIST Table 1 grid (12 models)", times, {"fast": flops},
                             floor))
    with flush_denormals():
        benchmark.pedantic(grid("fast"), rounds=3, iterations=1)
