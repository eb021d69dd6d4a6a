"""Matmul FLOPs of a training step and of L_k, for the achieved-GFLOP/s column.

Only the dense layers count (2 FLOPs per multiply-add); the elementwise work (tanh, exp, the
Bernoulli likelihood) is what keeps an implementation from the matmul peak, so it is left out
on purpose. A layer reading n rows costs 2 n n_in n_out forward, the same again for the weight
gradient, and once more for the input gradient (not for the data layer).
"""

from __future__ import annotations

from benchmark.model import ARCHITECTURES, BlockSpec

BATCH = 20


def _block_layers(spec: BlockSpec, gaussian: bool) -> list[tuple[int, int]]:
    widths = (spec.n_in, *spec.hidden)
    layers = list(zip(widths[:-1], widths[1:], strict=True))
    heads = 2 if gaussian else 1  # mean and log-sigma, or the logits
    return layers + [(spec.hidden[-1], spec.n_out)] * heads


def _layers_with_rows(layers: int, k: int, examples: int, encode_once: bool
                      ) -> list[tuple[int, int, int, bool]]:
    """(rows, n_in, n_out, reads the data) for every dense layer of one pass."""
    arch = ARCHITECTURES[layers]
    samples = k * examples
    out = []
    for i, spec in enumerate(arch.encoder):
        rows = examples if (i == 0 and encode_once) else samples
        for j, (a, b) in enumerate(_block_layers(spec, gaussian=True)):
            out.append((rows, a, b, i == 0 and j == 0))
    for i, spec in enumerate(arch.decoder):
        for a, b in _block_layers(spec, gaussian=i > 0):
            out.append((samples, a, b, False))
    return out


def train_step_flops(layers: int, k: int, encode_once: bool = True) -> float:
    total = 0.0
    for rows, a, b, data_layer in _layers_with_rows(layers, k, BATCH, encode_once):
        total += 2 * rows * a * b * (2 if data_layer else 3)
    return total


def log_likelihood_flops(layers: int, k: int, examples: int, encode_once: bool = True) -> float:
    return sum(2.0 * rows * a * b
               for rows, a, b, _ in _layers_with_rows(layers, k, examples, encode_once))
