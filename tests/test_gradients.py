"""The log-weights and their gradients against references that share no code with the model:
a NumPy transcription of log w, finite differences (torch.autograd.gradcheck, float64, fixed
noise), and the hand-derived gradient of the IWAE and VAE bounds for a one-layer model.

The tests of test_estimators.py that compare the IWAE gradient with the normalised-weight sum
hold for any log-weights (both sides are autograd of the same function); these do not.
"""

import numpy as np
import pytest
import torch
from reference_model import (
    all_binary_images,
    fixed_noise,
    numpy_params,
    reference_log_weights,
    small_model,
)

from benchmark.models.objectives import iwae_bound, training_loss, vae_bound


def sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("fused", [False, True])
def test_log_weights_match_an_independent_transcription(layers, fused):
    """Two members, so that a member mixing up its slices shows too."""
    model = small_model(layers, members=2, seed=layers)
    x = all_binary_images()[::5]  # 13 images
    xs = torch.stack([x, x.flip(0)])  # (2, 13, 6): each member its own images
    eps = fixed_noise(model, 4, x.shape[0], seed=3)
    log_w = model.log_weights_given_noise(xs, eps, fused_likelihood=fused).detach().numpy()
    for m in range(2):
        expected = reference_log_weights(numpy_params(model, m), layers, xs[m].numpy(),
                                         [e[m].numpy() for e in eps])
        np.testing.assert_allclose(log_w[m], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_log_weight_gradients_match_finite_differences(layers):
    """gradcheck perturbs every parameter in place (float64, central differences, its default
    tolerances) with the noise held fixed: the whole Jacobian of the (1, k, B) log-weights."""
    model = small_model(layers, seed=10 + layers)
    x = all_binary_images()[[3, 22, 41, 60]][None]  # (1, 4, 6)
    eps = fixed_noise(model, 3, 4, seed=4)
    assert torch.autograd.gradcheck(lambda *_: model.log_weights_given_noise(x, eps),
                                    tuple(model.parameters()))


@pytest.mark.parametrize("layers", [1, 2])
def test_fused_head_gradients_match_finite_differences(layers):
    """The fused Bernoulli head has a hand-written backward that spends its saved logits, so it
    runs once per graph and gradcheck (which runs it twice) cannot be used. Instead, per
    parameter tensor, the directional derivative along a random direction v of a random linear
    functional of log w, against central differences: error O(h^2) ~ 1e-10 relative."""
    model = small_model(layers, seed=10 + layers)
    x = all_binary_images()[[3, 22, 41, 60]][None]
    eps = fixed_noise(model, 3, 4, seed=4)
    gen = torch.Generator().manual_seed(5)
    weights = torch.randn(1, 3, 4, generator=gen, dtype=torch.float64)

    def functional() -> torch.Tensor:
        return (weights * model.log_weights_given_noise(x, eps, fused_likelihood=True)).sum()

    grads = torch.autograd.grad(functional(), list(model.parameters()))
    h = 1e-5
    for (name, p), grad in zip(model.named_parameters(), grads, strict=True):
        v = torch.randn(p.shape, generator=gen, dtype=torch.float64)
        with torch.no_grad():
            p += h * v
            up = functional().item()
            p -= 2 * h * v
            down = functional().item()
            p += h * v
        numeric = (up - down) / (2 * h)
        assert (grad * v).sum().item() == pytest.approx(numeric, rel=1e-6, abs=1e-8), name


def hand_gradients(params: dict[str, np.ndarray], x: np.ndarray, eps: np.ndarray
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """For the one-layer model with one tanh layer in each trunk: log w (k, B) and, per sample,
    d log w / d theta for the decoder's output layer and the encoder's two head biases.

    h = mu + sigma eps with mu, log sigma the encoder heads, so with eps fixed
      d log w / d mu        = g,  g = d/dh [log N(h; 0, I) + log p(x|h)]
                                    = -h + ((x - sigmoid(l)) W_out^T * (1 - a^2)) W_1^T,
      d log w / d log sigma = g sigma eps + 1  (the +1: -log q = 0.5 eps^2 + log sigma + c),
      d log w / d b_out     = x - sigmoid(l),   d log w / d W_out = a^T (x - sigmoid(l)),
    with a = tanh(h W_1 + b_1) the decoder's hidden layer and l = a W_out + b_out."""
    enc_a = np.tanh(x @ params["encoder.0.trunk.layers.0.weight"]
                    + params["encoder.0.trunk.layers.0.bias"][0])
    mu = enc_a @ params["encoder.0.mean.weight"] + params["encoder.0.mean.bias"][0]
    log_sigma = (enc_a @ params["encoder.0.log_sigma.weight"]
                 + params["encoder.0.log_sigma.bias"][0])
    sigma = np.exp(log_sigma)
    h = mu + sigma * eps  # (k, B, d)
    w1, b1 = params["likelihood.trunk.layers.0.weight"], params["likelihood.trunk.layers.0.bias"]
    w_out, b_out = params["likelihood.logits.weight"], params["likelihood.logits.bias"]
    a = np.tanh(h @ w1 + b1[0])  # (k, B, H)
    logits = a @ w_out + b_out[0]  # (k, B, D)
    residual = x - sigmoid(logits)
    g = -h + ((residual @ w_out.T) * (1 - a**2)) @ w1.T  # (k, B, d)
    log_w = reference_log_weights(params, 1, x, [eps])
    per_sample = {
        "likelihood.logits.bias": residual,  # (k, B, D)
        "likelihood.logits.weight": a[..., :, None] * residual[..., None, :],  # (k, B, H, D)
        "encoder.0.mean.bias": g,
        "encoder.0.log_sigma.bias": g * sigma * eps + 1.0,
    }
    return log_w, per_sample


@pytest.mark.parametrize("objective", ["iwae", "vae"])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_bound_gradients_match_the_hand_derived_formula(objective, reduction):
    """IWAE: d L_k = sum_i w~_i d log w_i with w~ = softmax(log w) over the k samples (paper
    eq. 14); VAE: the mean over the samples. The training loss is minus the bound, summed or
    averaged over the minibatch."""
    model = small_model(1, seed=21)
    x = all_binary_images()[[1, 17, 30, 46, 63]]  # (B=5, 6)
    k = 6
    eps = fixed_noise(model, k, x.shape[0], seed=8)
    bound = iwae_bound if objective == "iwae" else vae_bound
    loss = training_loss(bound(model.log_weights_given_noise(x[None], eps)), reduction)
    model.zero_grad()
    loss.backward()
    grads = dict(model.named_parameters())

    log_w, per_sample = hand_gradients(numpy_params(model), x.numpy(), eps[0][0].numpy())
    if objective == "iwae":
        shifted = np.exp(log_w - log_w.max(axis=0))
        weights = shifted / shifted.sum(axis=0)  # (k, B)
    else:
        weights = np.full_like(log_w, 1.0 / k)
    scale = -1.0 if reduction == "sum" else -1.0 / x.shape[0]
    for name, g in per_sample.items():
        w = weights.reshape(weights.shape + (1,) * (g.ndim - 2))
        expected = scale * (w * g).sum(axis=(0, 1))
        actual = grads[name].grad[0].numpy().reshape(expected.shape)
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12, err_msg=name)
