"""Architecture shapes, both initialisations, the decoder bias, member independence."""

import math

import numpy as np
import pytest
import torch

from benchmark.models.network import ARCHITECTURES, IWAEModel, authors_weight, glorot_limit


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
