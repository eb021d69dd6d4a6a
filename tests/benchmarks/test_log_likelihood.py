"""Speed of the L_5000 estimator against the plain baseline's evaluation (minibatches of 20
test points x 5000 samples, x repeated through the encoder), on MNIST test images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Row, interleaved_best
from costs import log_likelihood_flops, log_likelihood_matmuls
from plain import PlainIWAE, plain_log_likelihood

from benchmark.data.binarization import binarize_once
from benchmark.data.splits import load_dataset
from benchmark.evaluation.likelihood import CPU_ROWS_PER_PASS, log_likelihood_estimates
from benchmark.models.network import IWAEModel
from benchmark.training.denormals import flush_denormals

K = 5000


def mnist_test_images(data_dir, n: int) -> torch.Tensor:  # noqa: ANN001
    dataset = load_dataset("mnist-dynamic", data_dir)
    return torch.from_numpy(binarize_once(dataset.test[:n], 123))


def matmul_floor(layers: int, images: int) -> float:
    """costs.py's floor (ms): the forward matmuls of L_5000 over `images` (member, image) pairs,
    timed in passes of the fast evaluation's size on the CPU."""
    one_pass, rows_in_pass = log_likelihood_matmuls(layers, K, CPU_ROWS_PER_PASS)
    pass_ms = interleaved_best({"pass": one_pass}, rounds=1, reps=5)["pass"]
    return pass_ms * images * K / rows_in_pass


@pytest.mark.parametrize("layers,members,n", [(1, 1, 20), (2, 1, 20), (1, 12, 3)])
def test_l5000(benchmark, recorder, bench_data_dir, layers, members, n):
    x = mnist_test_images(bench_data_dir, n)
    mean_pixel = np.clip(load_dataset("mnist-dynamic", bench_data_dir).train.mean(axis=0),
                         0.001, 0.999)
    model = IWAEModel(layers, members=members)
    model.init_authors(mean_pixel)
    xs = x.unsqueeze(0).expand(members, -1, -1)
    plains = [PlainIWAE(layers, mean_pixel) for _ in range(members)]

    def gens() -> list[torch.Generator]:
        return [torch.Generator().manual_seed(5000) for _ in range(members)]

    def exact() -> None:
        log_likelihood_estimates(model, xs, K, gens())

    def fast() -> None:  # compiled, as an evaluation of a whole test set is
        log_likelihood_estimates(model, xs, K, gens(), fast=True, compile_forward=True)

    def plain() -> None:
        for p in plains:
            plain_log_likelihood(p, x, K, torch.Generator().manual_seed(5000))

    with flush_denormals():
        fast()  # compiles
        times = interleaved_best({"exact": exact, "fast": fast}, rounds=2, reps=1)
        times.update(interleaved_best({"plain+FTZ": plain}, rounds=2, reps=1))
    times.update(interleaved_best({"plain": plain}, rounds=2, reps=1))
    flops = members * log_likelihood_flops(layers, K, n)
    case = f"L_5000, {members} model{'s' if members > 1 else ''}, L{layers}, {n} images"
    recorder.rows.append(Row(case, times, {"fast": flops}, matmul_floor(layers, members * n)))
    with flush_denormals():
        benchmark.pedantic(fast, rounds=2, iterations=1)
