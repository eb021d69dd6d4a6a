"""The step of a group on a GPU, replayed from a CUDA graph.

At the paper's minibatch of 20 a GPU step is a few hundred tiny kernels: launch latency, not
arithmetic, bounds it. A CUDA graph records the step once and replays it with one launch.
Everything a step reads lives in static device tensors filled before each replay without a host
sync: the training rows of every member (one gather from the group's training sets, indices
copied from pageable host memory, which the copy stages at once) and, for the fused optimizer,
the per-member step sizes. Every member's noise and binarizer generators are registered with the
graph, so a replay draws exactly what the eager step would have drawn from them, and their
states (saved in checkpoints) advance as they would.

exact numerics: the graph holds the forward and backward passes; the optimizer (Python-number
step sizes, the single-run operations) runs eagerly after each replay.
fast numerics: the graph holds the whole step, the fused optimizer included.

The first WARMUP_STEPS steps run eagerly on a side stream, as torch requires before a capture;
they are ordinary training steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from benchmark.config import BATCH_SIZE
from benchmark.models import GroupObjectives
from benchmark.training.group import Member, StackedState
from benchmark.training.step import BoundFn, StepSpec, forward_backward, member_inputs

WARMUP_STEPS = 3


def cuda_graphs_supported() -> bool:
    """CUDA graphs with per-member generators need torch's graph-safe generator states."""
    return torch.cuda.is_available() and hasattr(torch.cuda.CUDAGraph, "register_generator_state")


class CudaGraphStep:
    """Callable like benchmark.training.step.EagerStep: steps -> per-example bounds (M, B)."""

    def __init__(self, state: StackedState, members: Sequence[Member], spec: StepSpec,
                 objective: BoundFn) -> None:
        if not cuda_graphs_supported():
            raise RuntimeError("this torch cannot capture CUDA graphs with custom generators; "
                               "run with cuda_graphs=False")
        self.state, self.members, self.spec, self.objective = state, list(members), spec, objective
        self.device = next(state.model.parameters()).device
        self.noise = [m.noise for m in self.members]
        self.group = GroupObjectives(spec.objectives, self.device)
        self.rows, self.offsets = _stacked_training_sets(self.members)
        self.index = torch.zeros(len(self.members) * BATCH_SIZE, dtype=torch.long,
                                 device=self.device)
        self.dynamic = [m.binarizer.dynamic for m in self.members]
        # made here: a capture may not copy from the host
        self.keep_binary = torch.tensor(self.dynamic, device=self.device).view(-1, 1, 1)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.per_example: Tensor | None = None  # the graph's output, (M, B)
        self.steps_done = 0

    def __call__(self, steps: Sequence[int]) -> Tensor:
        if self.steps_done < WARMUP_STEPS:
            self.steps_done += 1
            return self._eager_step(steps)
        self._fill_index(steps)
        fused = self.spec.fast
        if fused:
            self.state.optimizer.prepare_fused_step()
        if self.graph is None:
            self._capture()
        assert self.graph is not None and self.per_example is not None
        self.graph.replay()
        if fused:
            self.state.optimizer.advance()
        else:
            self.state.optimizer.step()
        self.steps_done += 1
        return self.per_example

    def _eager_step(self, steps: Sequence[int]) -> Tensor:
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            x = member_inputs(self.members, steps)
            out = forward_backward(self.state, self.spec, self.objective, x, self.noise,
                                   self.group)
            self.state.optimizer.step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        return out

    def _fill_index(self, steps: Sequence[int]) -> None:
        rows = np.concatenate([m.source.indices(s) + offset for m, s, offset
                               in zip(self.members, steps, self.offsets, strict=True)])
        self.index.copy_(torch.from_numpy(rows), non_blocking=True)  # pageable: staged now

    def _graph_inputs(self) -> Tensor:
        """The binarized minibatches (M, B, 784), drawn inside the graph from each member's
        binarizer generator exactly as DynamicBinarizer draws them."""
        gray = self.rows.index_select(0, self.index).view(len(self.members), BATCH_SIZE, -1)
        if not any(self.dynamic):
            return gray
        u = torch.zeros_like(gray)
        for i, member in enumerate(self.members):
            if self.dynamic[i]:
                u[i].uniform_(generator=member.binarizer.generator)
        binary = (u < gray).to(torch.float32)
        if all(self.dynamic):
            return binary
        return torch.where(self.keep_binary, binary, gray)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        for member in self.members:
            graph.register_generator_state(member.noise)
            if member.binarizer.dynamic:
                graph.register_generator_state(member.binarizer.generator)
        model = self.state.model
        for p in model.parameters():
            p.grad = None
        torch.cuda.synchronize(self.device)
        with torch.cuda.graph(graph):
            x = self._graph_inputs()
            self.per_example = forward_backward(self.state, self.spec, self.objective, x,
                                                self.noise, self.group)
            if self.spec.fast:
                self.state.optimizer.apply_fused_step()
        self.graph = graph


def _stacked_training_sets(members: Sequence[Member]) -> tuple[Tensor, list[int]]:
    """One device tensor holding every distinct training set of the group, and each member's
    row offset into it."""
    distinct: dict[int, Tensor] = {}
    for member in members:
        distinct.setdefault(id(member.source.data), member.source.data)
    starts, total = {}, 0
    for key, data in distinct.items():
        starts[key] = total
        total += data.shape[0]
    rows = torch.cat(list(distinct.values())) if len(distinct) > 1 else next(
        iter(distinct.values()))
    return rows, [starts[id(m.source.data)] for m in members]
