"""The paper's networks: Gaussian stochastic layers, Bernoulli decoder, and their log-weights.

Every parameter carries a leading *member* dimension M, so that M independent models of the same
architecture run as one batched computation (bmm); a single model is M = 1. Members never share
parameters or gradients: member m's loss depends only on slice m of every tensor.

Architectures (paper Section 5.1, Appendix C; the authors' code agrees):
  1 stochastic layer : q(h1|x) 784-200-200-(50),  p(x|h1) 50-200-200-784
  2 stochastic layers: q(h1|x) 784-200-200-(100), q(h2|h1) 100-100-100-(50),
                       p(h1|h2) 50-100-100-(100), p(x|h1) 100-200-200-784
Gaussian layers output a mean (linear) and a standard deviation sigma = exp(linear), both heads on
a shared tanh trunk; the prior on the top layer is N(0, I).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from benchmark.models.bernoulli_head import bernoulli_head_log_likelihood

X_DIM = 784
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
AUTHORS_INIT_SEED = 123  # every Linear of the authors' code draws from its own RandomState(123)

# One generator for the whole draw, or one per member (a member's draws then never depend on
# which other members share its batch).
Generators = torch.Generator | Sequence[torch.Generator] | None


@dataclass(frozen=True)
class BlockSpec:
    """One conditional distribution: input width, tanh hidden widths, output width."""

    n_in: int
    hidden: tuple[int, ...]
    n_out: int


@dataclass(frozen=True)
class Architecture:
    encoder: tuple[BlockSpec, ...]  # q(h1|x), q(h2|h1), ... bottom first
    decoder: tuple[BlockSpec, ...]  # p(x|h1), p(h1|h2), ... bottom first

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        return tuple(spec.n_out for spec in self.encoder)


ARCHITECTURES = {
    1: Architecture(
        encoder=(BlockSpec(X_DIM, (200, 200), 50),),
        decoder=(BlockSpec(50, (200, 200), X_DIM),),
    ),
    2: Architecture(
        encoder=(BlockSpec(X_DIM, (200, 200), 100), BlockSpec(100, (100, 100), 50)),
        decoder=(BlockSpec(100, (200, 200), X_DIM), BlockSpec(50, (100, 100), 100)),
    ),
}


def glorot_limit(n_in: int, n_out: int) -> float:
    return math.sqrt(6.0 / (n_in + n_out))


def authors_weight(n_in: int, n_out: int) -> np.ndarray:
    """The authors' Linear.random: U(-s, s) of shape (n_in, n_out) from a fresh RandomState(123),
    so that every layer of the same shape starts with the same weights."""
    s = glorot_limit(n_in, n_out)
    rng = np.random.RandomState(AUTHORS_INIT_SEED)
    return rng.uniform(low=-s, high=s, size=(n_in, n_out)).astype(np.float32)


def authors_logit(p: np.ndarray) -> np.ndarray:
    """-log(1/p - 1) in float32 steps, as datasets.get_train_bias_np computed it in float32;
    the log correctly rounded (their platform's logf may differ from it by one ulp)."""
    p = np.asarray(p, dtype=np.float32)
    odds = np.float32(1.0) / p - np.float32(1.0)
    return (-np.log(odds.astype(np.float64))).astype(np.float32)


class StackedLinear(nn.Module):
    """M independent affine maps: (M, N, n_in) -> (M, N, n_out)."""

    def __init__(self, members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.weight = nn.Parameter(torch.zeros(members, n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(members, 1, n_out))

    def forward(self, x: Tensor) -> Tensor:
        if torch.compiler.is_compiling():
            # Under torch.compile (the fast numerics) the bias add fuses into the next
            # elementwise kernel; baddbmm would first copy the broadcast bias into the output.
            return torch.bmm(x, self.weight) + self.bias
        return torch.baddbmm(self.bias, x, self.weight)


class Trunk(nn.Module):
    """The shared tanh layers of one conditional distribution."""

    def __init__(self, members: int, n_in: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        widths = (n_in, *hidden)
        self.layers = nn.ModuleList(
            StackedLinear(members, a, b) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x


class GaussianBlock(nn.Module):
    """N(mean, sigma^2) with sigma = exp(linear): returns (mean, log_sigma)."""

    def __init__(self, members: int, spec: BlockSpec) -> None:
        super().__init__()
        self.trunk = Trunk(members, spec.n_in, spec.hidden)
        self.mean = StackedLinear(members, spec.hidden[-1], spec.n_out)
        self.log_sigma = StackedLinear(members, spec.hidden[-1], spec.n_out)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.trunk(x)
        return self.mean(h), self.log_sigma(h)


class BernoulliBlock(nn.Module):
    """Bernoulli over pixels, parameterised by logits (never probabilities: no clipping)."""

    def __init__(self, members: int, spec: BlockSpec) -> None:
        super().__init__()
        self.trunk = Trunk(members, spec.n_in, spec.hidden)
        self.logits = StackedLinear(members, spec.hidden[-1], spec.n_out)

    def forward(self, h: Tensor) -> Tensor:
        return self.logits(self.trunk(h))


def gaussian_log_density(h: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    z = (h - mean) * torch.exp(-log_sigma)
    return -(0.5 * z.square() + log_sigma + HALF_LOG_2PI).sum(-1)


def standard_normal_log_density(h: Tensor) -> Tensor:
    return -(0.5 * h.square() + HALF_LOG_2PI).sum(-1)


def standard_normal(shape: tuple[int, ...], generator: Generators, device: torch.device | str,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """N(0, 1) draws of `shape` (members first). With one generator per member, slice m holds
    exactly what torch.randn(1, *shape[1:], generator=generator[m]) would have drawn."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if len(generator) != shape[0]:
        raise ValueError(f"{len(generator)} generators for {shape[0]} members")
    out = torch.empty(shape, device=device, dtype=dtype)
    for member, gen in enumerate(generator):
        out[member].normal_(generator=gen)  # randn is exactly empty().normal_()
    return out


def bernoulli_log_likelihood(logits: Tensor, x: Tensor) -> Tensor:
    """log p(x|logits) summed over pixels, in the stable softplus form of BCE-with-logits."""
    bce = F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
    return -bce.sum(-1)


MemberChoice = bool | Tensor  # for every member alike, or a (M,) bool tensor per member


def choose(which: MemberChoice, if_true: Tensor, if_false: Tensor) -> Tensor:
    """Member by member, if_true where `which` holds; torch.where passes each member exactly
    the gradient of the tensor it took (exact zeros to the other)."""
    if isinstance(which, bool):
        return if_true if which else if_false
    shape = (-1,) + (1,) * (if_true.dim() - 1)
    return torch.where(which.view(shape), if_true, if_false)


@dataclass(frozen=True)
class SampleRouting:
    """Where each member's gradient reaches q, for the estimators beyond reparameterisation.

    stop_q_params  log q(h|.) with q's parameters stopped and the sample's path kept (STL,
                   DReG): d/dphi of log q comes only through h.
    stop_samples   the samples stopped once drawn (reweighted wake-sleep): p sees constants,
                   and log q(h|.) carries only the gradient of q's parameters at those samples.
    sample_hook    called on the gradient reaching the layer-1 samples (M, k, B, d) before it
                   flows into q (DReG scales it by the normalised weights).

    No value changes: a routed log q is its reference value plus (s - s.detach()), which adds
    an exact zero while carrying the gradient of s."""

    stop_q_params: MemberChoice = False
    stop_samples: MemberChoice = False
    sample_hook: Callable[[Tensor], Tensor] | None = None

    def route(self, layer: int, block: GaussianBlock, inp: Tensor, h: Tensor, mean: Tensor,
              log_sigma: Tensor, log_q_terms: Tensor) -> tuple[Tensor, Tensor]:
        """One stochastic layer's (sample passed on, log q terms), both (M, k, B, d)."""
        if self.sample_hook is not None and layer == 0 and h.requires_grad:
            h.register_hook(self.sample_hook)
        routed = log_q_terms
        if self.stop_samples is not False:
            at_stopped = gaussian_log_density_terms(h.detach(), mean, log_sigma)
            routed = choose(self.stop_samples, straight_through(log_q_terms, at_stopped), routed)
            h = choose(self.stop_samples, h.detach(), h)
        if self.stop_q_params is not False:
            if layer == 0:  # q(h1|x): x carries no gradient, so stopping the outputs suffices
                mean_s, log_sigma_s = mean.detach(), log_sigma.detach()
            else:  # q(h_l|h_l-1): the parameters stopped, the path through h_l-1 kept
                frozen = {name: p.detach() for name, p in block.named_parameters()}
                mean_s, log_sigma_s = torch.func.functional_call(block, frozen, (inp,))
                mean_s, log_sigma_s = mean_s.view_as(h), log_sigma_s.view_as(h)
            path_only = gaussian_log_density_terms(h, mean_s, log_sigma_s)
            routed = choose(self.stop_q_params, straight_through(log_q_terms, path_only), routed)
        return h, routed


def gaussian_log_density_terms(h: Tensor, mean: Tensor, log_sigma: Tensor) -> Tensor:
    """log N(h; mean, sigma) per unit (not summed)."""
    z = (h - mean) * torch.exp(-log_sigma)
    return -(0.5 * z.square() + log_sigma + HALF_LOG_2PI)


def straight_through(value: Tensor, gradient_of: Tensor) -> Tensor:
    """`value` exactly, differentiated as `gradient_of`."""
    return value.detach() + (gradient_of - gradient_of.detach())


class IWAEModel(nn.Module):
    """M members of the 1- or 2-stochastic-layer model of the paper."""

    def __init__(self, layers: int, members: int = 1, arch: Architecture | None = None) -> None:
        """The paper's architecture for `layers`, or `arch` (tests use tiny exact models)."""
        super().__init__()
        if arch is None:
            if layers not in ARCHITECTURES:
                raise ValueError(f"layers must be 1 or 2, got {layers}")
            arch = ARCHITECTURES[layers]
        if len(arch.encoder) != layers or len(arch.decoder) != layers:
            raise ValueError("the architecture must have `layers` encoder and decoder blocks")
        self.n_layers = layers
        self.members = members
        self.arch = arch
        self.x_dim = arch.decoder[0].n_out
        self.encoder = nn.ModuleList(GaussianBlock(members, s) for s in self.arch.encoder)
        self.likelihood = BernoulliBlock(members, self.arch.decoder[0])
        self.prior_blocks = nn.ModuleList(GaussianBlock(members, s) for s in self.arch.decoder[1:])

    def linears(self) -> list[StackedLinear]:
        return [m for m in self.modules() if isinstance(m, StackedLinear)]

    # --- initialisation -------------------------------------------------------------------------
    def init_authors(self, output_bias: np.ndarray | None) -> None:
        """Fidelity `code`: Glorot-uniform weights, each Linear from its own RandomState(123)."""
        with torch.no_grad():
            for lin in self.linears():
                w = torch.from_numpy(authors_weight(lin.n_in, lin.n_out))
                lin.weight.copy_(w.expand_as(lin.weight))
                lin.bias.zero_()
            self._init_output_bias(output_bias)

    def init_glorot(self, generators: list[torch.Generator], output_bias: np.ndarray | None
                    ) -> None:
        """Fidelity `paper`: Glorot-uniform weights from one seeded generator per member."""
        with torch.no_grad():
            if len(generators) != self.members:
                raise ValueError("one generator per member")
            for lin in self.linears():
                s = glorot_limit(lin.n_in, lin.n_out)
                for m, gen in enumerate(generators):
                    u = torch.rand(lin.n_in, lin.n_out, generator=gen, dtype=torch.float32)
                    lin.weight[m].copy_(u * (2 * s) - s)
                lin.bias.zero_()
            self._init_output_bias(output_bias)

    def _init_output_bias(self, mean_pixel: np.ndarray | None) -> None:
        """Decoder output bias = logit(mean training pixel), as the authors did."""
        if mean_pixel is None:
            return
        bias = self.likelihood.logits.bias
        bias.copy_(torch.from_numpy(authors_logit(mean_pixel)).to(bias.dtype).expand_as(bias))

    # --- the model ------------------------------------------------------------------------------
    def log_weights(
        self,
        x: Tensor,
        k: int,
        generator: Generators = None,
        unit_masks: list[Tensor] | None = None,
    ) -> Tensor:
        """log w = log p(x, h) - log q(h|x) for k samples h ~ q(h|x) per example.

        x: (M, B, 784) binary. Returns (M, k, B). x is encoded once and the k samples are drawn
        from that encoding (the authors repeated x k times through the encoder: same numbers,
        k times the work). unit_masks (one bool (M, d) or (d,) tensor per stochastic layer,
        bottom first) prune latent units: a masked unit is removed from q, p and every network
        that reads it. `generator` may be one generator per member.
        """
        M, B, _ = x.shape
        eps = self.draw_noise(M, k, B, generator, x.device, x.dtype)
        return self.log_weights_given_noise(x, eps, unit_masks)

    def draw_noise(self, members: int, k: int, batch: int, generator: Generators,
                   device: torch.device | str, dtype: torch.dtype = torch.float32
                   ) -> list[Tensor]:
        """The reparameterisation noise of every stochastic layer, bottom first: (M, k, B, d)."""
        return [standard_normal((members, k, batch, d), generator, device, dtype)
                for d in self.arch.latent_sizes]

    def log_weights_given_noise(self, x: Tensor, eps: list[Tensor],
                                unit_masks: list[Tensor] | None = None,
                                fused_likelihood: bool = False,
                                routing: SampleRouting | None = None) -> Tensor:
        """log_weights with the noise given: eps from draw_noise, (M, k, B, d) per layer.

        fused_likelihood computes log p(x|h1) with the fused Bernoulli head
        (benchmark.models.bernoulli_head): the same quantity with fewer passes over the (k B, 784)
        logits, rounded differently. routing changes where the gradient flows, never a value
        (SampleRouting).
        """
        log_joint, log_q = self.log_weight_terms(x, eps, unit_masks, fused_likelihood, routing)
        return log_joint - log_q

    def log_weight_terms(self, x: Tensor, eps: list[Tensor],
                         unit_masks: list[Tensor] | None = None,
                         fused_likelihood: bool = False,
                         routing: SampleRouting | None = None) -> tuple[Tensor, Tensor]:
        """log p(x, h) and log q(h|x) of every sample, each (M, k, B): log w is their difference.

        With routing (training only, never with unit_masks), each member's gradient reaches q
        the way its estimator asks; the values are those computed without it, bit for bit."""
        if routing is not None and unit_masks is not None:
            raise ValueError("gradient routing is for training; pruned models are only scored")
        M, B, _ = x.shape
        k = eps[0].shape[1]
        log_q = x.new_zeros(M, k, B)
        log_p = x.new_zeros(M, k, B)
        samples: list[Tensor] = []  # per layer, (M, k*B, d)
        inp = x
        for layer, block in enumerate(self.encoder):
            mean, log_sigma = block(inp)
            if layer == 0:  # x is shared by all k samples: broadcast instead of repeating
                mean, log_sigma = mean.unsqueeze(1), log_sigma.unsqueeze(1)  # (M, 1, B, d)
            else:
                mean, log_sigma = mean.view(M, k, B, -1), log_sigma.view(M, k, B, -1)
            d = mean.shape[-1]
            noise = eps[layer]
            mask = self._mask(unit_masks, layer, x, M)
            if mask is not None:
                mask = mask.unsqueeze(1)  # (M, 1, 1, d)
                noise = noise * mask
                log_sigma = log_sigma * mask
            h = mean + torch.exp(log_sigma) * noise  # (M, k, B, d)
            log_q_terms = -(0.5 * noise.square() + log_sigma + HALF_LOG_2PI)
            if mask is not None:
                log_q_terms = log_q_terms * mask
                h = h * mask
            if routing is not None:
                h, log_q_terms = routing.route(layer, block, inp, h, mean, log_sigma,
                                               log_q_terms)
            log_q = log_q + log_q_terms.sum(-1)
            h = h.reshape(M, k * B, d)
            samples.append(h)
            inp = h

        top_mask = self._mask(unit_masks, self.n_layers - 1, x, M)
        prior_terms = -(0.5 * samples[-1].square() + HALF_LOG_2PI)
        if top_mask is not None:
            prior_terms = prior_terms * top_mask
        log_p = log_p + prior_terms.sum(-1).view(M, k, B)

        for layer, block in enumerate(self.prior_blocks, start=1):  # p(h_l | h_{l+1})
            mean, log_sigma = block(samples[layer])
            below = samples[layer - 1]
            z = (below - mean) * torch.exp(-log_sigma)
            terms = -(0.5 * z.square() + log_sigma + HALF_LOG_2PI)
            mask = self._mask(unit_masks, layer - 1, x, M)
            if mask is not None:
                terms = terms * mask
            log_p = log_p + terms.sum(-1).view(M, k, B)

        if fused_likelihood:
            head = self.likelihood.logits
            hidden = self.likelihood.trunk(samples[0])  # (M, k*B, H)
            log_px = bernoulli_head_log_likelihood(hidden, head.weight, head.bias, x, k)
        else:
            logits = self.likelihood(samples[0]).view(M, k, B, self.x_dim)
            log_px = bernoulli_log_likelihood(logits, x.unsqueeze(1))
        return log_p + log_px, log_q

    def encoder_parameters(self) -> list[nn.Parameter]:
        """q's parameters (the inference network)."""
        return list(self.encoder.parameters())

    def decoder_parameters(self) -> list[nn.Parameter]:
        """p's parameters (the generative network): p(x|h1) and p(h_l|h_l+1)."""
        return [*self.likelihood.parameters(), *self.prior_blocks.parameters()]

    @staticmethod
    def _mask(unit_masks: list[Tensor] | None, layer: int, like: Tensor, members: int
              ) -> Tensor | None:
        """Layer `layer`'s keep-mask as (M, 1, d) floats, or None when nothing is pruned."""
        if unit_masks is None:
            return None
        mask = unit_masks[layer].to(device=like.device, dtype=like.dtype)
        return mask.expand(members, -1).unsqueeze(1)

    def posterior_means(self, x: Tensor, generator: Generators = None) -> list[Tensor]:
        """The q-mean of every stochastic layer, as the authors' active-units statistic uses it:
        layer 1 at x, layer l+1 at one sampled h_l ~ q(h_l | .). x: (M, B, 784); each (M, B, d)."""
        means = []
        inp = x
        for block in self.encoder:
            mean, log_sigma = block(inp)
            means.append(mean)
            eps = standard_normal(tuple(mean.shape), generator, x.device, x.dtype)
            inp = mean + torch.exp(log_sigma) * eps
        return means

    def sample_images(self, n: int, generator: Generators = None) -> Tensor:
        """Bernoulli means of n ancestral samples from the prior: (M, n, 784)."""
        bias = self.likelihood.logits.bias  # the model's device and precision
        h = standard_normal((self.members, n, self.arch.latent_sizes[-1]), generator,
                            bias.device, bias.dtype)
        for block in reversed(self.prior_blocks):
            mean, log_sigma = block(h)
            eps = standard_normal(tuple(mean.shape), generator, bias.device, bias.dtype)
            h = mean + torch.exp(log_sigma) * eps
        return torch.sigmoid(self.likelihood(h))

    def reconstruct(self, x: Tensor) -> Tensor:
        """Bernoulli means of p(x | h1 = q-mean of h1): (M, B, 784)."""
        mean, _ = self.encoder[0](x)
        return torch.sigmoid(self.likelihood(mean))
