"""Speed of AIS (benchmark.evaluation.ais_evaluation): every chain of every example of a batch
in one batched computation, against the plain loop over examples (plain_ais.py), with the same
T, chains and leapfrog steps on MNIST test images. Reported as examples per second."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import Row, interleaved_best
from plain import PlainIWAE
from plain_ais import plain_ais
from test_log_likelihood import mnist_test_images

from benchmark.data.splits import load_dataset
from benchmark.evaluation.ais_evaluation import AISSettings, evaluate_ais
from benchmark.models.network import IWAEModel

STEPS, CHAINS, LEAPFROG, IMAGES = 20, 16, 10, 20


@pytest.mark.parametrize("layers", [1, 2])
def test_ais(benchmark, recorder, bench_data_dir, layers):
    x = mnist_test_images(bench_data_dir, IMAGES)
    mean_pixel = np.clip(load_dataset("mnist-dynamic", bench_data_dir).train.mean(axis=0),
                         0.001, 0.999)
    model = IWAEModel(layers)
    model.init_authors(mean_pixel)
    model.requires_grad_(False)
    plain_model = PlainIWAE(layers, mean_pixel).requires_grad_(False)
    settings = AISSettings(steps=STEPS, chains=CHAINS, leapfrog=LEAPFROG, batch=IMAGES)

    def batched() -> None:
        evaluate_ais(model, x[None], settings)

    def plain() -> None:
        plain_ais(plain_model, x, STEPS, CHAINS, LEAPFROG, torch.Generator().manual_seed(0))

    times = interleaved_best({"exact": batched, "plain": plain}, rounds=2, reps=1)
    case = f"AIS T={STEPS} C={CHAINS} L{layers}, {IMAGES} images"
    recorder.rows.append(Row(case, times, examples=IMAGES))
    benchmark.pedantic(batched, rounds=2, iterations=1)
