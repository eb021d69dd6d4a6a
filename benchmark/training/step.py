"""One training step of a whole group: every member's minibatch, binarization, noise, bound,
backward pass and optimizer update, as one batched computation.

Nothing here synchronises with the host: the per-example bounds come back as a device tensor
that the training loop inspects only every CHECK_EVERY steps. Each member trains its own
objective and estimator (benchmark.models.estimators); a group draws one number of samples.

Numerics (see benchmark.training.stacked_adam for the optimizer half):
  exact  autograd through the reference log-weights (binary_cross_entropy_with_logits) and the
         single-run optimizer's own operations: a group of one is bit-identical to the
         single-run loop this replaced.
  fast   the same quantities in fewer passes over memory, rounded differently: on the CPU
         the forward pass is compiled (torch.compile fuses its elementwise work, and the
         backward's) and so is the optimizer; on a GPU the fused Bernoulli head
         (benchmark.models.bernoulli_head) and the fused optimizer run inside the step's CUDA graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.models import (
    GroupObjectives,
    IWAEModel,
    Objective,
    estimator_backward,
    training_loss,
)
from benchmark.training.group import Member, StackedState

COMPILED_VARIANTS = 64  # compiled graphs kept per function (dynamo's default is 8)
BoundFn = Callable[[str, Tensor], Tensor]  # benchmark.models.objectives.bound


@dataclass(frozen=True)
class StepSpec:
    """What every member of a group shares about its step.

    k is the number of importance samples drawn per example, the same for every member: a
    run's k, or M x K for MIWAE and PIWAE (RunConfig.samples). objectives holds each member's
    Objective; the paper's objectives may be given by name ("vae", "iwae"), as before the other
    objectives existed."""

    k: int
    reduction: str  # "sum" or "mean" (one fidelity per group)
    objectives: tuple[Objective, ...]  # per member
    numerics: str = "exact"

    def __post_init__(self) -> None:
        named = tuple(Objective(o, self.k) if isinstance(o, str) else o for o in self.objectives)
        object.__setattr__(self, "objectives", named)
        if any(o.samples != self.k for o in named):
            raise ValueError(f"every member draws k = {self.k} samples per example; got "
                             f"{sorted({o.samples for o in named})}")

    @property
    def fast(self) -> bool:
        return self.numerics == "fast"

    @property
    def fused_likelihood(self) -> bool:
        """The fused Bernoulli head spends its saved logits in its backward pass, so it cannot
        serve PIWAE's two backward passes: those groups keep the reference head."""
        return self.fast and not any(o.splits_gradients for o in self.objectives)


def forward_backward(state: StackedState, spec: StepSpec, objective: BoundFn, x: Tensor,
                     noise: Sequence[torch.Generator], group: GroupObjectives,
                     compiled: CompiledLoss | None = None) -> Tensor:
    """Log-weights, bounds, surrogates and gradients (left in .grad) for the minibatches
    x (M, B, 784); returns the per-example bounds (M, B), detached."""
    model = state.model
    eps = model.draw_noise(x.shape[0], spec.k, x.shape[1], noise, x.device)
    result = compiled(x, eps) if compiled is not None else None
    for p in model.parameters():
        p.grad = None
    if result is not None:
        loss, per_example = result
        loss.backward()
        return per_example
    estimate = group.estimate(model, x, eps, objective, fused_likelihood=spec.fused_likelihood)
    estimator_backward(model, estimate, lambda s: training_loss(s, spec.reduction))
    return estimate.bound.detach()


def _loss_given_noise(model: IWAEModel, x: Tensor, eps: list[Tensor], objective: BoundFn,
                      only_objective: str, is_iwae: Tensor | None, reduction: str
                      ) -> tuple[Tensor, Tensor]:
    """The paper's objectives only. only_objective names the objective of a uniform group
    (is_iwae None), else is ignored: the compiled graph depends on the group's make-up only
    through these two arguments."""
    log_w = model.log_weights_given_noise(x, eps)
    if is_iwae is None:
        per_example = objective(only_objective, log_w)
    else:
        per_example = torch.where(is_iwae, objective("iwae", log_w), objective("vae", log_w))
    return training_loss(per_example, reduction), per_example.detach()


class CompiledLoss:
    """The fast numerics' forward pass on the CPU for the paper's objectives (VAE, IWAE),
    log-weights to loss, as one torch.compile graph: inductor fuses the elementwise work that eager
    torch runs as dozens of passes, and AOTAutograd compiles the backward to match. The noise is
    drawn outside (each member from its own generator), so the compiled graph is deterministic. The
    model is an argument, not a closure, and sizes become dynamic after the first change, so groups
    of other models, sizes and k mostly reuse compiled graphs; the recompile limit is raised to
    COMPILED_VARIANTS for these calls (past it, dynamo would run the function eagerly and unfused).
    A compiler failure (no C++ compiler, say) returns None, and from then on always None: the caller
    goes eager, on the noise it has already drawn."""

    _compiled: Callable | None = None  # shared by every group of this process
    _failed = False

    def __init__(self, state: StackedState, spec: StepSpec, objective: BoundFn,
                 group: GroupObjectives) -> None:
        if not group.plain:
            raise ValueError("the compiled step is for groups of VAE and IWAE runs")
        self.model, self.spec, self.objective = state.model, spec, objective
        models = [o.model for o in spec.objectives]
        self.only = models[0] if len(set(models)) == 1 else "mixed"
        self.is_iwae = None if self.only != "mixed" else torch.tensor(
            [[m == "iwae"] for m in models], device=next(state.model.parameters()).device)

    def __call__(self, x: Tensor, eps: list[Tensor]) -> tuple[Tensor, Tensor] | None:
        cls = CompiledLoss
        if cls._failed:
            return None
        if cls._compiled is None:
            cls._compiled = torch.compile(_loss_given_noise)
        try:
            with torch._dynamo.config.patch(recompile_limit=COMPILED_VARIANTS):
                return cls._compiled(self.model, x, eps, self.objective, self.only,
                                     self.is_iwae, self.spec.reduction)
        except Exception as err:  # noqa: BLE001 - any compiler failure: stay eager
            warnings.warn(f"torch.compile of the training step failed ({type(err).__name__}); "
                          "using the eager fast path", RuntimeWarning, stacklevel=2)
            cls._failed = True
            return None


def member_inputs(members: Sequence[Member], steps: Sequence[int]) -> Tensor:
    """Every member's binarized minibatch at its own step, (M, B, 784): each member draws from
    its own binarizer exactly as a single run does."""
    if len(members) == 1:
        member = members[0]
        return member.binarizer(member.source.batch(steps[0])).unsqueeze(0)
    gray = torch.stack([m.source.batch(s) for m, s in zip(members, steps, strict=True)])
    if not all(m.binarizer.dynamic for m in members):
        return torch.stack([m.binarizer(g) for m, g in zip(members, gray, strict=True)])
    # one comparison for the group; u[i] holds exactly the draw member i's binarizer makes
    u = torch.empty_like(gray)
    for i, member in enumerate(members):
        u[i].uniform_(generator=member.binarizer.generator)
    return (u < gray).to(torch.float32)


class EagerStep:
    """The step as eager torch operations (CPU, or CUDA without graphs)."""

    def __init__(self, state: StackedState, members: Sequence[Member], spec: StepSpec,
                 objective: BoundFn, compile_cpu: bool = True) -> None:
        self.state, self.members, self.spec, self.objective = state, list(members), spec, objective
        self.noise = [m.noise for m in self.members]
        device = next(state.model.parameters()).device
        self.group = GroupObjectives(spec.objectives, device)
        use_compiler = spec.fast and compile_cpu and device.type == "cpu" and self.group.plain
        self.compiled = (CompiledLoss(state, spec, objective, self.group) if use_compiler
                         else None)

    def __call__(self, steps: Sequence[int]) -> Tensor:
        """Train every member one step; returns the per-example bounds (M, B), detached."""
        x = member_inputs(self.members, steps)
        per_example = forward_backward(self.state, self.spec, self.objective, x, self.noise,
                                       self.group, self.compiled)
        self.state.optimizer.step()
        return per_example


@contextmanager
def matmul_precision(allow_tf32: bool) -> Iterator[None]:
    """float32 matmuls and convolutions in IEEE float32 (default) or TF32, restored on exit."""
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = (matmul.allow_tf32, cudnn.allow_tf32)
    matmul.allow_tf32, cudnn.allow_tf32 = allow_tf32, allow_tf32
    try:
        yield
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
