"""Active units and pruning, both Table 1 metrics, by value: which units count as active
(population variance of the q-mean over the examples, threshold 0.01 inclusive, layer 2 at one
sampled h1), and what pruning computes (the log-weights of the model without those units)."""

import numpy as np
import pytest
import torch
from reference_model import all_binary_images, gaussian, numpy_params, small_model

from benchmark.config import RunConfig
from benchmark.evaluation.active_units import (
    ACTIVE_UNIT_THRESHOLD,
    active_unit_masks,
    count_active_units,
    unit_variances,
)
from benchmark.evaluation.likelihood import log_likelihood_estimates
from benchmark.evaluation.run import evaluate_members, fresh_generators
from benchmark.models.network import Architecture, BlockSpec, IWAEModel

SATURATED = 50.0  # tanh(50 * x) is exactly 0 or 1 in float64 for binary x


def test_the_threshold_is_inclusive_and_counts_per_member():
    assert ACTIVE_UNIT_THRESHOLD == 1e-2
    variances = [np.array([[0.01, 0.0099999, 0.5], [0.0, 0.0, 0.02]]), np.array([[0.01], [0.2]])]
    assert [c.tolist() for c in count_active_units(variances)] == [[2, 1], [1, 1]]
    masks = active_unit_masks(variances)
    assert masks[0].tolist() == [[True, False, True], [False, False, True]]
    assert masks[1].dtype == torch.bool and masks[1].tolist() == [[True], [True]]


def pixel_driven_unit_model(slopes: list[float], pixel: int = 2) -> IWAEModel:
    """A one-layer model whose unit u has q-mean exactly slopes[u] * x[pixel] + 0.3: the
    encoder's hidden unit 0 is tanh(50 x[pixel]) (exactly x[pixel]) and only it feeds the mean
    head. Over the 64 binary images x[pixel] is 1 half of the time, so the population variance
    of unit u over them is slopes[u]^2 / 4."""
    model = small_model(1, seed=1)
    with torch.no_grad():
        first = model.encoder[0].trunk.layers[0]
        first.weight[0, :, 0] = 0.0
        first.weight[0, pixel, 0] = SATURATED
        first.bias[0, 0, 0] = 0.0
        head = model.encoder[0].mean
        head.weight.zero_()
        head.weight[0, 0, :] = torch.tensor(slopes, dtype=torch.float64)
        head.bias.fill_(0.3)
    return model


def test_active_units_use_the_population_variance_of_the_q_mean():
    # unit 0: population variance 0.0099 (inactive), but 0.0099 * 64/63 = 0.01006 with ddof=1
    # and a standard deviation of 0.0995: counted active by either mistake.
    # unit 1: 0.0101, active. unit 2: a mean that ignores x entirely, variance exactly 0.
    slopes = [2 * np.sqrt(0.0099), 2 * np.sqrt(0.0101), 0.0]
    model = pixel_driven_unit_model(slopes)
    x = all_binary_images()[None]
    (variances,) = unit_variances(model, x, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(variances[0], [0.0099, 0.0101, 0.0], rtol=1e-12, atol=1e-15)
    assert variances[0, 2] == 0.0
    assert count_active_units([variances])[0].tolist() == [1]


def test_layer_two_is_measured_at_one_sampled_h1():
    """q(h1|x) = N(b, I) for every x: the analytic E[h2|x] = mu2(b) is the same for all x (no
    active unit in either layer), while the paper's statistic, mu2 at one sampled h1 per
    example, varies with the sampling noise."""
    model = small_model(2, seed=2)
    with torch.no_grad():
        for head in (model.encoder[0].mean, model.encoder[0].log_sigma):
            head.weight.zero_()
        model.encoder[0].log_sigma.bias.zero_()  # sigma1 = 1
    x = all_binary_images()[None]
    seed = 17
    v1, v2 = unit_variances(model, x, torch.Generator().manual_seed(seed))
    assert np.all(v1 == 0.0)

    params = numpy_params(model)
    eps1 = torch.randn((1, 64, 3), generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)[0].numpy()  # the first draw: layer 1's noise
    h1 = params["encoder.0.mean.bias"][0] + eps1  # (64, 3)
    mu2, _ = gaussian(params, "encoder.1", h1)
    np.testing.assert_allclose(v2[0], mu2.var(axis=0), rtol=1e-10)
    assert np.all(v2[0] > ACTIVE_UNIT_THRESHOLD)  # active only because h1 is sampled
    mu2_at_mean, _ = gaussian(params, "encoder.1", params["encoder.0.mean.bias"][0][None])
    assert not np.allclose(mu2[0], mu2_at_mean[0])


def without_units(model: IWAEModel, keep: list[np.ndarray], member: int) -> IWAEModel:
    """Member `member` of `model` as a smaller model that never had the dropped latent units:
    every weight that writes or reads a dropped unit is removed."""
    arch = model.arch
    sizes = [int(k.sum()) for k in keep]
    encoder = tuple(BlockSpec(sizes[i - 1] if i else s.n_in, s.hidden, sizes[i])
                    for i, s in enumerate(arch.encoder))
    decoder = tuple(BlockSpec(sizes[i], s.hidden, sizes[i - 1] if i else s.n_out)
                    for i, s in enumerate(arch.decoder))
    small = IWAEModel(model.n_layers, arch=Architecture(encoder, decoder)).double()
    big = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in small.named_parameters():
            value = big[name][member:member + 1]
            block = name.split(".")[0]
            if block == "likelihood":  # p(x | h1)
                index = 0
            else:  # encoder.i: q(h_{i+1} | h_i); prior_blocks.i: p(h_{i+1} | h_{i+2})
                index = int(name.split(".")[1]) + (block == "prior_blocks")
            reads = index - 1 if block == "encoder" else index  # latent layer a block reads
            writes = index if block == "encoder" else index - 1  # latent layer it writes
            if ".trunk.layers.0." in name and reads >= 0 and name.endswith("weight"):
                value = value[:, keep[reads], :]
            if (".mean." in name or ".log_sigma." in name) and writes >= 0:
                value = value[..., keep[writes]]
            p.copy_(value)
    return small


@pytest.mark.parametrize("layers", [1, 2])
def test_pruned_log_weights_are_those_of_the_model_without_the_units(layers):
    """Two members with different masks: each member's masked log-weights equal those of its
    own smaller model, on the same noise for the kept units."""
    model = small_model(layers, members=2, seed=3 + layers)
    keep_by_layer = [np.array([[True, False, True], [False, True, True]])] if layers == 1 else [
        np.array([[True, False, True], [False, True, True]]),
        np.array([[False, True], [True, False]])]
    masks = [torch.from_numpy(k) for k in keep_by_layer]
    x = all_binary_images()[::7]
    xs = torch.stack([x, x])
    eps = model.draw_noise(2, 5, x.shape[0], torch.Generator().manual_seed(6), "cpu",
                           torch.float64)
    for fused in (False, True):
        pruned = model.log_weights_given_noise(xs, eps, unit_masks=masks,
                                               fused_likelihood=fused).detach()
        for m in range(2):
            keep = [k[m] for k in keep_by_layer]
            small = without_units(model, keep, m)
            small_eps = [e[m:m + 1][..., k] for e, k in zip(eps, keep, strict=True)]
            expected = small.log_weights_given_noise(x[None], small_eps,
                                                     fused_likelihood=fused).detach()
            torch.testing.assert_close(pruned[m], expected[0], rtol=1e-12, atol=1e-10)


def test_the_evaluation_counts_and_prunes_the_inactive_units(synthetic_data_dir, tmp_path):
    """Units 0-9 of a paper-sized model have a q-mean that ignores x (inactive) while the
    decoder still reads them, so pruning them changes the bound; the record holds the count,
    the variances and the L_k of the model with exactly those units masked."""
    from benchmark.data.splits import load_dataset
    from benchmark.evaluation.inputs import evaluation_inputs

    config = RunConfig(data="mnist-dynamic", model="iwae", k=1, layers=1, steps=1, eval_k=8,
                       eval_n=10)
    inputs = evaluation_inputs(load_dataset(config.data, synthetic_data_dir), config)
    model = IWAEModel(1)
    model.init_glorot([torch.Generator().manual_seed(4)], np.full(784, 0.2, np.float32))
    dead = slice(0, 10)
    with torch.no_grad():
        model.encoder[0].mean.weight[..., dead] = 0.0
        model.encoder[0].mean.bias[..., dead] = 0.7
    ((metrics, _),) = evaluate_members(model, inputs, [config], torch.device("cpu"),
                                       [tmp_path], show_progress=False)
    assert metrics["active_units"] == [40]
    assert metrics["unit_variances"][0][:10] == [0.0] * 10
    assert min(metrics["unit_variances"][0][10:]) >= ACTIVE_UNIT_THRESHOLD

    keep = torch.ones(1, 50, dtype=torch.bool)
    keep[0, dead] = False
    test_x = inputs.test[inputs.test_index][None]
    pruned = log_likelihood_estimates(model, test_x, 8, fresh_generators(1, torch.device("cpu")),
                                      unit_masks=[keep])[0]
    assert metrics["test_nll_pruned"] == pytest.approx(-pruned.mean(), rel=1e-12)
    assert abs(metrics["test_nll_pruned"] - metrics["test_nll"]) > 0.1  # pruning mattered
