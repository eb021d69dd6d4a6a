"""The suite's draws and parameters in the authors' layout.

Rows: the authors repeat x k times with t_repeat, example-major (row b*k + r is sample r of
example b), and draw each layer's noise for those rows; the suite draws (M, k, B, d), sample
first. Names: the driver names their parameters q<l>.*, p<l>.* (see py2/authors.py); the suite's
follow its modules (encoder.<l>.trunk.layers.<j>.weight, ...). Both store a weight as
(n_in, n_out) and a bias as (1, n_out), so values move across as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from benchmark.oracle.capture import Draw

# Theano MRG's float32 uniform is (x11 - x21) * NORM with the integer never 0 ("Must never
# return either 0 or M1+1", theano/sandbox/rng_mrg.py): its smallest draw is NORM itself.
MRG_SMALLEST_UNIFORM = np.float32(4.6566126e-10)


class LayoutError(RuntimeError):
    """The suite drew something other than what the authors' graph consumes."""


def authors_rows(noise: np.ndarray) -> np.ndarray:
    """(k, B, d) sample-major noise -> (B * k, d) with row b*k + r = noise[r, b]."""
    k, b, d = noise.shape
    return np.ascontiguousarray(noise.transpose(1, 0, 2).reshape(b * k, d))


def step_slots(draws: Sequence[Draw], dynamic: bool, layers: int) -> dict[str, np.ndarray]:
    """One training step's draws -> {"u": (B, 784), "n<l>": (B k, d_l)}: the binarization
    uniforms (dynamic data only), then one noise draw per stochastic layer, bottom first."""
    expected = (["uniform"] if dynamic else []) + ["normal"] * layers
    if [d.kind for d in draws] != expected:
        raise LayoutError(f"a training step drew {[d.kind for d in draws]}, the authors' graph "
                          f"consumes {expected}")
    slots = {}
    if dynamic:
        slots["u"] = as_mrg_uniform(draws[0].values)
    for layer, draw in enumerate(draws[1:] if dynamic else draws):
        noise = draw.values
        if noise.ndim == 4:  # (M=1, k, B, d)
            noise = noise[0]
        slots[f"n{layer}"] = authors_rows(noise)
    return slots


def as_mrg_uniform(u: np.ndarray) -> np.ndarray:
    """torch.rand can return 0, the authors' stream never does: a 0 is served as MRG's smallest
    draw. Below every non-zero pixel value (>= 1/255), it makes their 1[u <= p] the suite's
    1[u < p] at u = 0 for every p; served as 0 it would turn a black pixel white, a draw their
    own stream cannot make (the 3,500-step VAE case met one at step 1,263)."""
    u = np.asarray(u, dtype=np.float32)
    return np.where(u == 0, MRG_SMALLEST_UNIFORM, u)  # float32 in, float32 out


def evaluation_slots(draws: Sequence[Draw], layers: int, k: int, n: int
                     ) -> dict[str, np.ndarray]:
    """The noise of an L_k evaluation of n examples -> {"n<l>": (n, k, d_l)}: example e's k
    samples, as the authors' measure_marginal_log_likelihood draws them one example at a time.

    The suite draws piece by piece (a piece: some samples of a batch of examples, every layer
    in turn, each (k_piece, b, d) or (1, k_piece, b, d))."""
    if len(draws) % layers or any(d.kind != "normal" for d in draws):
        raise LayoutError("an evaluation drew something other than layer-by-layer noise")
    per_layer: list[list[np.ndarray]] = [[] for _ in range(layers)]
    pending: list[list[np.ndarray]] = [[] for _ in range(layers)]
    for i in range(0, len(draws), layers):
        for layer in range(layers):
            noise = draws[i + layer].values
            pending[layer].append(noise[0] if noise.ndim == 4 else noise)
        if sum(p.shape[0] for p in pending[0]) == k:  # every sample of this batch drawn
            for layer in range(layers):
                batch = np.concatenate(pending[layer], axis=0)  # (k, b, d)
                per_layer[layer].append(batch.transpose(1, 0, 2))  # (b, k, d)
                pending[layer] = []
    out = {f"n{layer}": np.concatenate(per_layer[layer], axis=0) for layer in range(layers)}
    if any(v.shape[:2] != (n, k) for v in out.values()) or any(pending[0]):
        raise LayoutError(f"the evaluation noise does not cover {n} examples x {k} samples")
    return out


def units_slots(draws: Sequence[Draw], layers: int) -> dict[str, np.ndarray]:
    """The noise of unit_variances (one draw per layer, (1, N, d)) -> {"n<l>": (1, N, d)}."""
    if len(draws) != layers or any(d.kind != "normal" for d in draws):
        raise LayoutError("the active-units statistic drew something other than one noise "
                          "draw per layer")
    return {f"n{layer}": d.values.reshape(1, *d.values.shape[-2:])
            for layer, d in enumerate(draws)}


def authors_name(suite_name: str, layers: int) -> str:
    """encoder.0.trunk.layers.1.weight -> q0.trunk1.W; likelihood.logits.bias -> p0.logits.b;
    prior_blocks.0.mean.weight -> p1.mean.W (the block that outputs h1)."""
    parts = suite_name.split(".")
    leaf = {"weight": "W", "bias": "b"}[parts[-1]]
    if parts[0] == "encoder":
        prefix, rest = f"q{parts[1]}", parts[2:-1]
    elif parts[0] == "likelihood":
        prefix, rest = "p0", parts[1:-1]
    elif parts[0] == "prior_blocks":
        prefix, rest = f"p{int(parts[1]) + 1}", parts[2:-1]
    else:
        raise LayoutError(f"unknown parameter {suite_name}")
    if rest[0] == "trunk":
        module = f"trunk{rest[2]}"
    else:
        module = {"mean": "mean", "log_sigma": "sigma", "logits": "logits"}[rest[0]]
    return f"{prefix}.{module}.{leaf}"
