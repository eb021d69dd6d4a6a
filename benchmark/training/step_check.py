"""Which step a group trains with, and on a GPU the proof that the CUDA-graph step is the eager one.

A CUDA graph replays recorded kernels with the addresses and generator offsets of its capture: a
stale input, a generator that is not registered, or a driver that captures differently would make
it train something else, silently. So before a group trusts the graph path (at the start of every
CUDA run, and again whenever a group is re-formed as members leave), a copy of the group is stepped
CHECK_STEPS times eagerly and CHECK_STEPS times through the graph path, both from the group's
current parameters, Adam moments and generator states, on the same minibatches. Enough steps are
taken for the graph path to warm up eagerly, capture, and replay twice. Then everything a step
changes is compared: the per-example bounds of every step, the parameters, both moments, the steps
taken, and the state of every noise and binarizer generator.

exact numerics: the two paths run the same kernels on the same inputs, so they must agree bit for
bit. fast numerics: also the same kernels; the bound FAST_TOLERANCE (derived there) only leaves
room for a reordered float32 reduction, which a capture may choose, and is orders of magnitude
below what a wrong input or draw produces.

On a mismatch, or when the graph path raises (a capture failure), the group trains eagerly, one
warning line is printed, and each member's result.json says which path ran and why
(environment.execution.step_paths). The check is itself tested on the CPU through
`graph_step_factory`, which tests replace with a fake graph step that mismatches on purpose.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from benchmark.data import make_binarizer
from benchmark.training.execution import ExecutionOptions
from benchmark.training.group import Member, StackedState
from benchmark.training.step import BoundFn, EagerStep, StepSpec

StepFn = Callable[[Sequence[int]], Tensor]  # steps of every member -> bounds (M, B)
StepFactory = Callable[[StackedState, Sequence[Member], StepSpec, BoundFn], StepFn]

GRAPH_PATH, EAGER_PATH = "cuda_graph", "eager"

# Fast numerics: |graph - eager| <= atol + rtol * scale, with scale |eager| elementwise for the
# bounds and parameters, and the tensor's largest |eager| for the moments (exact: equality).
# float32 rounds to u = 6e-8 per operation; a reduction of n terms reordered (another matmul
# blocking) moves by at most about n * 2u of the sum of the terms' magnitudes. A bound sums 784
# pixel terms and the latent terms: 784 * 1.2e-7 = 9.4e-5 of a few hundred nats, hence rtol 1e-4.
# A gradient element sums terms as large as the tensor's largest gradients while cancelling to
# any size, so its error scales with the tensor's largest value: rtol 1e-4 of that for the
# moments. An Adam step moves a parameter by at most ~lr = 1e-3, so a 1e-4 relative error in it
# is 1e-7 a step (atol 1e-6 over the check's steps). A wrong binarization or noise draw changes
# a bound by whole nats: far outside these.
FAST_TOLERANCE = {"bounds": (1e-4, 1e-5), "parameters": (1e-4, 1e-6), "moments": (1e-4, 1e-6)}
SCALED_BY_LARGEST = frozenset({"moments"})


def graph_step_factory(device: torch.device) -> tuple[StepFactory | None, str]:
    """The CUDA-graph step for `device`, or None and why there is none (tests replace this to
    exercise the check and the fallback on the CPU)."""
    if device.type != "cuda":
        return None, f"the device is {device.type}"
    from benchmark.training.cuda_graph_step import CudaGraphStep, cuda_graphs_supported

    if not cuda_graphs_supported():
        return None, "this torch cannot capture CUDA graphs with per-member generators"
    return CudaGraphStep, ""


def check_steps() -> int:
    """Warm-up, capture and two replays of the graph path."""
    from benchmark.training.cuda_graph_step import WARMUP_STEPS

    return WARMUP_STEPS + 2


@dataclass(frozen=True)
class StepPath:
    """Which step a group trains with, why, and what the self-check found (None: no check)."""

    path: str  # GRAPH_PATH or EAGER_PATH
    reason: str
    check: dict[str, Any] | None = None

    def record(self, from_step: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"from_step": from_step, "path": self.path, "reason": self.reason}
        if self.check is not None:
            entry["self_check"] = self.check
        return entry


def choose_step(state: StackedState, members: Sequence[Member], spec: StepSpec,
                objective: BoundFn, options: ExecutionOptions) -> tuple[StepFn, StepPath]:
    """The step this group trains with: the CUDA-graph step once it has proved itself on a copy of
    the group, else the eager step (with the reason)."""
    device = next(state.model.parameters()).device

    def eager() -> StepFn:
        return EagerStep(state, members, spec, objective, compile_cpu=options.compile_cpu)

    if not options.cuda_graphs:
        return eager(), StepPath(EAGER_PATH, "--no-cuda-graphs")
    factory, why_not = graph_step_factory(device)
    if factory is None:
        return eager(), StepPath(EAGER_PATH, why_not)
    verdict = self_check(state, members, spec, objective, EagerStep, factory)
    if verdict["matches"]:
        detail = "bit-identical" if verdict["tolerance"] == "equal" else "within tolerance"
        return (factory(state, members, spec, objective),
                StepPath(GRAPH_PATH, f"self-check passed ({detail} over "
                                     f"{verdict['steps']} steps)", verdict))
    reason = f"self-check failed: {verdict['mismatch']}"
    ids = ", ".join(str(m.common.get("run_id") or m.run_dir.name) for m in members)
    print(f"warning: {ids}: the CUDA-graph step is not the eager step ({verdict['mismatch']}); "
          "training eagerly, recorded in result.json", file=sys.stderr, flush=True)
    return eager(), StepPath(EAGER_PATH, reason, verdict)


def record_step_path(members: Sequence[Member], choice: StepPath) -> None:
    """Each member's record states the step paths it trained with (environment.execution):
    a new entry whenever the path or its reason changes, kept across resumes by the checkpoint."""
    for member in members:
        entry = choice.record(member.step)
        last = member.step_paths[-1] if member.step_paths else None
        if last is None or (last["path"], last["reason"]) != (entry["path"], entry["reason"]):
            member.step_paths.append(entry)
        execution = member.common["env"]["execution"]
        execution["step_paths"] = [dict(e) for e in member.step_paths]
        execution["cuda_graphs"] = choice.path == GRAPH_PATH


def self_check(state: StackedState, members: Sequence[Member], spec: StepSpec,
               objective: BoundFn, reference: StepFactory, candidate: StepFactory,
               steps: int | None = None) -> dict[str, Any]:
    """Step two copies of the group, one with each factory, and compare what they changed.
    Returns {"matches", "steps", "tolerance", "mismatch" (None or what differed first),
    "max_abs_diff"}. A candidate that raises is a mismatch; the group itself is never touched."""
    n = steps or check_steps()
    tolerance = FAST_TOLERANCE if spec.fast else None
    ref = _stepped_copy(state, members, spec, objective, reference, n)
    try:
        cand = _stepped_copy(state, members, spec, objective, candidate, n)
    except Exception as err:  # noqa: BLE001 - a capture failure of any kind: train eagerly
        message = f"{type(err).__name__}: {err}".splitlines()[0]
        return {"matches": False, "steps": n, "tolerance": _describe(tolerance),
                "mismatch": f"the graph step raised {message}", "max_abs_diff": None}
    mismatch, worst = _compare(ref, cand, tolerance)
    return {"matches": mismatch is None, "steps": n, "tolerance": _describe(tolerance),
            "mismatch": mismatch, "max_abs_diff": worst}


def _describe(tolerance: dict[str, tuple[float, float]] | None) -> str:
    if tolerance is None:
        return "equal"
    return "; ".join(f"{name}: rtol {r:g}, atol {a:g}" for name, (r, a) in tolerance.items())


@dataclass
class _Outcome:
    bounds: list[Tensor]  # per step, (M, B)
    parameters: list[Tensor]
    moments: list[Tensor]  # first moments, then second moments
    taken: list[int]
    generators: list[Tensor]  # every member's noise and binarizer generator states


def _stepped_copy(state: StackedState, members: Sequence[Member], spec: StepSpec,
                  objective: BoundFn, factory: StepFactory, n: int) -> _Outcome:
    copy_state, copy_members = clone_group(state, members)
    step = factory(copy_state, copy_members, spec, objective)
    bounds = [step([m.step + i for m in copy_members]).detach().clone() for i in range(n)]
    device = next(copy_state.model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    optimizer = copy_state.optimizer
    return _Outcome(
        bounds=bounds,
        parameters=[p.detach().clone() for p in copy_state.model.parameters()],
        moments=[t.detach().clone() for t in (*optimizer.m, *optimizer.v)],
        taken=list(optimizer.taken),
        generators=[state_of for m in copy_members for state_of in _generator_states(m)],
    )


def _generator_states(member: Member) -> list[Tensor]:
    states = [member.noise.get_state()]
    if member.binarizer.dynamic:
        states.append(member.binarizer.generator.get_state())
    return states


def clone_group(state: StackedState, members: Sequence[Member]
                ) -> tuple[StackedState, list[Member]]:
    """An independent copy of the group: parameters, optimizer state and every generator copied;
    the read-only parts (data, plans) shared."""
    model = type(state.model)(state.model.n_layers, members=state.model.members,
                              arch=state.model.arch)
    device = next(state.model.parameters()).device
    model.to(device)
    with torch.no_grad():
        for mine, theirs in zip(model.parameters(), state.model.parameters(), strict=True):
            mine.copy_(theirs)
    optimizer = state.optimizer.select(range(state.model.members), list(model.parameters()))
    optimizer.step_sizes.copy_(state.optimizer.step_sizes)
    copies = [replace(m, noise=_clone_generator(m.noise), binarizer=_clone_binarizer(m))
              for m in members]
    return StackedState(model, optimizer), copies


def _clone_generator(generator: torch.Generator) -> torch.Generator:
    clone = torch.Generator(device=generator.device)
    clone.set_state(generator.get_state())
    return clone


def _clone_binarizer(member: Member) -> Any:
    binarizer = member.binarizer
    if not binarizer.dynamic:
        return binarizer  # stateless
    clone = make_binarizer(True, binarizer.seed, binarizer.device)
    clone.load_state_dict(binarizer.state_dict())
    return clone


def _compare(ref: _Outcome, cand: _Outcome, tolerance: dict[str, tuple[float, float]] | None
             ) -> tuple[str | None, float]:
    """(what differs first, or None; the largest absolute difference of any float quantity)."""
    worst = 0.0
    first: str | None = None
    groups = (("bounds", ref.bounds, cand.bounds), ("parameters", ref.parameters, cand.parameters),
              ("moments", ref.moments, cand.moments))
    for name, mine, theirs in groups:
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            diff = _max_abs_diff(a, b)
            worst = max(worst, diff)
            if first is None and not _agree(a, b, None if tolerance is None else tolerance[name],
                                            name in SCALED_BY_LARGEST):
                first = f"{name} differ (tensor {i}, max |difference| {diff:.3g})"
    if first is None and ref.taken != cand.taken:
        first = f"optimizer steps taken differ ({ref.taken} vs {cand.taken})"
    if first is None:
        for i, (a, b) in enumerate(zip(ref.generators, cand.generators, strict=True)):
            if not torch.equal(a, b):
                first = f"generator {i} ended in another state (the draws are not the same)"
                break
    return first, worst


def _max_abs_diff(a: Tensor, b: Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    diff = (a.double() - b.double()).abs()
    return float(torch.nan_to_num(diff, nan=float("inf")).max()) if diff.numel() else 0.0


def _agree(a: Tensor, b: Tensor, tolerance: tuple[float, float] | None,
           by_largest: bool = False) -> bool:
    """a is the candidate, b the reference; see FAST_TOLERANCE."""
    if a.shape != b.shape:
        return False
    if tolerance is None:
        return torch.equal(a, b)
    rtol, atol = tolerance
    a, b = a.double(), b.double()
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        return torch.equal(a, b)
    scale = b.abs().max() if by_largest and b.numel() else b.abs()
    return bool(((a - b).abs() <= atol + rtol * scale).all())
