"""Known-answer tests of AIS and BDMC: the HMC transitions, the schedule, convergence to the exact
log p(x) of a linear-Gaussian model and of tiny Bernoulli-decoder models, the BDMC sandwich,
members, and resuming.

Tolerances. For C independent chains with weights w_c (E[w] = p(x)), the estimate
log mean_c w_c has, by the delta method, mean log p(x) - s^2 / (2C) and variance s^2 / C, with
s^2 = Var(w) / p(x)^2, estimated from the chains themselves as the variance of w_c / mean(w).
Averaged over B independent examples, the mean error has standard deviation
sqrt(sum_i s_i^2 / C) / B, and its bias is -mean_i s_i^2 / (2C). The tests allow the bias plus
Z standard deviations (Z = 4 unless said), plus a floor of 0.01 nats for what the estimate of
s^2 from C chains misses (it understates heavy tails). Reverse chains (the BDMC upper bound)
are judged the same way: their weights estimate 1 / p(x), and the upper bound is
-log mean_c w_c, with the same variance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ais_models import (
    LinearGaussian,
    all_binary_images,
    fitted_tiny_bernoulli_model,
    quadrature_log_px,
    tiny_bernoulli_model,
)

from benchmark.evaluation.ais import (
    chain_standard_error,
    forward_estimate,
    reverse_estimate,
    run_ais,
    run_reverse_ais,
    sigmoid_schedule,
)
from benchmark.evaluation.ais_evaluation import (
    AISSettings,
    batch_generators,
    evaluate_ais,
    evaluate_bdmc,
    simulated_examples,
)
from benchmark.evaluation.annealing_path import ModelPath
from benchmark.evaluation.batch_store import BatchStore
from benchmark.evaluation.bdmc import bdmc, simulate
from benchmark.evaluation.hmc import HMCSettings, hmc_transition, initial_state

FLOOR = 0.01


@pytest.fixture(autouse=True)
def one_thread():
    """These problems are tiny: a second thread only adds synchronisation (and on a busy
    machine, a lot of it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def gen(seed: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed)]


def tolerance(log_weights: torch.Tensor, z: float = 4.0) -> float:
    """Bias plus z standard deviations of the mean over examples of log mean_c w_c (module doc)."""
    C, B = log_weights.shape[1], log_weights.shape[2]
    s2 = (chain_standard_error(log_weights)[0] ** 2 * C).numpy()  # per example Var(w)/p^2
    return float(s2.mean() / (2 * C) + z * math.sqrt(s2.sum() / C) / B + FLOOR)


def test_sigmoid_schedule_runs_from_zero_to_one_symmetrically():
    betas = sigmoid_schedule(1000)
    assert betas.shape == (1001,) and betas[0] == 0.0 and betas[-1] == 1.0
    assert np.all(np.diff(betas) > 0)
    np.testing.assert_allclose(betas + betas[::-1], 1.0, atol=1e-12)  # symmetric about 1/2
    # denser at both ends than in the middle, as the sigmoid schedule is meant to be
    steps = np.diff(betas)
    assert steps[0] < steps[500] / 10 and steps[-1] < steps[500] / 10
    np.testing.assert_array_equal(sigmoid_schedule(1), [0.0, 1.0])
    with pytest.raises(ValueError):
        sigmoid_schedule(0)


class GaussianTarget:
    """f_beta(h) = N(h; 0, I) exp(beta * log N(h; mu, diag(s^2)) + const): at beta = 1 the target
    is N(mu', s'^2) with precision 1 + 1/s^2 (a product of Gaussians)."""

    def __init__(self, chains: int, mu: torch.Tensor, s: torch.Tensor) -> None:
        self.chains, self.mu, self.s = chains, mu, s

    def sample_base(self, generator):
        return torch.randn((1, self.chains, 1, self.mu.numel()), generator=generator[0],
                           dtype=torch.float64)

    def log_terms(self, h):
        base = -(0.5 * h.square()).sum(-1)
        return base, -(0.5 * ((h - self.mu) / self.s).square()).sum(-1)


def test_hmc_transitions_leave_the_target_invariant():
    """Chains started at exact draws of the beta = 1 target stay distributed as it after many
    transitions: the sample mean and variance of 4000 chains (after 30 transitions, so nearly
    independent of the start) match the exact moments within 5 standard errors.
    SE of a mean: sd / sqrt(n); of a variance: var * sqrt(2 / (n - 1))."""
    mu = torch.tensor([1.5, -0.5], dtype=torch.float64)
    s = torch.tensor([0.3, 2.0], dtype=torch.float64)
    precision = 1 + 1 / s**2
    mean, var = (mu / s**2) / precision, 1 / precision
    target = GaussianTarget(4000, mu, s)
    g = gen(3)
    h = mean + var.sqrt() * torch.randn((1, 4000, 1, 2), generator=g[0], dtype=torch.float64)
    settings = HMCSettings(leapfrog=5, initial_step=0.2)
    state = initial_state(target, h, settings)
    for _ in range(30):
        state = hmc_transition(target, state, 1.0, settings, g)
    samples = state.h.reshape(-1, 2)
    n = samples.shape[0]
    assert 0.3 < state.acceptance_rate().mean().item() < 1.0  # it moved, and it rejected some
    assert torch.all((samples.mean(0) - mean).abs() < 5 * (var / n).sqrt())
    assert torch.all((samples.var(0) - var).abs() < 5 * var * math.sqrt(2 / (n - 1)))
    # and the chains did move away from their starts (they are not simply frozen)
    assert (state.h - h).abs().mean() > 0.1


def test_step_sizes_adapt_towards_the_target_acceptance():
    """A chain that accepts everything grows its step by 1.02 per transition; a tight target
    (s = 0.01) drives the steps down until about 65% are accepted."""
    settings = HMCSettings(leapfrog=3)
    loose = GaussianTarget(8, torch.zeros(2, dtype=torch.float64),
                           torch.full((2,), 100.0, dtype=torch.float64))
    state = initial_state(loose, loose.sample_base(gen(0)), settings)
    for _ in range(10):
        state = hmc_transition(loose, state, 1.0, settings, gen(1))
    np.testing.assert_allclose(state.step.numpy(), 0.01 * 1.02**10, rtol=1e-12)
    tight = GaussianTarget(200, torch.zeros(2, dtype=torch.float64),
                           torch.full((2,), 0.01, dtype=torch.float64))
    g = gen(2)
    h = 0.01 * torch.randn((1, 200, 1, 2), generator=g[0], dtype=torch.float64)
    settings = HMCSettings(leapfrog=3, initial_step=0.5)
    state = initial_state(tight, h, settings)
    for _ in range(200):
        state = hmc_transition(tight, state, 1.0, settings, g)
    assert state.step.max() < 0.05  # shrunk from 0.5
    before = state.accepted.clone()
    for _ in range(100):
        state = hmc_transition(tight, state, 1.0, settings, g)
    # 20,000 accept decisions, correlated within a chain: 0.65 give or take a few percent
    late = (state.accepted - before).mean().item() / 100
    assert 0.55 < late < 0.75, late


LG_SETTINGS = HMCSettings(leapfrog=5, initial_step=0.05)


def linear_gaussian_data(n: int, seed: int):
    """A 4-d observation of a 2-d latent with noise 0.3: the posterior is several times
    narrower than the prior, so that a short schedule is visibly too short."""
    lg = LinearGaussian.random(D=4, d=2, sigma=0.3, seed=seed)
    x, h = lg.simulate(n, seed=seed + 1)
    return lg, x, h, lg.exact_log_px(x).numpy()


def test_ais_converges_to_the_exact_linear_gaussian_likelihood():
    """With T = 2 the mean estimate over 200 examples is far below the truth (more than ten
    tolerances); with T = 200 it is within the variance-derived tolerance of it."""
    lg, x, _, exact = linear_gaussian_data(200, seed=0)
    errors, tolerances = {}, {}
    for T in (2, 200):
        result = run_ais(lg.path(x, 16), T, LG_SETTINGS, gen(T))
        errors[T] = (forward_estimate(result.log_weights)[0].numpy() - exact).mean()
        tolerances[T] = tolerance(result.log_weights)
    assert abs(errors[200]) < tolerances[200], (errors, tolerances)
    assert errors[2] < -10 * tolerances[200], (errors, tolerances)


def test_bdmc_brackets_the_exact_linear_gaussian_likelihood():
    """On simulated data, reverse AIS from the exact posterior draw is above the truth and
    forward AIS below (each within its tolerance); with T = 200 both are within their
    tolerance of it, and the gap has shrunk more than tenfold from T = 2."""
    lg, x, h, exact = linear_gaussian_data(100, seed=2)
    gaps = {}
    for T in (2, 200):
        path = lg.path(x, 8)
        forward = run_ais(path, T, LG_SETTINGS, gen(10 + T))
        start = h[None, None].expand(1, 8, -1, -1).contiguous()
        reverse = run_reverse_ais(path, T, start, LG_SETTINGS, gen(20 + T))
        lower = (forward_estimate(forward.log_weights)[0].numpy() - exact).mean()
        upper = (reverse_estimate(reverse.log_weights)[0].numpy() - exact).mean()
        lower_tol, upper_tol = tolerance(forward.log_weights), tolerance(reverse.log_weights)
        assert lower < lower_tol and upper > -upper_tol
        if T == 200:
            assert abs(lower) < lower_tol and abs(upper) < upper_tol, (lower, upper)
        gaps[T] = upper - lower
    assert gaps[2] > 2.0 and gaps[200] < gaps[2] / 10, gaps


@pytest.mark.parametrize("layers,start", [(1, "prior"), (1, "encoder"), (2, "prior"),
                                          (2, "encoder")])
def test_ais_matches_quadrature_on_tiny_bernoulli_models(layers, start):
    """All 64 binary images of a 6-pixel model with a 1-d (or 1 + 1-d) latent: AIS with
    T = 100 agrees with the quadrature log p(x) on average within the tolerance, from the prior
    or from a fitted encoder."""
    model = fitted_tiny_bernoulli_model(layers) if start == "encoder" else \
        tiny_bernoulli_model(layers, seed=4)
    x = all_binary_images()
    exact = quadrature_log_px(model, x).numpy()
    result = run_ais(ModelPath(model, x[None], 8, start), 100, LG_SETTINGS, gen(2))
    err = (forward_estimate(result.log_weights)[0].numpy() - exact).mean()
    assert abs(err) < tolerance(result.log_weights), (err, tolerance(result.log_weights))


@pytest.mark.parametrize("layers", [1, 2])
def test_bdmc_brackets_quadrature_on_simulated_bernoulli_data(layers):
    """Forward AIS is below and reverse AIS above the quadrature log p(x) of 40 simulated
    images (each within its tolerance), with T = 100 both agree with it within their
    tolerances, and their gap is smaller with T = 100 than with T = 2."""
    model = tiny_bernoulli_model(layers, seed=4)
    x, h = simulate(model, 40, gen(6))
    assert set(x.unique().tolist()) <= {0.0, 1.0} and h.shape == (1, 40, layers)
    exact = quadrature_log_px(model, x[0]).numpy()
    gaps = []
    for T in (2, 100):
        sandwich = bdmc(model, x, h, T, 8, LG_SETTINGS, gen(7))
        lower = (sandwich.lower[0].numpy() - exact).mean()
        upper = (sandwich.upper[0].numpy() - exact).mean()
        lower_tol = tolerance(sandwich.forward_log_weights)
        upper_tol = tolerance(sandwich.reverse_log_weights)
        assert lower < lower_tol and upper > -upper_tol
        if T == 100:
            assert abs(lower) < lower_tol and abs(upper) < upper_tol, (lower, upper)
        gaps.append(upper - lower)
    assert gaps[1] < gaps[0], gaps


@pytest.mark.parametrize("layers", [1, 2])
def test_the_quadrature_is_a_distribution(layers):
    """The reference the tests compare with: p(x) of the models used sums to one over all 64
    images (to 1e-6; a grid that missed mass would show here)."""
    for model in (tiny_bernoulli_model(layers, seed=4), fitted_tiny_bernoulli_model(layers)):
        total = torch.logsumexp(quadrature_log_px(model, all_binary_images()), dim=0).item()
        assert abs(total) < 1e-6, total


def test_simulated_data_follows_the_model():
    """The simulated images are draws of p(x): the frequency of each of the 64 images among
    20,000 draws matches its quadrature probability (a chi-square test at about 4 sd)."""
    model = tiny_bernoulli_model(2, seed=4)
    x, _ = simulate(model, 20000, gen(9))
    codes = (x[0] * (2 ** torch.arange(5, -1, -1, dtype=torch.float64))).sum(-1).long()
    counts = torch.bincount(codes, minlength=64).double()
    expected = 20000 * torch.exp(quadrature_log_px(model, all_binary_images()))
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    # chi-square with 63 degrees of freedom: mean 63, sd sqrt(126) ~ 11.2
    assert chi2 < 63 + 4 * math.sqrt(126), chi2


def test_members_are_annealed_independently():
    """Two members in one batch get exactly the numbers each gets alone."""
    pair = tiny_bernoulli_model(1, seed=1, members=2)
    x = all_binary_images()[:10]
    together = run_ais(ModelPath(pair, x[None].expand(2, -1, -1).contiguous(), 4, "prior"), 20,
                       HMCSettings(leapfrog=3), gen(5) + gen(5))
    for m in range(2):
        alone_model = tiny_bernoulli_model(1, seed=1)
        alone_model.load_state_dict({k: v[m:m + 1] for k, v in pair.state_dict().items()})
        alone = run_ais(ModelPath(alone_model, x[None], 4, "prior"), 20,
                        HMCSettings(leapfrog=3), gen(5))
        torch.testing.assert_close(together.log_weights[m], alone.log_weights[0], rtol=0,
                                   atol=1e-9)


class Interrupt(Exception):
    pass


def test_an_interrupted_evaluation_resumes_to_the_same_numbers(tmp_path):
    model = tiny_bernoulli_model(1, seed=2)
    x = all_binary_images()[None, :12]
    settings = AISSettings(steps=6, chains=3, leapfrog=2, batch=5)
    reference = evaluate_ais(model, x, settings)

    calls = []

    def stop_in_the_second_batch(n: int) -> None:
        calls.append(n)
        if len(calls) == settings.steps - 1 + 2:  # two transitions into batch 2
            raise Interrupt

    store = BatchStore(tmp_path / "partial", {"example": 1})
    with pytest.raises(Interrupt):
        evaluate_ais(model, x, settings, store, stop_in_the_second_batch)
    resumed = evaluate_ais(model, x, settings, BatchStore(tmp_path / "partial", {"example": 1}))
    assert resumed.resumed_batches == 1
    np.testing.assert_array_equal(resumed.log_weights, reference.log_weights)
    # other settings in the same folder: nothing is reused
    other = evaluate_ais(model, x, settings, BatchStore(tmp_path / "partial", {"example": 2}))
    assert other.resumed_batches == 0


def test_bdmc_evaluation_gives_one_row_per_schedule_length():
    """Each row is BDMC with its own T on the same simulated examples, batch by batch: its
    first batch holds exactly what bdmc() gives for that T with that batch's generators."""
    model = tiny_bernoulli_model(1, seed=3, scale=3.0)
    settings = AISSettings(chains=4, leapfrog=2, batch=4)
    rows = evaluate_bdmc(model, 6, (2, 20), settings)
    assert [row.steps for row in rows] == [2, 20]
    x, h = simulated_examples(model, 6, settings.seed)
    for row in rows:
        assert row.lower.shape == row.upper.shape == (1, 6)
        gens = batch_generators(1, torch.device("cpu"), settings.seed, "bdmc", row.steps, 0)
        direct = bdmc(model, x[:, :4], h[:, :4], row.steps, 4, settings.hmc, gens)
        np.testing.assert_array_equal(row.lower[:, :4], direct.lower.numpy())
        np.testing.assert_array_equal(row.upper[:, :4], direct.upper.numpy())
