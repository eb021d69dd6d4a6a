"""Objectives and their gradient estimators, for a group whose members may each train another.

An Objective is what one run trains: a bound, whose per-example value the run reports, and a
surrogate, whose gradient is the run's estimator. On log-weights log w_i = log p(x, h_i) -
log q(h_i|x) with normalised weights w~_i = w_i / sum_j w_j:

  objective   bound reported    gradient (phi: the encoder q, theta: the decoder p)
  vae         VAE-k (ELBO)      autograd through the bound (reparameterisation)
  iwae        IWAE-k            autograd: sum_i w~_i d log w_i
  iwae, stl   IWAE-k            q's parameters stopped inside log q, the sample's path kept
                                (Roeder et al. 2017); theta as IWAE
  iwae, dreg  IWAE-k            phi: sum_i w~_i^2 d log w_i/d h_i d h_i/d phi, q's parameters
                                stopped inside log q (Tucker et al. 2018); theta as IWAE
  miwae       MIWAE(M, K)       autograd: the mean of M IWAE-K bounds (Rainforth et al. 2018)
  ciwae       CIWAE(beta)       autograd: beta ELBO + (1 - beta) IWAE on the same samples
  piwae       IWAE-MK           phi: MIWAE(M, K)'s gradient; theta: IWAE on all M K samples
  rws         IWAE-k            phi: the wake-phase update sum_i w~_i d log q(h_i|x)/d phi with
                                the samples stopped (Bornschein & Bengio 2015); theta as IWAE

DReG through a hook on the layer-1 samples' gradient: autograd through IWAE-k with log q's
parameters stopped brings sum_i w~_i d log w_i/d h_i to the samples; scaling it by w~_i there
gives the w~_i^2 of DReG and leaves theta's gradient, which never passes through the samples,
as IWAE's. PIWAE is the only objective whose two networks follow different surrogates: its
group takes two backward passes, one into each network's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from benchmark.definitions import (
    EstimatorDefinition,
    ObjectiveDefinition,
    Params,
    find_estimator,
    find_objective,
    normalise_params,
    samples_factor,
)
from benchmark.errors import UserError
from benchmark.models.network import IWAEModel, MemberChoice, SampleRouting, choose
from benchmark.models.objectives import bound, call

BoundFn = Callable[[str, Tensor], Tensor]  # benchmark.models.objectives.bound


@dataclass(frozen=True)
class Objective:
    """One run's objective and estimator (the RunConfig fields model, k, estimator, params),
    read through their definitions (benchmark.definitions)."""

    model: str
    k: int
    estimator: str | None = None
    params: Params = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", normalise_params(self.model, self.params))
        if self.definition is None:
            raise ValueError(f"unknown objective {self.model!r}")
        if self.estimator is not None and (self.estimation is None
                                           or self.estimation.of != self.model):
            raise ValueError(f"the {self.estimator} estimator is not one of {self.model}'s "
                             f"bound")
        wanted = {p.name for p in self.definition.parameters}
        if set(dict(self.params)) != wanted:
            raise ValueError(f"{self.model}: parameters {sorted(wanted)} are given, and only "
                             f"they (got {dict(self.params)})")

    @property
    def definition(self) -> ObjectiveDefinition | None:
        return find_objective(self.model)

    @property
    def estimation(self) -> EstimatorDefinition | None:
        return find_estimator(self.estimator)

    @property
    def settings(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def samples(self) -> int:
        """Importance samples per example: k, or M x K."""
        return self.k * samples_factor(self.model, self.params)

    @property
    def plain(self) -> bool:
        """The paper's VAE or IWAE with autograd's gradient: the exact path of before."""
        return self.definition.paper and self.estimator is None

    @property
    def stops_q_params(self) -> bool:
        return self.estimation is not None and self.estimation.stops_q_params

    @property
    def reweights_sample_gradients(self) -> bool:
        return self.estimation is not None and self.estimation.reweights_sample_gradients

    @property
    def stops_samples(self) -> bool:
        return self.definition.stops_samples

    @property
    def splits_gradients(self) -> bool:
        return self.definition.encoder_bound is not None


@dataclass(frozen=True)
class Estimate:
    """A group's forward pass. bound: each member's bound per example (M, B). surrogate: the
    per-example scalar whose gradient is each member's estimator; when encoder_surrogate is
    given, surrogate's gradient is meant for the decoder's parameters only and
    encoder_surrogate's for the encoder's (PIWAE)."""

    bound: Tensor
    surrogate: Tensor
    encoder_surrogate: Tensor | None = None


class SampleGradientScale:
    """A hook on the samples' gradient (M, k, B, d) that multiplies it by weights (M, k, B)
    set after the forward pass (DReG's second w~_i)."""

    def __init__(self) -> None:
        self.weights: Tensor | None = None

    def __call__(self, grad: Tensor) -> Tensor:
        if self.weights is None:
            raise RuntimeError("the DReG weights were not set before the backward pass")
        return grad * self.weights.unsqueeze(-1)


class GroupObjectives:
    """The objectives of a group's members, set up once (per-member masks live on the device:
    a CUDA-graph capture may not copy them from the host)."""

    def __init__(self, objectives: Sequence[Objective], device: torch.device | str) -> None:
        self.objectives = tuple(objectives)
        if len({o.samples for o in self.objectives}) != 1:
            raise ValueError("members of a group draw the same number of samples per example")
        self.samples = self.objectives[0].samples
        self.distinct = tuple(dict.fromkeys(self.objectives))
        self.device = device
        self.masks = {o: self._choice(lambda x, o=o: x == o) for o in self.distinct}
        self.plain = all(o.plain for o in self.distinct)
        self.splits_gradients = any(o.splits_gradients for o in self.distinct)
        self.stop_q_params = self._choice(lambda o: o.stops_q_params)
        self.stop_samples = self._choice(lambda o: o.stops_samples)
        self.dreg = self._choice(lambda o: o.reweights_sample_gradients)

    def _choice(self, predicate: Callable[[Objective], bool]) -> MemberChoice:
        flags = [predicate(o) for o in self.objectives]
        if len(set(flags)) == 1:
            return flags[0]
        return torch.tensor(flags, device=self.device)

    def per_member(self, values: dict[Objective, Tensor]) -> Tensor:
        """(M, B): each member's row from its own objective's tensor."""
        out = values[self.distinct[-1]]
        for objective in reversed(self.distinct[:-1]):
            out = choose(self.masks[objective], values[objective], out)
        return out

    def estimate(self, model: IWAEModel, x: Tensor, eps: list[Tensor],
                 bound_fn: BoundFn = bound, fused_likelihood: bool = False) -> Estimate:
        """Bounds and surrogates of every member on its minibatch x (M, B, 784) and noise eps
        (model.draw_noise with self.samples samples)."""
        if self.plain:  # the paper's objectives: autograd through the bound, as always
            log_w = model.log_weights_given_noise(x, eps, fused_likelihood=fused_likelihood)
            values = {o: bound_fn(o.model, log_w) for o in self.distinct}
            per_example = self.per_member(values)
            return Estimate(per_example, per_example)
        hook = SampleGradientScale() if self.dreg is not False else None
        routing = SampleRouting(self.stop_q_params, self.stop_samples, hook)
        log_joint, log_q = model.log_weight_terms(x, eps, fused_likelihood=fused_likelihood,
                                                  routing=routing)
        log_w = log_joint - log_q  # (M, S, B)
        if hook is not None:
            weights = torch.softmax(log_w.detach(), dim=1)
            hook.weights = choose(self.dreg, weights, torch.ones_like(weights))
        bounds, surrogates, encoder = {}, {}, {}
        for objective in self.distinct:
            value, surrogate, enc = objective_terms(objective, log_joint, log_q, log_w,
                                                    bound_fn)
            bounds[objective], surrogates[objective] = value, surrogate
            encoder[objective] = surrogate if enc is None else enc
        return Estimate(self.per_member(bounds), self.per_member(surrogates),
                        self.per_member(encoder) if self.splits_gradients else None)


def objective_terms(objective: Objective, log_joint: Tensor, log_q: Tensor, log_w: Tensor,
                    bound_fn: BoundFn = bound) -> tuple[Tensor, Tensor, Tensor | None]:
    """(bound, surrogate, encoder surrogate or None) of one objective, each (M, B), on terms
    computed with that objective's routing (with stl / dreg the routing has already changed
    log w's gradient)."""
    definition, settings = objective.definition, objective.settings
    if definition.terms is not None:
        return tuple(call(definition.terms, log_joint, log_q, log_w, params=settings))
    if definition.paper:  # read through bound_fn, as the plain path does (tests replace it)
        value = bound_fn(objective.model, log_w)
    else:
        value = call(definition.bound, log_w, params=settings)
    if definition.encoder_bound is None:
        return value, value, None
    return value, value, call(definition.encoder_bound, log_w, params=settings)


PROBE_MEMBERS, PROBE_EXAMPLES = 2, 3


def check_plugin_objectives(configs: Sequence[Any]) -> None:
    """Every plugin objective among the runs `configs` tried before any of them trains."""
    for objective in dict.fromkeys(objective_of(config) for config in configs):
        if objective.definition.plugin is not None:
            check_plugin_objective(objective)


def check_plugin_objective(objective: Objective) -> None:
    """A plugin's functions tried on small log-weights before any training: each must give a
    finite (members, examples) tensor that a gradient reaches. UserError naming the plugin."""
    definition = objective.definition
    where = f"objective {definition.name} of plugin {definition.plugin}"
    generator = torch.Generator().manual_seed(0)
    shape = (PROBE_MEMBERS, objective.samples, PROBE_EXAMPLES)
    log_q = torch.randn(shape, generator=generator, requires_grad=True)
    log_joint = (torch.randn(shape, generator=generator) - 90.0).requires_grad_()
    log_w = log_joint - log_q
    try:
        terms = objective_terms(objective, log_joint, log_q, log_w)
    except Exception as err:  # noqa: BLE001 - foreign code: any failure, told in one line
        detail = f"{type(err).__name__}: {err}".splitlines()[0]
        raise UserError(f"{where} fails on log-weights of shape {tuple(shape)} ({detail})") \
            from err
    for role, value in zip(("bound", "surrogate", "encoder surrogate"), terms, strict=True):
        if role == "encoder surrogate" and value is None:
            continue
        if not isinstance(value, Tensor) or tuple(value.shape) != shape[::2]:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise UserError(f"{where}: its {role} must be one value per member and example, "
                            f"shape {shape[::2]} for log-weights {shape} (members, samples, "
                            f"examples); got {got}")
        if not torch.isfinite(value).all():
            raise UserError(f"{where}: its {role} is not finite on finite log-weights")
    if not terms[1].requires_grad:
        raise UserError(f"{where}: no gradient reaches its surrogate from the log-weights "
                        f"(detached?)")


def estimator_backward(model: IWAEModel, estimate: Estimate,
                       loss_of: Callable[[Tensor], Tensor]) -> None:
    """Accumulate the estimators' gradients into .grad; loss_of turns per-example surrogates
    (M, B) into the scalar to minimise (benchmark.models.objectives.training_loss)."""
    if estimate.encoder_surrogate is None:
        loss_of(estimate.surrogate).backward()
        return
    torch.autograd.backward(loss_of(estimate.surrogate), inputs=model.decoder_parameters(),
                            retain_graph=True)
    torch.autograd.backward(loss_of(estimate.encoder_surrogate),
                            inputs=model.encoder_parameters())


def objective_of(config: Any) -> Objective:
    """The Objective of anything with RunConfig's fields."""
    return Objective(config.model, config.k, getattr(config, "estimator", None),
                     getattr(config, "params", ()))
