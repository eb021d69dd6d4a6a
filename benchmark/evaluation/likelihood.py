"""The L_k log-likelihood estimator (k = 5000), per-example values, active units and pruning.

All estimates are on binary data. For dynamically binarized datasets the test set (and any
training subset used for evaluation) is binarized once with TEST_BINARIZATION_SEED, so every
model of a sweep is scored on the same binary images.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from benchmark.models import Generators, IWAEModel

DEFAULT_ROWS_PER_CHUNK = 16384  # samples x examples per noise draw (and exact forward pass)
CPU_ROWS_PER_PASS = 8192  # fast evaluation on the CPU: about 25 MB of logits per pass
MAX_GPU_ROWS_PER_PASS = 4_000_000
BYTES_PER_ROW = 16 * 1024  # float32 activations of one (sample, example) row, with headroom
COMPILE_EVALUATION_ROWS = 20_000_000  # about a minute of CPU work: then compiling pays
COMPILED_VARIANTS = 64  # compiled graphs kept (shapes, masks); dynamo's default limit is 8


def log_likelihood_estimates(
    model: IWAEModel,
    x: Tensor,
    k: int,
    generator: Generators = None,
    rows_per_chunk: int = DEFAULT_ROWS_PER_CHUNK,
    unit_masks: list[Tensor] | None = None,
    show_progress: bool = False,
    *,
    fast: bool = False,
    rows_per_pass: int | None = None,
    compile_forward: bool | None = None,
) -> np.ndarray:
    """L_k = log (1/k) sum_i w_i for every example, in float64. x: (M, N, 784) -> (M, N).

    The noise layout is fixed by rows_per_chunk: examples go in batches of rows_per_chunk // k
    and their samples in pieces of at most rows_per_chunk rows, every piece drawing its noise in
    that order (one generator per member: each member's draws are its own). `fast` keeps exactly
    those draws but computes many batches at once, in passes of about rows_per_pass (samples x
    examples x members) rows sized from the memory available (default), with the fused Bernoulli
    head, or on the CPU compiled (compile_forward; None: when there are over
    COMPILE_EVALUATION_ROWS rows); the default computes piece by piece with the reference
    operations. Log-weights are float32; the log-mean-exp over the k samples is float64.
    """
    with torch.no_grad():
        M, N, _ = x.shape
        batch, k_chunk = noise_layout(k, rows_per_chunk)
        if fast:
            rows = rows_per_pass or default_rows_per_pass(x.device)
            per_pass = batch * max(1, rows // (M * k * batch))
            forward = _fast_forward(x.device, M * N * k, compile_forward)
        else:
            rows, per_pass = 0, batch
        estimates = []
        for start in tqdm(range(0, N, per_pass), desc=f"L_{k}", unit="pass", leave=False,
                          disable=not show_progress, mininterval=2.0):
            xb = x[:, start:start + per_pass].contiguous()
            if fast:
                log_w = _fast_log_weights(model, xb, k, batch, k_chunk, generator, unit_masks, rows,
                                          forward)
            else:
                pieces = [model.log_weights(xb, min(k_chunk, k - k_start), generator,
                                            unit_masks).double()
                          for k_start in range(0, k, k_chunk)]
                log_w = torch.cat(pieces, dim=1)  # (M, k, b)
            estimates.append(torch.logsumexp(log_w, dim=1) - math.log(k))
        return torch.cat(estimates, dim=1).cpu().numpy()  # the one transfer to the host


def noise_layout(k: int, rows_per_chunk: int) -> tuple[int, int]:
    """(examples per batch, samples per piece): the order in which evaluation noise is drawn."""
    batch = max(1, rows_per_chunk // k)
    return batch, min(k, max(1, rows_per_chunk // batch))


def default_rows_per_pass(device: torch.device) -> int:
    """Rows (sample, example, member) per forward pass. On a GPU: what fits in half the free
    memory, so that the kernels are large; on the CPU: a few MB of logits, so that the
    elementwise work after each matmul finds its operands in cache."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(min(MAX_GPU_ROWS_PER_PASS, max(DEFAULT_ROWS_PER_CHUNK,
                                                  free // 2 // BYTES_PER_ROW)))
    return CPU_ROWS_PER_PASS


def _fast_log_weights(model: IWAEModel, x: Tensor, k: int, batch: int, k_chunk: int,
                      generator: Generators, unit_masks: list[Tensor] | None, rows: int,
                      forward: Forward) -> Tensor:
    """(M, k, n) float64 log-weights of the n examples of x, drawn batch by batch and piece by
    piece exactly as the reference loop draws them, computed in passes of about `rows` rows."""
    M, n, _ = x.shape
    per_batch = []
    for start in range(0, n, batch):
        b = min(batch, n - start)
        pieces = [model.draw_noise(M, min(k_chunk, k - k_start), b, generator, x.device, x.dtype)
                  for k_start in range(0, k, k_chunk)]
        per_batch.append([torch.cat(layer, dim=1) for layer in zip(*pieces, strict=True)])
    eps = [torch.cat(layer, dim=2) for layer in zip(*per_batch, strict=True)]  # (M, k, n, d)
    samples = max(1, rows // (M * n))
    log_w = [forward(model, x, [e[:, s:s + samples] for e in eps], unit_masks).double()
             for s in range(0, k, samples)]
    return torch.cat(log_w, dim=1)


Forward = Callable[[IWAEModel, Tensor, list[Tensor], list[Tensor] | None], Tensor]


def _eager_forward(model: IWAEModel, x: Tensor, eps: list[Tensor],
                   unit_masks: list[Tensor] | None) -> Tensor:
    return model.log_weights_given_noise(x, eps, unit_masks, fused_likelihood=True)


def _reference_forward(model: IWAEModel, x: Tensor, eps: list[Tensor],
                       unit_masks: list[Tensor] | None) -> Tensor:
    return model.log_weights_given_noise(x, eps, unit_masks)


class _CompiledForward:
    """The log-weights as one torch.compile graph (inductor fuses the elementwise work around
    the matmuls): about 1.3x on the CPU, for some seconds of compiling per shape, so only for
    long evaluations. Falls back to the eager fast path on any compiler failure."""

    compiled: Callable | None = None  # one wrapper per process: its compiled graphs are reused
    failed = False

    def __call__(self, model: IWAEModel, x: Tensor, eps: list[Tensor],
                 unit_masks: list[Tensor] | None) -> Tensor:
        cls = _CompiledForward
        if not cls.failed:
            if cls.compiled is None:
                cls.compiled = torch.compile(_reference_forward)  # sizes turn dynamic as needed
            try:
                with torch._dynamo.config.patch(recompile_limit=COMPILED_VARIANTS):
                    return cls.compiled(model, x, eps, unit_masks)
            except Exception as err:  # noqa: BLE001 - any compiler failure: stay eager
                warnings.warn(f"torch.compile of the evaluation failed ({type(err).__name__}); "
                              "evaluating eagerly", RuntimeWarning, stacklevel=2)
                cls.failed = True
        return _eager_forward(model, x, eps, unit_masks)


def _fast_forward(device: torch.device, total_rows: int, compile_forward: bool | None
                  ) -> Forward:
    """Compiled on the CPU when asked, or (None) when the evaluation is long enough to repay
    the compile; eager with the fused head otherwise (and on GPUs)."""
    if compile_forward is None:
        compile_forward = total_rows >= COMPILE_EVALUATION_ROWS
    if device.type == "cpu" and compile_forward:
        return _CompiledForward()
    return _eager_forward


@dataclass(frozen=True)
class NLLEstimate:
    nll: float  # mean over examples of -L_k, positive nats
    se: float  # standard error of that mean over examples
    n: int


def summarise_nll(log_likelihoods: np.ndarray) -> NLLEstimate:
    values = -np.asarray(log_likelihoods, dtype=np.float64)
    n = values.size
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return NLLEstimate(float(values.mean()), se, n)


