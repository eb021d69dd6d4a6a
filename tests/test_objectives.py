"""The objectives beyond VAE and IWAE and their gradient estimators (benchmark.models.estimators):
identities between them, gradients against independent per-sample computations, bounds on the
exact-likelihood model, and seeded statistical tests of (un)biasedness.

Everything runs on the tiny exact model of test_estimators.py (6 pixels, one latent unit per
stochastic layer) in float64.
"""

import copy
import math

import numpy as np
import pytest
import torch
from scipy import stats
from test_estimators import TINY, all_binary_images, exact_log_px, tiny_model

from benchmark.models.estimators import GroupObjectives, Objective, estimator_backward
from benchmark.models.network import IWAEModel
from benchmark.models.objectives import miwae_bound, training_loss


def objective(model: str, k: int, estimator: str | None = None, **params) -> Objective:
    return Objective(model, k, estimator, params)


def run_estimate(model: IWAEModel, x: torch.Tensor, obj: Objective, seed: int):
    """(bound (M, B), gradients keyed by parameter name) of one objective on seeded noise."""
    eps = model.draw_noise(model.members, obj.samples, x.shape[1],
                           torch.Generator().manual_seed(seed), "cpu", torch.float64)
    for p in model.parameters():
        p.grad = None
    est = GroupObjectives([obj] * model.members, "cpu").estimate(model, x, eps)
    estimator_backward(model, est, lambda s: training_loss(s, "sum"))
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return est.bound.detach(), grads


def encoder_names(model: IWAEModel) -> list[str]:
    return [n for n, _ in model.named_parameters() if n.startswith("encoder.")]


def decoder_names(model: IWAEModel) -> list[str]:
    return [n for n, _ in model.named_parameters() if not n.startswith("encoder.")]


def assert_grads_close(a: dict, b: dict, names: list[str], rtol: float = 1e-10) -> None:
    for name in names:
        torch.testing.assert_close(a[name], b[name], rtol=rtol, atol=1e-12, msg=name)


X = all_binary_images()[None, ::7]  # (1, 10, 6): ten of the 64 images


# --- identities (Rainforth et al. 2018's definitions; a swapped MIWAE(K, M) fails them) ----------

@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("m,k,same_as", [(1, 6, objective("iwae", 6)),
                                         (6, 1, objective("vae", 6))])
def test_miwae_at_one_bound_is_iwae_and_at_one_sample_is_vae(layers, m, k, same_as):
    model = tiny_model(layers, seed=1)
    value, grads = run_estimate(model, X, objective("miwae", k, m=m), seed=3)
    ref_value, ref_grads = run_estimate(model, X, same_as, seed=3)
    torch.testing.assert_close(value, ref_value, rtol=1e-13, atol=1e-13)
    assert_grads_close(grads, ref_grads, list(grads))


@pytest.mark.parametrize("beta,same_as", [(0.0, "iwae"), (1.0, "vae")])
def test_ciwae_ends_are_iwae_and_vae(beta, same_as):
    model = tiny_model(1, seed=2)
    value, grads = run_estimate(model, X, objective("ciwae", 5, beta=beta), seed=4)
    ref_value, ref_grads = run_estimate(model, X, objective(same_as, 5), seed=4)
    torch.testing.assert_close(value, ref_value, rtol=1e-13, atol=1e-13)
    assert_grads_close(grads, ref_grads, list(grads))


@pytest.mark.parametrize("estimator,layers", [("stl", 1), ("stl", 2), ("dreg", 1)])
def test_stl_and_dreg_change_no_value_and_leave_the_decoder_gradient_as_iwae(estimator, layers):
    model = tiny_model(layers, seed=5)
    value, grads = run_estimate(model, X, objective("iwae", 5, estimator=estimator), seed=6)
    ref_value, ref_grads = run_estimate(model, X, objective("iwae", 5), seed=6)
    assert torch.equal(value, ref_value)  # the straight-through log q adds an exact zero
    assert_grads_close(grads, ref_grads, decoder_names(model))
    # ... while the encoder's gradient is another estimator (k > 1)
    differs = [not torch.allclose(grads[n], ref_grads[n]) for n in encoder_names(model)]
    assert any(differs)


def test_dreg_is_stl_at_one_sample():
    model = tiny_model(1, seed=7)
    _, dreg = run_estimate(model, X, objective("iwae", 1, estimator="dreg"), seed=8)
    _, stl = run_estimate(model, X, objective("iwae", 1, estimator="stl"), seed=8)
    _, iwae = run_estimate(model, X, objective("iwae", 5, estimator="stl"), seed=8)
    assert_grads_close(dreg, stl, list(dreg), rtol=1e-13)
    assert not torch.allclose(dreg[encoder_names(model)[0]], iwae[encoder_names(model)[0]])


# --- gradients against an independent per-sample computation (one stochastic layer) ----------

def per_sample_terms(model: IWAEModel, x: torch.Tensor, k: int, seed: int):
    """Per sample i of one example: the path derivative g_i = d/dphi log w_i with q's density
    parameters held at a frozen copy (so phi enters through h_i = mu + sigma eps_i only), the
    score s_i = d/dphi log q_phi(h_i) at the sample held fixed, and the weights w~_i.

    Written from the definitions with the model's blocks, not with SampleRouting."""
    eps = torch.randn(k, x.shape[1], 1, generator=torch.Generator().manual_seed(seed),
                      dtype=torch.float64)
    frozen = copy.deepcopy(model.encoder[0]).requires_grad_(False)
    enc = list(model.encoder[0].parameters())

    def normal_logpdf(h, mean, log_sigma):
        return (-0.5 * ((h - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma
                - 0.5 * math.log(2 * math.pi)).sum(-1)

    def log_w_given(h, q_mean, q_log_sigma):
        logits = model.likelihood(h.reshape(1, -1, 1)).view(k, x.shape[1], -1)
        log_px = (x[0] * logits - torch.nn.functional.softplus(logits)).sum(-1)
        log_prior = (-0.5 * h**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
        return log_px + log_prior - normal_logpdf(h, q_mean, q_log_sigma)

    mean, log_sigma = model.encoder[0](x)  # (1, B, 1)
    h = mean[0] + torch.exp(log_sigma[0]) * eps  # (k, B, 1)
    f_mean, f_log_sigma = frozen(x)
    log_w = log_w_given(h, f_mean[0], f_log_sigma[0])  # (k, B)
    weights = torch.softmax(log_w.detach(), dim=0)
    path, score = [], []
    for i in range(k):
        path.append(torch.autograd.grad(log_w[i].sum(), enc, retain_graph=True))
        log_q_fixed = normal_logpdf(h[i].detach(), mean[0], log_sigma[0])  # (B,)
        score.append([torch.autograd.grad(log_q_fixed[b], enc, retain_graph=True)
                      for b in range(x.shape[1])])
    return path, score, weights, eps


def two_layer_path_terms(model: IWAEModel, x: torch.Tensor, k: int, seed: int):
    """per_sample_terms' path derivatives for two stochastic layers: h1 = mu1(x) + sigma1(x) e1
    and h2 = mu2(h1) + sigma2(h1) e2 keep their paths, while both q densities use a frozen copy
    of q's parameters (STL's q(h1, h2 | x) with phi stopped, the path through h1 kept)."""
    gen = torch.Generator().manual_seed(seed)
    e1 = torch.randn(k, 1, 1, generator=gen, dtype=torch.float64)
    e2 = torch.randn(k, 1, 1, generator=gen, dtype=torch.float64)
    frozen = [copy.deepcopy(b).requires_grad_(False) for b in model.encoder]
    enc = model.encoder_parameters()

    def normal_logpdf(h, mean, log_sigma):
        return (-0.5 * ((h - mean) * torch.exp(-log_sigma)) ** 2 - log_sigma
                - 0.5 * math.log(2 * math.pi)).sum(-1)

    mean1, log_sigma1 = model.encoder[0](x)  # (1, 1, 1)
    h1 = mean1[0] + torch.exp(log_sigma1[0]) * e1  # (k, 1, 1)
    mean2, log_sigma2 = model.encoder[1](h1.reshape(1, k, 1))
    h2 = mean2.view(k, 1, 1) + torch.exp(log_sigma2.view(k, 1, 1)) * e2
    f_mean1, f_log_sigma1 = frozen[0](x)
    f_mean2, f_log_sigma2 = frozen[1](h1.reshape(1, k, 1))
    log_q = (normal_logpdf(h1, f_mean1[0], f_log_sigma1[0])
             + normal_logpdf(h2, f_mean2.view(k, 1, 1), f_log_sigma2.view(k, 1, 1)))
    p_mean, p_log_sigma = model.prior_blocks[0](h2.reshape(1, k, 1))
    logits = model.likelihood(h1.reshape(1, k, 1)).view(k, 1, -1)
    log_p = ((x[0] * logits - torch.nn.functional.softplus(logits)).sum(-1)
             + normal_logpdf(h1, p_mean.view(k, 1, 1), p_log_sigma.view(k, 1, 1))
             + (-0.5 * h2**2 - 0.5 * math.log(2 * math.pi)).sum(-1))
    log_w = log_p - log_q  # (k, 1)
    path = [torch.autograd.grad(log_w[i].sum(), enc, retain_graph=True) for i in range(k)]
    return path, torch.softmax(log_w.detach(), dim=0), [e1[None], e2[None]]


def test_two_layer_stl_encoder_gradient_is_its_weighted_path_derivative():
    model = tiny_model(2, seed=19)
    x = X[:, 3:4]
    k = 5
    path, weights, eps = two_layer_path_terms(model, x, k, seed=20)
    expected = weighted_sum(path, weights[:, 0])
    for p in model.parameters():
        p.grad = None
    obj = objective("iwae", k, estimator="stl")
    est = GroupObjectives([obj], "cpu").estimate(model, x, eps)
    estimator_backward(model, est, lambda s: training_loss(s, "sum"))
    for p, b in zip(model.encoder_parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, -b, rtol=1e-9, atol=1e-12)


def weighted_sum(per_sample, coefficients):
    """sum_i c_i g_i over samples, parameter by parameter; per_sample[i] is a tuple of grads."""
    return [sum(coefficients[i] * per_sample[i][j] for i in range(len(per_sample)))
            for j in range(len(per_sample[0]))]


def suite_gradients(model, x, obj, eps):
    for p in model.parameters():
        p.grad = None
    est = GroupObjectives([obj], "cpu").estimate(model, x, [eps[None]])
    estimator_backward(model, est, lambda s: training_loss(s, "sum"))
    return [p.grad.clone() for p in model.encoder[0].parameters()]


@pytest.mark.parametrize("estimator,power", [("stl", 1), ("dreg", 2)])
def test_stl_and_dreg_encoder_gradients_are_their_weighted_path_derivatives(estimator, power):
    """STL: sum_i w~_i g_i (Roeder et al. 2017); DReG: sum_i w~_i^2 g_i (Tucker et al. 2018)."""
    model = tiny_model(1, seed=9)
    x = X[:, :1]  # one example, so that the weights are per sample only
    k = 6
    path, _, weights, eps = per_sample_terms(model, x, k, seed=10)
    expected = weighted_sum(path, weights[:, 0] ** power)
    got = suite_gradients(model, x, objective("iwae", k, estimator=estimator), eps)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, -b, rtol=1e-9, atol=1e-12)  # the loss is minus the bound


def test_rws_encoder_gradient_is_the_wake_phase_update():
    """sum_i w~_i d log q(h_i|x)/d phi with the samples h_i held fixed."""
    model = tiny_model(1, seed=11)
    x = X[:, :1]
    k = 6
    _, score, weights, eps = per_sample_terms(model, x, k, seed=12)
    expected = weighted_sum([s[0] for s in score], weights[:, 0])
    got = suite_gradients(model, x, objective("rws", k), eps)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, -b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_rws_and_piwae_decoders_follow_iwae_and_piwae_encoder_follows_miwae(layers):
    model = tiny_model(layers, seed=13)
    _, rws = run_estimate(model, X, objective("rws", 6), seed=14)
    _, iwae = run_estimate(model, X, objective("iwae", 6), seed=14)
    assert_grads_close(rws, iwae, decoder_names(model))
    _, piwae = run_estimate(model, X, objective("piwae", 3, m=2), seed=15)
    _, iwae_all = run_estimate(model, X, objective("iwae", 6), seed=15)
    _, miwae = run_estimate(model, X, objective("miwae", 3, m=2), seed=15)
    assert_grads_close(piwae, iwae_all, decoder_names(model))
    assert_grads_close(piwae, miwae, encoder_names(model))


def test_a_mixed_group_gives_every_member_its_own_estimator():
    """Eight objectives with 4 samples each in one group: member i's bound and gradients are
    those of its objective computed alone, on the same noise."""
    objectives = [objective("vae", 4), objective("iwae", 4),
                  objective("iwae", 4, estimator="stl"), objective("iwae", 4, estimator="dreg"),
                  objective("miwae", 2, m=2), objective("ciwae", 4, beta=0.3),
                  objective("piwae", 2, m=2), objective("rws", 4)]
    single = tiny_model(1, seed=16)
    group = IWAEModel(1, members=len(objectives), arch=TINY[1]).double()
    with torch.no_grad():
        for mine, theirs in zip(group.parameters(), single.parameters(), strict=True):
            mine.copy_(theirs.expand_as(mine))
    x = X.expand(len(objectives), -1, -1)
    gens = [torch.Generator().manual_seed(20 + i) for i in range(len(objectives))]
    eps = group.draw_noise(len(objectives), 4, x.shape[1], gens, "cpu", torch.float64)
    est = GroupObjectives(objectives, "cpu").estimate(group, x, eps)
    estimator_backward(group, est, lambda s: training_loss(s, "sum"))
    for i, obj in enumerate(objectives):
        alone = copy.deepcopy(single)
        value, grads = run_estimate(alone, X, obj, seed=20 + i)
        torch.testing.assert_close(est.bound[i:i + 1].detach(), value, rtol=1e-12, atol=1e-12)
        for name, p in group.named_parameters():
            torch.testing.assert_close(p.grad[i:i + 1], grads[name], rtol=1e-10, atol=1e-12,
                                       msg=f"{obj}: {name}")


def test_objectives_refuse_parameters_that_do_not_belong_to_them():
    with pytest.raises(ValueError, match="not one of vae's bound"):
        Objective("vae", 5, estimator="dreg")
    with pytest.raises(ValueError, match=r"parameters \['m'\] are given"):
        Objective("miwae", 5)
    with pytest.raises(ValueError, match=r"parameters \[\] are given"):
        Objective("iwae", 5, params={"beta": 0.5})
    with pytest.raises(ValueError, match="same number of samples"):
        GroupObjectives([objective("iwae", 4), objective("iwae", 5)], "cpu")
    # M bounds must split the samples evenly: 7 log-weights are no M = 2 blocks
    with pytest.raises(ValueError, match="^7 samples do not split into 2 bounds$"):
        miwae_bound(torch.zeros(1, 7, 3), 2)


# --- the exact-likelihood model: bounds below log p(x), VAE <= CIWAE <= IWAE ---------------------

def test_every_bound_is_below_log_px_and_ciwae_lies_between_vae_and_iwae():
    model = tiny_model(1, seed=17)
    x = all_binary_images()[None]  # all 64 images
    exact = exact_log_px(model, x[0]).numpy()  # (64,)
    draws = 400
    objectives = {"vae": objective("vae", 8), "iwae": objective("iwae", 8),
                  "stl": objective("iwae", 8, estimator="stl"),
                  "dreg": objective("iwae", 8, estimator="dreg"),
                  "ciwae": objective("ciwae", 8, beta=0.4), "miwae": objective("miwae", 4, m=2),
                  "piwae": objective("piwae", 4, m=2), "rws": objective("rws", 8)}
    replicated = IWAEModel(1, members=draws, arch=TINY[1]).double()
    with torch.no_grad():
        for mine, theirs in zip(replicated.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs.expand_as(mine))
    xs = x.expand(draws, -1, -1)
    values = {}
    for name, obj in objectives.items():
        eps = replicated.draw_noise(draws, obj.samples, 64, torch.Generator().manual_seed(30),
                                    "cpu", torch.float64)  # the same noise for every objective
        values[name] = GroupObjectives([obj] * draws, "cpu").estimate(
            replicated, xs, eps).bound.detach().numpy()  # (draws, 64)
    for name, v in values.items():
        # E[bound] <= log p(x). Tolerance: 4 standard errors of the mean over the draws (the
        # draws are independent; a true violation larger than that fails).
        mean, se = v.mean(axis=0), v.std(axis=0, ddof=1) / math.sqrt(draws)
        assert np.all(mean <= exact + 4 * se), name
    # On the same samples every draw is ordered: the mean of log w <= log mean w (Jensen), and
    # CIWAE is a convex combination of the two.
    assert np.all(values["vae"] <= values["ciwae"] + 1e-12)
    assert np.all(values["ciwae"] <= values["iwae"] + 1e-12)
    # STL, DReG and RWS report the IWAE bound itself; PIWAE reports IWAE on its M K samples
    for name in ("stl", "dreg", "rws"):
        np.testing.assert_array_equal(values[name], values["iwae"])
    # and the gaps say the ordering is not trivial: IWAE is clearly tighter here
    assert (values["iwae"] - values["vae"]).mean() > 0.1


# --- unbiasedness: seeded t-tests on many independent gradient draws -----------------------------

def encoder_gradient_draws(model: IWAEModel, obj: Objective, x: torch.Tensor, draws: int,
                           seed: int) -> np.ndarray:
    """(draws, P) encoder-gradient estimates, each on its own noise: the model is replicated
    as `draws` members, whose gradients are disjoint slices of one backward pass."""
    replicated = IWAEModel(1, members=draws, arch=TINY[1]).double()
    with torch.no_grad():
        for mine, theirs in zip(replicated.parameters(), model.parameters(), strict=True):
            mine.copy_(theirs.expand_as(mine))
    xs = x.expand(draws, -1, -1)
    eps = replicated.draw_noise(draws, obj.samples, x.shape[1],
                                torch.Generator().manual_seed(seed), "cpu", torch.float64)
    est = GroupObjectives([obj] * draws, "cpu").estimate(replicated, xs, eps)
    estimator_backward(replicated, est, lambda s: training_loss(s, "sum"))
    return torch.cat([p.grad.reshape(draws, -1) for p in replicated.encoder_parameters()],
                     dim=1).numpy()


DRAWS = 20_000
FAMILY_ALPHA = 1e-3


def paired_t(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per coordinate, the t statistic of mean(a - b) = 0 on paired draws (the same noise).
    Coordinates where a and b agree on every draw (the weights of pixels that are 0 in every
    example get no gradient at all) carry no test and are left out."""
    d = a - b
    sd = d.std(axis=0, ddof=1)
    tested = sd > 0
    assert tested.sum() >= a.shape[1] // 2  # most coordinates are tested
    return d.mean(axis=0)[tested] / (sd[tested] / math.sqrt(d.shape[0]))


def bonferroni_threshold(coordinates: int) -> float:
    """|t| a coordinate may reach when the means agree. With 20,000 draws each t is close to
    N(0, 1) (CLT; the tiny model's weights are light-tailed); over the coordinates together the
    chance that any exceeds the threshold is at most FAMILY_ALPHA (Bonferroni)."""
    return float(stats.norm.ppf(1.0 - FAMILY_ALPHA / (2 * coordinates)))


@pytest.fixture(scope="module")
def gradient_draws():
    """The same 20,000 noises for every estimator, so that paired differences are taken."""
    model = tiny_model(1, seed=18)
    x = X[:, :4]
    return {name: encoder_gradient_draws(model, obj, x, DRAWS, seed=40)
            for name, obj in {"iwae5": objective("iwae", 5),
                              "dreg5": objective("iwae", 5, estimator="dreg"),
                              "stl5": objective("iwae", 5, estimator="stl"),
                              "iwae1": objective("iwae", 1),
                              "stl1": objective("iwae", 1, estimator="stl")}.items()}


def test_dreg_encoder_gradient_is_unbiased(gradient_draws):
    t = paired_t(gradient_draws["dreg5"], gradient_draws["iwae5"])
    assert np.abs(t).max() < bonferroni_threshold(t.size), np.abs(t).max()


def test_stl_is_unbiased_at_one_sample_and_biased_above(gradient_draws):
    """Roeder et al. 2017: STL is unbiased for the ELBO (k = 1). For IWAE-k with k > 1 it drops
    the term E[sum_i (w~_i - w~_i^2) d log w_i/d h_i d h_i/d phi] (Tucker et al. 2018: the
    mean of STL - DReG), which is not zero. With DReG unbiased (the test above), a bias of STL
    against IWAE is exactly that term."""
    t1 = paired_t(gradient_draws["stl1"], gradient_draws["iwae1"])
    threshold = bonferroni_threshold(t1.size)
    assert np.abs(t1).max() < threshold
    t5 = paired_t(gradient_draws["stl5"], gradient_draws["iwae5"])
    assert np.abs(t5).max() > 3 * threshold  # biased, far beyond the noise
