"""Hamiltonian Monte Carlo transitions for AIS, one independent chain per (member, chain, example).

Each transition leaves f_beta(h) = base(h) exp(beta * increment(h)) invariant: a fresh N(0, I)
momentum, `leapfrog` leapfrog steps of the Hamiltonian U(h) + |p|^2 / 2 with U = -log f_beta
(unit mass), then a Metropolis accept/reject on the change in the Hamiltonian. Every chain has
its own step size, adapted as in the reference AIS code of Wu et al. 2017 (itself the Theano
tutorial's HMC sampler): an exponential moving average of the chain's acceptances (weight 0.9
on the past) is compared with a target of 0.65, the step is multiplied by 1.02 when above and
by 0.98 when below, and clipped to [1e-4, 0.5]; the first step is 0.01. The reference adapts one
step size for a whole batch of chains; one per chain lets a hard example shrink its steps
without slowing the others. Adapting from the chain's own past is what the reference does; the
strict AIS argument assumes fixed transitions, and the known-answer tests bound the effect.

The gradients of log base and of the increment are kept separately at the current state, so
that the next transition (at another beta) needs no extra evaluation: L gradient evaluations
per transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from benchmark.evaluation.annealing_path import AnnealingPath
from benchmark.models import Generators, standard_normal


@dataclass(frozen=True)
class HMCSettings:
    leapfrog: int = 10
    initial_step: float = 0.01
    target_acceptance: float = 0.65
    step_increase: float = 1.02
    step_decrease: float = 0.98
    min_step: float = 1e-4
    max_step: float = 0.5
    acceptance_memory: float = 0.9  # weight of the past in the moving average of acceptances

    def __post_init__(self) -> None:
        if self.leapfrog < 1:
            raise ValueError("leapfrog must be at least 1")
        if not 0 < self.min_step <= self.initial_step <= self.max_step:
            raise ValueError("need 0 < min_step <= initial_step <= max_step")


@dataclass
class ChainState:
    """Where every chain is, with the terms and gradients there; shapes (M, C, B[, d])."""

    h: Tensor
    log_base: Tensor
    increment: Tensor
    grad_base: Tensor
    grad_increment: Tensor
    step: Tensor  # (M, C, B, 1) the leapfrog step size of each chain
    recent_acceptance: Tensor  # (M, C, B) moving average of accepts, drives the step size
    accepted: Tensor  # (M, C, B) number of accepted transitions
    transitions: int = 0

    def acceptance_rate(self) -> Tensor:
        """Fraction of transitions accepted, per chain (NaN before the first)."""
        if self.transitions == 0:
            return torch.full_like(self.accepted, float("nan"))
        return self.accepted / self.transitions


def evaluate_terms(path: AnnealingPath, h: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """log base, increment and their gradients in h, all detached."""
    with torch.enable_grad():
        h = h.detach().requires_grad_(True)
        log_base, increment = path.log_terms(h)
        (grad_base,) = torch.autograd.grad(log_base.sum(), h, retain_graph=True)
        (grad_increment,) = torch.autograd.grad(increment.sum(), h)
    return log_base.detach(), increment.detach(), grad_base, grad_increment


def initial_state(path: AnnealingPath, h: Tensor, settings: HMCSettings) -> ChainState:
    log_base, increment, grad_base, grad_increment = evaluate_terms(path, h)
    shape = log_base.shape
    return ChainState(
        h=h.detach(), log_base=log_base, increment=increment, grad_base=grad_base,
        grad_increment=grad_increment,
        step=torch.full((*shape, 1), settings.initial_step, dtype=h.dtype, device=h.device),
        recent_acceptance=torch.full(shape, settings.target_acceptance, dtype=h.dtype,
                                     device=h.device),
        accepted=torch.zeros(shape, dtype=torch.float64, device=h.device))


def standard_uniform(shape: tuple[int, ...], generator: Generators, device: torch.device,
                     dtype: torch.dtype) -> Tensor:
    """U(0, 1) draws, one generator per member when given a list (as standard_normal)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(shape, generator=generator, device=device, dtype=dtype)
    out = torch.empty(shape, device=device, dtype=dtype)
    for member, gen in enumerate(generator):
        out[member].uniform_(generator=gen)
    return out


def hmc_transition(path: AnnealingPath, state: ChainState, beta: float, settings: HMCSettings,
                   generator: Generators) -> ChainState:
    """One HMC transition of every chain, leaving f_beta invariant."""
    h0 = state.h
    step = state.step
    momentum = standard_normal(tuple(h0.shape), generator, h0.device, h0.dtype)
    p = momentum + 0.5 * step * (state.grad_base + beta * state.grad_increment)
    h = h0
    for i in range(settings.leapfrog):
        h = h + step * p
        log_base, increment, grad_base, grad_increment = evaluate_terms(path, h)
        kick = step if i < settings.leapfrog - 1 else 0.5 * step
        p = p + kick * (grad_base + beta * grad_increment)
    energy_before = -(state.log_base + beta * state.increment) + 0.5 * momentum.square().sum(-1)
    energy_after = -(log_base + beta * increment) + 0.5 * p.square().sum(-1)
    log_accept = (energy_before - energy_after).double()
    u = standard_uniform(tuple(log_accept.shape), generator, h0.device, torch.float64)
    # A diverged trajectory (inf or NaN energy) is rejected, never accepted.
    accept = torch.isfinite(log_accept) & (torch.log(u) < log_accept)

    def pick(new: Tensor, old: Tensor) -> Tensor:
        mask = accept if new.dim() == accept.dim() else accept.unsqueeze(-1)
        return torch.where(mask, new, old)

    memory = settings.acceptance_memory
    recent = memory * state.recent_acceptance + (1 - memory) * accept.to(h0.dtype)
    factor = torch.full_like(recent, settings.step_decrease).masked_fill_(
        recent > settings.target_acceptance, settings.step_increase).unsqueeze(-1)
    return ChainState(
        h=pick(h, h0), log_base=pick(log_base, state.log_base),
        increment=pick(increment, state.increment), grad_base=pick(grad_base, state.grad_base),
        grad_increment=pick(grad_increment, state.grad_increment),
        step=(step * factor).clamp(settings.min_step, settings.max_step),
        recent_acceptance=recent, accepted=state.accepted + accept.double(),
        transitions=state.transitions + 1)
