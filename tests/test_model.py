"""Architecture shapes, both initialisations, the decoder bias, member independence."""

import math

import numpy as np
import pytest
import torch
from reference_model import SMALL, X_DIM, all_binary_images, fixed_noise, small_model

import benchmark.models.network as network
from benchmark.models.network import (
    ARCHITECTURES,
    Architecture,
    BlockSpec,
    IWAEModel,
    SampleRouting,
    StackedLinear,
    authors_logit,
    authors_weight,
    choose,
    gaussian_log_density,
    glorot_limit,
    standard_normal,
    standard_normal_log_density,
)


def param_shapes(model: IWAEModel) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape[1:]) for name, p in model.named_parameters()}


def test_one_layer_architecture_matches_the_paper():
    shapes = param_shapes(IWAEModel(1))
    assert shapes == {
        "encoder.0.trunk.layers.0.weight": (784, 200), "encoder.0.trunk.layers.0.bias": (1, 200),
        "encoder.0.trunk.layers.1.weight": (200, 200), "encoder.0.trunk.layers.1.bias": (1, 200),
        "encoder.0.mean.weight": (200, 50), "encoder.0.mean.bias": (1, 50),
        "encoder.0.log_sigma.weight": (200, 50), "encoder.0.log_sigma.bias": (1, 50),
        "likelihood.trunk.layers.0.weight": (50, 200), "likelihood.trunk.layers.0.bias": (1, 200),
        "likelihood.trunk.layers.1.weight": (200, 200),
        "likelihood.trunk.layers.1.bias": (1, 200),
        "likelihood.logits.weight": (200, 784), "likelihood.logits.bias": (1, 784),
    }


def test_two_layer_architecture_matches_the_paper():
    shapes = param_shapes(IWAEModel(2))
    weights = {n: s for n, s in shapes.items() if n.endswith("weight")}
    assert weights == {
        "encoder.0.trunk.layers.0.weight": (784, 200),
        "encoder.0.trunk.layers.1.weight": (200, 200),
        "encoder.0.mean.weight": (200, 100), "encoder.0.log_sigma.weight": (200, 100),
        "encoder.1.trunk.layers.0.weight": (100, 100),
        "encoder.1.trunk.layers.1.weight": (100, 100),
        "encoder.1.mean.weight": (100, 50), "encoder.1.log_sigma.weight": (100, 50),
        "likelihood.trunk.layers.0.weight": (100, 200),
        "likelihood.trunk.layers.1.weight": (200, 200), "likelihood.logits.weight": (200, 784),
        "prior_blocks.0.trunk.layers.0.weight": (50, 100),
        "prior_blocks.0.trunk.layers.1.weight": (100, 100),
        "prior_blocks.0.mean.weight": (100, 100), "prior_blocks.0.log_sigma.weight": (100, 100),
    }
    assert ARCHITECTURES[2].latent_sizes == (100, 50)


@pytest.mark.parametrize("layers", [1, 2])
def test_log_weights_shape(layers):
    model = IWAEModel(layers, members=3)
    model.init_authors(None)
    x = (torch.rand(3, 4, 784) < 0.5).float()
    log_w = model.log_weights(x, 7, torch.Generator().manual_seed(0))
    assert log_w.shape == (3, 7, 4)
    assert torch.isfinite(log_w).all()


def test_authors_init_reuses_randomstate_123_for_every_linear():
    model = IWAEModel(1)
    model.init_authors(None)
    expected = np.random.RandomState(123).uniform(-glorot_limit(200, 200), glorot_limit(200, 200),
                                                  size=(200, 200)).astype(np.float32)
    enc = model.encoder[0].trunk.layers[1].weight[0].detach().numpy()
    dec = model.likelihood.trunk.layers[1].weight[0].detach().numpy()
    np.testing.assert_array_equal(enc, expected)
    np.testing.assert_array_equal(dec, expected)  # same shape, same weights: the quirk
    mean = model.encoder[0].mean.weight
    sigma = model.encoder[0].log_sigma.weight
    assert torch.equal(mean, sigma)  # both heads start equal
    for lin in model.linears():
        assert torch.count_nonzero(lin.bias) == 0  # no output bias was given


def test_glorot_init_is_seeded_bounded_and_differs_between_members():
    model = IWAEModel(1, members=2)
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    model.init_glorot(gens, None)
    for lin in model.linears():
        s = glorot_limit(lin.n_in, lin.n_out)
        assert lin.weight.abs().max() <= s
        assert not torch.equal(lin.weight[0], lin.weight[1])
        # a uniform on [-s, s] has variance s^2/3; 784*200 draws make this tight
        assert abs(lin.weight.var().item() - s * s / 3) < 0.1 * s * s / 3
    again = IWAEModel(1, members=2)
    again.init_glorot([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], None)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(),
                                                 strict=True))


def test_decoder_output_bias_is_logit_of_mean_pixel():
    mean = np.linspace(0.001, 0.999, 784).astype(np.float32)
    model = IWAEModel(2)
    model.init_authors(mean)
    bias = model.likelihood.logits.bias[0, 0].double()
    expected = torch.logit(torch.from_numpy(mean).double())
    torch.testing.assert_close(bias, expected, atol=1e-5, rtol=1e-5)
    assert torch.sigmoid(bias[0]).item() == pytest.approx(0.001, rel=1e-4)


def test_decoder_output_bias_follows_the_authors_float32_steps():
    """get_train_bias_np computed -log(1/p - 1) in float32: 1/p - 1 rounded to float32 before
    the log. Computing logit(p) in float64 instead differs in the last bit of many pixels."""
    mean = np.random.default_rng(1).uniform(0.001, 0.999, 784).astype(np.float32)
    model = IWAEModel(1)
    model.init_authors(mean)
    bias = model.likelihood.logits.bias[0, 0].detach().numpy()
    odds = np.float32(1.0) / mean - np.float32(1.0)  # float32 arithmetic, as theirs
    np.testing.assert_array_equal(bias, (-np.log(odds.astype(np.float64))).astype(np.float32))
    float64_logit = (np.log(mean.astype(np.float64)) - np.log1p(-mean.astype(np.float64)))
    assert (bias != float64_logit.astype(np.float32)).any()


def test_authors_weight_bounds():
    w = authors_weight(784, 200)
    assert w.dtype == np.float32 and w.shape == (784, 200)
    assert np.abs(w).max() <= math.sqrt(6 / 984)


def test_members_are_independent():
    """Member m's log-weights depend only on member m's parameters and data."""
    model = IWAEModel(1, members=2)
    model.init_glorot([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], None)
    x = (torch.rand(2, 5, 784, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    log_w = model.log_weights(x, 4, torch.Generator().manual_seed(0))
    log_w[0].sum().backward()
    for p in model.parameters():
        assert torch.count_nonzero(p.grad[1]) == 0
        assert torch.count_nonzero(p.grad[0]) > 0


def test_glorot_init_refuses_a_wrong_number_of_generators():
    """Each member must have its own generator: two members with one would be left half
    initialised (zip stops short), so init_glorot refuses, saying why."""
    model = IWAEModel(1, members=2, arch=SMALL[1])
    with pytest.raises(ValueError, match="^one generator per member$"):
        model.init_glorot([torch.Generator().manual_seed(1)], None)


def test_glorot_init_sets_the_decoder_output_bias_as_the_authors_init_does():
    """The `paper` fidelity also starts the decoder's output bias at logit(mean pixel); a
    dropped mean leaves it at zero, which changes every log-weight of the first steps."""
    mean = np.random.default_rng(2).uniform(0.001, 0.999, X_DIM).astype(np.float32)
    model = IWAEModel(1, members=2, arch=SMALL[1])
    model.init_glorot([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)], mean)
    expected = torch.from_numpy(authors_logit(mean))
    for member in range(2):
        assert torch.equal(model.likelihood.logits.bias[member, 0], expected)
    others = [lin for lin in model.linears() if lin is not model.likelihood.logits]
    assert all(torch.count_nonzero(lin.bias) == 0 for lin in others)


def test_authors_logit_takes_its_float32_steps_whatever_the_input_precision():
    """authors_logit rounds p to float32 before 1/p - 1 (as the authors' float32 data was) and
    returns float32: a float64 mean pixel must give the same bias, bit for bit."""
    p64 = np.random.default_rng(3).uniform(0.001, 0.999, 784)
    got = authors_logit(p64)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, authors_logit(p64.astype(np.float32)))
    # the test can tell: float64 steps from the float64 input round differently somewhere
    assert (got != (-np.log(1.0 / p64 - 1.0)).astype(np.float32)).any()


def test_the_compiled_branch_of_stacked_linear_is_the_same_affine_map(monkeypatch):
    """Under torch.compile (the fast numerics) StackedLinear takes bmm + bias instead of
    baddbmm. Compiling is too slow for a unit test, so is_compiling is made to answer True in
    eager mode: both branches must give x W + b (float64, a few ulps of rounding)."""
    gen = torch.Generator().manual_seed(4)
    lin = StackedLinear(2, 3, 5).double()
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen, dtype=torch.float64))
        lin.bias.copy_(torch.randn(lin.bias.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    expected = torch.from_numpy(np.einsum("mni,mio->mno", x.numpy(), w) + b)
    torch.testing.assert_close(lin(x), expected, rtol=1e-13, atol=1e-13)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    torch.testing.assert_close(lin(x), expected, rtol=1e-13, atol=1e-13)


def test_log_weights_draw_their_noise_in_the_precision_of_x():
    """log_weights(x, k, generator) is log_weights_given_noise on draw_noise's noise in x's
    dtype: float64 noise for a float64 model, bit for bit (float32 draws are other numbers)."""
    model = small_model(2, members=2, seed=5)
    x = all_binary_images()[::8].expand(2, -1, -1)
    got = model.log_weights(x, 3, torch.Generator().manual_seed(6))
    expected = model.log_weights_given_noise(x, fixed_noise(model, 3, x.shape[1], seed=6))
    assert torch.equal(got, expected)


def test_fused_likelihood_is_used_when_asked_and_only_then():
    """log_weights_given_noise must hand fused_likelihood on, and log_weight_terms must default
    to the plain head. In float32 the two heads round differently (checked), so the values say
    which head ran."""
    model = small_model(1, members=2, seed=1).float()
    x = all_binary_images()[::5].float()
    xs = torch.stack([x, x.flip(0)])
    eps = model.draw_noise(2, 4, x.shape[0], torch.Generator().manual_seed(3), "cpu")
    with torch.no_grad():
        fused_terms = model.log_weight_terms(xs, eps, fused_likelihood=True)
        plain_terms = model.log_weight_terms(xs, eps, fused_likelihood=False)
        fused = model.log_weights_given_noise(xs, eps, fused_likelihood=True)
        default_terms = model.log_weight_terms(xs, eps)
    assert not torch.equal(fused_terms[0], plain_terms[0])  # the heads can be told apart
    assert torch.equal(fused, fused_terms[0] - fused_terms[1])
    assert all(torch.equal(a, b) for a, b in zip(default_terms, plain_terms, strict=True))


def test_log_weights_given_noise_passes_the_routing_on():
    """routing given to log_weights_given_noise changes where the gradient flows, never the
    value: STL's encoder gradient (q's parameters stopped in log q) is not reparameterisation's,
    and it is what log_weight_terms gives with the same routing."""
    model = small_model(1, seed=7)
    x = all_binary_images()[::8][None]
    eps = fixed_noise(model, 3, x.shape[1], seed=8)
    routing = SampleRouting(stop_q_params=True)
    enc = model.encoder_parameters()
    routed = model.log_weights_given_noise(x, eps, routing=routing)
    joint, log_q = model.log_weight_terms(x, eps, routing=routing)
    plain = model.log_weights_given_noise(x, eps)
    assert torch.equal(routed, plain)
    got = torch.autograd.grad(routed.sum(), enc)
    expected = torch.autograd.grad((joint - log_q).sum(), enc)
    reparameterised = torch.autograd.grad(plain.sum(), enc)
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert any(not torch.allclose(a, c) for a, c in zip(got, reparameterised, strict=True))


def test_routing_is_refused_for_a_pruned_model():
    model = small_model(1, seed=7)
    x = all_binary_images()[:2][None]
    mask = torch.tensor([True, False, True])
    with pytest.raises(ValueError, match="^gradient routing is for training; pruned models are "
                                         "only scored$"):
        model.log_weight_terms(x, fixed_noise(model, 2, 2, seed=1), unit_masks=[mask],
                               routing=SampleRouting(stop_q_params=True))


def test_sample_images_is_an_ancestral_sample_through_every_prior_block():
    """Two stochastic layers: h2 ~ N(0, I), h1 = mean(h2) + sigma(h2) eps, image =
    sigmoid(logits(h1)), on the same draws as a hand-written ancestral pass (the same
    operations in the same order: bit for bit). A sign or a division in h1 breaks it."""
    for dtype in (torch.float32, torch.float64):  # noise in the model's precision
        model = small_model(2, members=2, seed=9).to(dtype)
        with torch.no_grad():
            got = model.sample_images(5, [torch.Generator().manual_seed(s) for s in (10, 11)])
            again = [torch.Generator().manual_seed(s) for s in (10, 11)]
            h2 = standard_normal((2, 5, 2), again, "cpu", dtype)
            mean, log_sigma = model.prior_blocks[0](h2)
            h1 = mean + torch.exp(log_sigma) * standard_normal((2, 5, 3), again, "cpu", dtype)
            expected = torch.sigmoid(model.likelihood(h1))
        assert got.shape == (2, 5, X_DIM) and got.dtype == dtype
        assert torch.equal(got, expected)


def test_noise_masks_and_outputs_stay_on_the_models_device():
    """A model on an accelerator draws its noise and reads its unit masks there (a tensor left
    on the CPU is a device-mismatch error). The meta device stands in for the GPU on a
    CPU-only machine: it refuses to mix with CPU tensors just as CUDA does."""
    model = IWAEModel(2, members=2, arch=SMALL[2]).to("meta")
    x = torch.empty(2, 3, X_DIM, device="meta")
    gens = [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)]
    masks = [torch.tensor([True, False, True]), torch.tensor([True, True])]  # on the CPU
    for generator in (gens, gens[0]):
        assert standard_normal((2, 3), generator, "meta").device.type == "meta"
        assert all(e.device.type == "meta" for e in model.draw_noise(2, 4, 3, generator, "meta"))
        assert model.log_weights(x, 4, generator).device.type == "meta"
        assert model.log_weights(x, 4, generator, unit_masks=masks).shape == (2, 4, 3)
        assert all(m.device.type == "meta" for m in model.posterior_means(x, generator))
        assert model.sample_images(5, generator).device.type == "meta"


def test_gaussian_log_densities_match_torch_distributions():
    """The densities AIS's annealing path is built from: sums over the last axis of
    log N(h; mean, exp(log_sigma)^2) and log N(h; 0, I)."""
    gen = torch.Generator().manual_seed(12)
    h, mean, log_sigma = (torch.randn(3, 4, 5, generator=gen, dtype=torch.float64)
                          for _ in range(3))
    normal = torch.distributions.Normal(mean, torch.exp(log_sigma))
    expected = normal.log_prob(h).sum(-1)
    torch.testing.assert_close(gaussian_log_density(h, mean, log_sigma), expected,
                               rtol=1e-13, atol=1e-13)
    standard = torch.distributions.Normal(0.0, 1.0).log_prob(h).sum(-1)
    torch.testing.assert_close(standard_normal_log_density(h), standard, rtol=1e-13, atol=1e-13)


def test_sample_images_draws_every_layer_on_the_models_device(monkeypatch):
    """Each draw of the ancestral pass lands on the model's device. The top draw feeds a bmm,
    which on the meta device (unlike CUDA) accepts a CPU input, so the draws are watched."""
    devices = []

    def watched(*args, **kwargs):
        out = real(*args, **kwargs)
        devices.append(out.device.type)
        return out

    real = network.standard_normal
    monkeypatch.setattr(network, "standard_normal", watched)
    model = IWAEModel(2, members=2, arch=SMALL[2]).to("meta")
    assert model.sample_images(5, torch.Generator().manual_seed(1)).shape == (2, 5, X_DIM)
    assert devices == ["meta", "meta"]  # h2, then the noise of h1


def test_the_model_refuses_a_layer_count_its_architecture_does_not_have():
    with pytest.raises(ValueError, match="^layers must be 1 or 2, got 3$"):
        IWAEModel(3)
    one = BlockSpec(X_DIM, (4,), 2)
    two_decoders = Architecture(encoder=(one,), decoder=(BlockSpec(2, (4,), X_DIM), one))
    for arch in (two_decoders, Architecture(encoder=(one, one), decoder=(one,))):
        with pytest.raises(ValueError, match="^the architecture must have `layers` encoder and "
                                             "decoder blocks$"):
            IWAEModel(1, arch=arch)


def test_choose_takes_each_members_tensor_whole():
    """choose(False, ...) is the second tensor, choose(True, ...) the first, and a per-member
    choice takes each member's slice from the tensor it names."""
    a, b = torch.zeros(2, 3, 4), torch.ones(2, 3, 4)
    assert choose(False, a, b) is b and choose(True, a, b) is a
    picked = choose(torch.tensor([True, False]), a, b)
    assert torch.equal(picked[0], a[0]) and torch.equal(picked[1], b[1])
