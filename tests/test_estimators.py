"""Known-answer and gradient tests of the VAE-k / IWAE-k bounds and the L_k estimator.

The exact model is the package's own IWAEModel with a tiny architecture: a 1-dimensional latent
(or 1+1 for two stochastic layers) and 6 pixels, so log p(x) can be integrated on a fine grid.
"""

import io
import math
import sys
import warnings

import numpy as np
import pytest
import torch

from benchmark.evaluation.likelihood import (
    log_likelihood_estimates,
    noise_layout,
    summarise_nll,
)
from benchmark.models.network import Architecture, BlockSpec, IWAEModel
from benchmark.models.objectives import bound, iwae_bound, training_loss, vae_bound

X_DIM = 6
TINY = {
    1: Architecture(encoder=(BlockSpec(X_DIM, (8,), 1),), decoder=(BlockSpec(1, (8,), X_DIM),)),
    2: Architecture(encoder=(BlockSpec(X_DIM, (8,), 1), BlockSpec(1, (4,), 1)),
                    decoder=(BlockSpec(1, (8,), X_DIM), BlockSpec(1, (4,), 1))),
}


def tiny_model(layers: int, seed: int = 0) -> IWAEModel:
    model = IWAEModel(layers, arch=TINY[layers]).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5)
    return model


def fitted_tiny_model(layers: int) -> IWAEModel:
    """A tiny model whose encoder has been fitted (IWAE, k=20) to the 64 images, so that the
    importance weights are light-tailed and their variance can be estimated reliably."""
    model = tiny_model(layers)
    x = all_binary_images()[None]
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    gen = torch.Generator().manual_seed(5)
    for _ in range(300):
        opt.zero_grad()
        training_loss(iwae_bound(model.log_weights(x, 20, gen)), "mean").backward()
        opt.step()
    return model


def all_binary_images() -> torch.Tensor:
    grid = torch.tensor(list(np.ndindex(*(2,) * X_DIM)), dtype=torch.float64)
    return grid  # (64, 6)


def normal_log_density(h, mean, log_sigma):
    return -0.5 * ((h - mean) / torch.exp(log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def exact_log_px(model: IWAEModel, x: torch.Tensor) -> torch.Tensor:
    """log p(x) by the trapezoid rule on [-8, 8] (and [-8, 8]^2 for two layers)."""
    grid = torch.linspace(-8, 8, 4001, dtype=torch.float64)
    dh = grid[1] - grid[0]
    log_prior = -0.5 * grid**2 - 0.5 * math.log(2 * math.pi)  # (G,)
    logits = model.likelihood(grid.view(1, -1, 1))[0]  # (G, 6)
    log_px_given_h = (x[:, None, :] * logits - torch.nn.functional.softplus(logits)).sum(-1)
    if model.n_layers == 1:
        integrand = log_px_given_h + log_prior  # (N, G)
        return torch.logsumexp(integrand, dim=1) + torch.log(dh)
    # two layers: p(x) = int int p(x|h1) p(h1|h2) p(h2) dh1 dh2 on a coarser square grid
    g2 = torch.linspace(-8, 8, 801, dtype=torch.float64)
    d2 = g2[1] - g2[0]
    mean, log_sigma = model.prior_blocks[0](g2.view(1, -1, 1))
    log_h1_given_h2 = normal_log_density(g2.view(1, -1), mean[0], log_sigma[0])  # (H2, H1)
    logits1 = model.likelihood(g2.view(1, -1, 1))[0]
    lp_x = (x[:, None, :] * logits1 - torch.nn.functional.softplus(logits1)).sum(-1)  # (N, H1)
    log_p_h2 = -0.5 * g2**2 - 0.5 * math.log(2 * math.pi)
    joint = lp_x[:, None, :] + log_h1_given_h2[None] + log_p_h2[None, :, None]
    return torch.logsumexp(joint.flatten(1), dim=1) + 2 * torch.log(d2)


@pytest.mark.parametrize("layers", [1, 2])
def test_exact_log_px_is_a_distribution(layers):
    """Sanity of the quadrature itself: p(x) sums to one over all 64 binary images."""
    model = tiny_model(layers)
    total = torch.logsumexp(exact_log_px(model, all_binary_images()), dim=0)
    # the 2-d grid is coarser (801^2 points); its error stays far below the estimator tolerance
    assert abs(total.item()) < (1e-6 if layers == 1 else 1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("layers,rows_per_chunk", [(1, 16384), (1, 700), (2, 16384)])
def test_lk_rises_with_k_and_l5000_matches_exact(layers, rows_per_chunk):
    """rows_per_chunk 700 splits the 5000 samples of each image over several chunks."""
    x = all_binary_images()
    # E[L_k] is non-decreasing in k (Burda et al. Theorem 1). With an unfitted encoder the gaps
    # between these k are large, and averaged over 64 images the Monte-Carlo noise is far below.
    raw = tiny_model(layers)
    means = [log_likelihood_estimates(raw, x[None], k, torch.Generator().manual_seed(k))[0].mean()
             for k in (1, 5, 50, 5000)]
    assert means == sorted(means), means
    assert means[-1] - means[0] > 0.5
    assert means[-1] < exact_log_px(raw, x).mean().item() + 0.05

    model = fitted_tiny_model(layers)
    exact = exact_log_px(model, x)

    # Tolerance from the estimator's variance: for large k, L_k - log p(x) has mean about
    # -s^2/(2k) and standard deviation about s/sqrt(k), with s^2 = Var(w)/p(x)^2 estimated here
    # from 20,000 fresh importance weights per image; allow 6 standard deviations plus the bias.
    k = 5000
    est = log_likelihood_estimates(model, x[None], k, torch.Generator().manual_seed(99),
                                   rows_per_chunk=rows_per_chunk)[0]
    log_w = model.log_weights(x[None], 20000, torch.Generator().manual_seed(7))[0].detach()
    rel = torch.exp(log_w - exact[None])  # w / p(x): mean 1
    s2 = rel.var(dim=0).numpy()
    err = est - exact.numpy()
    tolerance = s2 / (2 * k) + 6 * np.sqrt(s2 / k)
    assert np.all(np.abs(err) <= tolerance), (err, tolerance)
    # The mean error over the 64 images: the images' estimates are independent, so it has
    # expectation -mean(s^2)/(2k) and standard deviation sqrt(sum_i s_i^2/k)/64 (measured:
    # about 9e-4 nats, with mean(s^2) about 0.24). Four of them (3.5e-3) let a constant shift
    # of 0.005 nats in every log w fail, which the per-image band above lets through.
    mean_sd = np.sqrt((s2 / k).sum()) / len(s2)
    assert abs(err.mean() + (s2 / (2 * k)).mean()) <= 4 * mean_sd, (err.mean(), mean_sd)
    assert np.all(rel.mean(dim=0).numpy() == pytest.approx(1.0, abs=0.1))  # unbiased w/p


@pytest.mark.parametrize("layers", [1, 2])
def test_lk_is_the_log_mean_of_the_weights_drawn_piece_by_piece(layers):
    """L_k against the log-mean-exp of log_weights drawn in the documented layout: with k = 7
    and 6 rows a chunk, one example a batch and its samples in pieces of 6 and 1. Exact, so it
    catches a wrong -log k, a wrong piece size or a concatenation along the wrong axis (the
    known-answer test above is marked slow and is not among mutation testing's tests)."""
    model = tiny_model(layers)
    x = all_binary_images()[::9][None]  # (1, 8, 6)
    got = log_likelihood_estimates(model, x, 7, torch.Generator().manual_seed(3), rows_per_chunk=6)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        expected = [torch.logsumexp(torch.cat([model.log_weights(x[:, i:i + 1], n, gen)
                                               for n in (6, 1)], dim=1), dim=1) - math.log(7)
                    for i in range(x.shape[1])]
    assert got.shape == (1, 8)
    np.testing.assert_array_equal(got, torch.cat(expected, dim=1).numpy())
    # pieces of at most rows_per_chunk rows, down to one sample a piece
    assert noise_layout(7, 6) == (1, 6) and noise_layout(7, 1) == (1, 1)


class Terminal(io.StringIO):
    """A captured stderr that says it is a terminal, as tqdm asks before drawing a bar."""

    def isatty(self) -> bool:
        return True


def test_the_lk_progress_bar_shows_only_when_asked(monkeypatch):
    """Evaluations inside training and tests run silent unless show_progress is given, even on
    a terminal; asked, the bar is labelled with the k of the estimate."""
    x = all_binary_images()[:3][None]
    for show in (None, False, True):
        stderr = Terminal()
        monkeypatch.setattr(sys, "stderr", stderr)
        shown = {} if show is None else {"show_progress": show}
        log_likelihood_estimates(tiny_model(1), x, 7, torch.Generator().manual_seed(3), **shown)
        monkeypatch.undo()
        assert ("L_7" in stderr.getvalue()) == bool(show), (show, stderr.getvalue())


def test_nll_summary_is_the_mean_and_its_standard_error_in_float64():
    summary = summarise_nll(np.array([-1.0, -2.0, -3.0, -4.0]))
    assert (summary.nll, summary.n) == (2.5, 4)
    assert summary.se == pytest.approx(np.sqrt(5 / 3) / 2, rel=1e-12)  # sd (ddof 1) / sqrt(n)
    # two images: sd 3 / sqrt(2), over sqrt(2)
    assert summarise_nll(np.array([-1.0, -4.0])).se == pytest.approx(1.5, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy warning about 0 degrees of freedom
        assert math.isnan(summarise_nll(np.array([-90.0])).se)  # one image: no standard error
    # float32 values are summed in float64: in float32 (1e8 + 1 is 1e8) this mean is 0.25
    assert summarise_nll(np.array([1e8, 1, -1e8, 1], dtype=np.float32)).nll == -0.5


def test_vae_and_iwae_agree_at_k1():
    log_w = torch.randn(2, 1, 9, dtype=torch.float64)
    torch.testing.assert_close(vae_bound(log_w), iwae_bound(log_w))
    torch.testing.assert_close(bound("vae", log_w), log_w[:, 0])


def test_iwae_bound_is_stable_for_extreme_log_weights():
    log_w = torch.tensor([[[-1e4], [-1e4 + 1.0]]], dtype=torch.float32)  # (1, 2, 1)
    value = iwae_bound(log_w).item()
    assert math.isfinite(value)
    assert value == pytest.approx(-1e4 + math.log((1 + math.e) / 2), abs=1e-2)


def per_sample_gradients(model, x, k, seed):
    """Gradients of each log w_i separately, with the same samples every time."""
    grads = []
    for i in range(k):
        model.zero_grad()
        log_w = model.log_weights(x, k, torch.Generator().manual_seed(seed))
        log_w[0, i].sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    log_w = model.log_weights(x, k, torch.Generator().manual_seed(seed)).detach()
    return grads, log_w


@pytest.mark.parametrize("layers", [1, 2])
def test_iwae_gradient_is_normalised_weight_sum(layers):
    model = tiny_model(layers, seed=3)
    x = all_binary_images()[5:6][None]  # one example
    k = 7
    grads, log_w = per_sample_gradients(model, x, k, seed=11)
    weights = torch.softmax(log_w[0, :, 0], dim=0)  # normalised importance weights
    model.zero_grad()
    iwae_bound(model.log_weights(x, k, torch.Generator().manual_seed(11))).sum().backward()
    for j, p in enumerate(model.parameters()):
        expected = sum(weights[i] * grads[i][j] for i in range(k))
        torch.testing.assert_close(p.grad, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_vae_gradient_is_mean_of_per_sample_gradients(layers):
    model = tiny_model(layers, seed=4)
    x = all_binary_images()[9:10][None]
    k = 5
    grads, _ = per_sample_gradients(model, x, k, seed=12)
    model.zero_grad()
    vae_bound(model.log_weights(x, k, torch.Generator().manual_seed(12))).sum().backward()
    for j, p in enumerate(model.parameters()):
        expected = sum(g[j] for g in grads) / k
        torch.testing.assert_close(p.grad, expected, rtol=1e-9, atol=1e-12)


def test_training_loss_sums_or_averages_the_minibatch():
    per_example = torch.tensor([[1.0, 2.0, 3.0]])
    assert training_loss(per_example, "sum").item() == -6.0
    assert training_loss(per_example, "mean").item() == -2.0


def test_each_members_loss_is_its_own_and_the_members_are_summed():
    """A group's loss: member m's sum or mean over its own minibatch, added over members (so
    that every member gets exactly the gradient it would get alone)."""
    per_example = torch.tensor([[1.0, 2.0, 3.0], [10.0, 20.0, 30.0]])
    assert training_loss(per_example, "sum").item() == -66.0
    assert training_loss(per_example, "mean").item() == -22.0
    with pytest.raises(ValueError, match="unknown reduction 'median'"):
        training_loss(per_example, "median")
    with pytest.raises(ValueError, match="unknown objective 'nonsense'.*'vae', 'iwae'"):
        bound("nonsense", per_example[:, :, None])
