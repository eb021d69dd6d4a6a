"""Matmul FLOPs of a training step and of L_k, for the achieved-GFLOP/s column; and the floors
(the work no implementation of the same model avoids, timed on this machine) for the best
ratio any implementation could reach against the plain baseline.

Only the dense layers count (2 FLOPs per multiply-add); the elementwise work (tanh, exp, the
Bernoulli likelihood) is what keeps an implementation from the matmul peak, so it is left out
on purpose. A layer reading n rows costs 2 n n_in n_out forward, the same again for the weight
gradient, and once more for the input gradient (not for the data layer).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmark.models.network import ARCHITECTURES, BlockSpec, IWAEModel

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


# --- floors: what this machine needs for the unavoidable part of the work --------------------

def parameter_count(layers: int) -> int:
    return sum(p.numel() for p in IWAEModel(layers, members=1).parameters())


def step_matmuls(layers: int, k: int, members: int) -> Callable[[], None]:
    """The dense-layer matmuls of one batched training step, in the suite's shapes (forward,
    weight gradient, input gradient except at the data layer), on random operands."""
    return _matmuls(_layers_with_rows(layers, k, BATCH, encode_once=True), members, backward=True)


def log_likelihood_matmuls(layers: int, k: int, rows_per_pass: int
                           ) -> tuple[Callable[[], None], int]:
    """The forward matmuls of one L_k pass of about rows_per_pass (sample, example) rows, and
    how many rows that pass holds."""
    examples = max(1, rows_per_pass // k)
    samples = rows_per_pass // examples
    return (_matmuls(_layers_with_rows(layers, samples, examples, encode_once=True), 1,
                     backward=False), examples * samples)


def _matmuls(shapes: list[tuple[int, int, int, bool]], members: int, backward: bool
             ) -> Callable[[], None]:
    operands = [(torch.randn(members, rows, a), torch.randn(members, a, b),
                 torch.randn(members, rows, b), data_layer)
                for rows, a, b, data_layer in shapes]

    def run() -> None:
        for x, w, g, data_layer in operands:
            torch.bmm(x, w)
            if backward:
                torch.bmm(x.transpose(1, 2), g)
                if not data_layer:
                    torch.bmm(g, w.transpose(1, 2))
    return run


ADAM_ARRAYS_PER_STREAM = 7 / 3


def optimizer_traffic(layers: int, members: int) -> Callable[[], None]:
    """A stream over as many floats as the members' parameters: torch.add(b, c, out=a) moves
    3 arrays; Adam must read parameters, gradients and both moments and write three of them
    back, 7 arrays: its floor is 7/3 of this stream's time."""
    n = parameter_count(layers) * members
    a, b, c = torch.empty(n), torch.randn(n), torch.randn(n)
    return lambda: torch.add(b, c, out=a)
