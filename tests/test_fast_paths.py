"""The pieces behind batched and fast training: per-member noise, the fused Bernoulli head, the
group optimizer, flush-to-zero, batched evaluation, and (with a GPU) the CUDA-graph step."""

import copy
import warnings

import numpy as np
import pytest
import torch
from cuda_marks import needs_cuda

from benchmark.config import RunConfig
from benchmark.evaluation import likelihood
from benchmark.evaluation.inputs import evaluation_inputs
from benchmark.evaluation.likelihood import log_likelihood_estimates
from benchmark.evaluation.run import evaluate_members
from benchmark.models.network import IWAEModel, standard_normal
from benchmark.training.denormals import flush_denormals
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import standalone_group_step
from benchmark.training.optim import make_optimizer, set_learning_rate
from benchmark.training.stacked_adam import (
    COMPILED_VARIANTS,
    MemberAdam,
    fused_code_update,
    fused_paper_update,
)


def random_model(layers: int, members: int, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> IWAEModel:
    """The paper fidelity's initialisation, a different seed per member."""
    model = IWAEModel(layers, members=members)
    model.init_glorot([torch.Generator().manual_seed(seed + m) for m in range(members)],
                      np.full(784, 0.2, dtype=np.float32))
    return model.to(dtype)


def binary_images(*shape: int, seed: int = 1, dtype: torch.dtype = torch.float32
                  ) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=gen) < 0.3).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_member_draws_what_it_would_draw_alone(dtype):
    """float64 too: a member's float64 draws are other numbers than its float32 draws, so
    drawing in the default dtype and casting would not be what it draws alone."""
    gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
    both = standard_normal((2, 5, 7), gens, "cpu", dtype)
    assert both.dtype == dtype
    for member, seed in enumerate((3, 4)):
        alone = torch.randn(1, 5, 7, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        assert torch.equal(both[member], alone[0])
    with pytest.raises(ValueError, match="3 generators for 2 members"):
        standard_normal((2, 5), [torch.Generator()] * 3, "cpu")


@pytest.mark.parametrize("layers", [1, 2])
def test_fused_head_computes_the_reference_log_weights_and_gradients(layers):
    model = random_model(layers, members=2, dtype=torch.float64)
    x = binary_images(2, 5, 784, dtype=torch.float64)
    eps = model.draw_noise(2, 4, 5, torch.Generator().manual_seed(7), "cpu", torch.float64)
    results = []
    for fused in (False, True):
        log_w = model.log_weights_given_noise(x, eps, fused_likelihood=fused)
        # a non-linear function of log w, so that every sample gets its own weight
        grads = torch.autograd.grad(torch.logsumexp(log_w, dim=1).sum(), model.parameters())
        results.append((log_w.detach(), grads))
    (ref_w, ref_g), (w, g) = results
    torch.testing.assert_close(w, ref_w, rtol=1e-12, atol=1e-9)
    for a, b in zip(g, ref_g, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def stacked_and_single_optimizers(variant: str, members: int = 3):
    """Member i alone (its own optimizer, lr (i+1)e-3), and the same members stacked; member 2
    has taken two steps more than the others."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(6, 4), (1, 4)]
    singles = [[torch.nn.Parameter(torch.randn(1, *s, generator=gen)) for s in shapes]
               for _ in range(members)]
    optimizers = [make_optimizer(variant, singles[i], 1e-3 * (i + 1)) for i in range(members)]
    for _ in range(2):
        for p in singles[2]:
            p.grad = torch.randn(p.shape, generator=gen)
        optimizers[2].step()
    stacked = [torch.nn.Parameter(torch.cat([singles[i][j].detach() for i in range(members)]))
               for j in range(len(shapes))]
    return singles, optimizers, stacked, gen


def fused_twin(stacked, variant: str, lrs, member_2_optimizer):
    """Copies of the stacked parameters under the fused (uncompiled) MemberAdam, member 2's state
    taken from its own optimizer as stacked_and_single_optimizers leaves it."""
    params = [torch.nn.Parameter(p.detach().clone()) for p in stacked]
    fused = MemberAdam(params, len(lrs), variant, lrs, fused=True, compile_cpu=False)
    fused.load_member_state_dict(2, copy.deepcopy(member_2_optimizer.state_dict()))
    return params, fused


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_member_adam_is_each_members_own_optimizer(variant):
    singles, optimizers, stacked, gen = stacked_and_single_optimizers(variant)
    group = MemberAdam(stacked, 3, variant, [1e-3, 2e-3, 3e-3])
    group.load_member_state_dict(2, copy.deepcopy(optimizers[2].state_dict()))
    fused_params, fused = fused_twin(stacked, variant, group.lrs, optimizers[2])
    for _ in range(4):
        grads = [torch.randn(p.shape, generator=gen) for p in stacked]
        for i, params in enumerate(singles):
            for p, g in zip(params, grads, strict=True):
                p.grad = g[i:i + 1].clone()
            optimizers[i].step()
        for params, opt in ((stacked, group), (fused_params, fused)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for i in range(3):
        for j, p in enumerate(stacked):
            assert torch.equal(p[i], singles[i][j][0])  # exact: the same operations
            torch.testing.assert_close(fused_params[j][i], p[i], rtol=1e-5, atol=1e-6)
        mine, theirs = group.member_state_dict(i), optimizers[i].state_dict()
        assert mine["param_groups"] == theirs["param_groups"]
        for j in theirs["state"]:
            for key, value in theirs["state"][j].items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(mine["state"][j][key], value), key
                else:
                    assert mine["state"][j][key] == value, key
    smaller = group.select([2, 0], [torch.nn.Parameter(p[[2, 0]].detach()) for p in stacked])
    assert smaller.taken == [group.taken[2], group.taken[0]] and smaller.lrs == [3e-3, 1e-3]
    assert torch.equal(smaller.m[0][0], group.m[0][2])


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_fused_member_adam_takes_the_exact_steps(variant):
    """The fused update against the exact one, step by step, on the update itself and on both
    moments. Gradients of scale 30 take the code fidelity's v (which starts at 1) far from 1:
    near v = 1, m / sqrt(v) and m * sqrt(v) are the same step, and the parameters alone, ~1 in
    size against steps of ~1e-3, cannot tell a wrong update from float32 rounding."""
    _, optimizers, stacked, gen = stacked_and_single_optimizers(variant)
    exact = MemberAdam(stacked, 3, variant, [1e-3, 2e-3, 3e-3])
    exact.load_member_state_dict(2, copy.deepcopy(optimizers[2].state_dict()))
    fused_params, fused = fused_twin(stacked, variant, exact.lrs, optimizers[2])
    for _ in range(4):
        grads = [30 * torch.randn(p.shape, generator=gen) for p in stacked]
        before = [p.detach().clone() for p in stacked]
        for params, opt in ((stacked, exact), (fused_params, fused)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
        for p, q, b in zip(stacked, fused_params, before, strict=True):
            # float32: the update (~1e-3) is read off parameters of ~1 (ulp 6e-8)
            torch.testing.assert_close(q.detach() - b, p.detach() - b, rtol=1e-3, atol=3e-7)
        for moments in ("m", "v"):
            for a, b in zip(getattr(fused, moments), getattr(exact, moments), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_the_fused_kernels_compute_adams_formulas_member_by_member():
    """fused_code_update and fused_paper_update against their formulas written out member by
    member with Python-number step sizes, in float64 (rounding ~1e-16), on parameters of two
    ranks. v is small (sqrt(v) ~ 1e-3) so that epsilon (1e-4) weighs on the step: the code
    fidelity's v starts at 1 and stays near it over a test's few steps, where a wrong sign of
    epsilon changes the step by 1e-4 of itself, below what float32 parameters can show."""
    gen = torch.Generator().manual_seed(8)
    b1, b2, eps = 0.9, 0.999, 1e-4
    neg_step = torch.tensor([-1e-3, -2e-3, -5e-3], dtype=torch.float64)
    bias2_sqrt = torch.tensor([0.1, 0.3, 0.9], dtype=torch.float64)
    for variant in ("code", "paper"):
        shapes = [(3, 2, 4), (3, 5)]
        p, g, m = ([torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
                   for _ in range(3))
        m = [1e-3 * t for t in m]
        v = [1e-7 + 1e-6 * torch.rand(s, generator=gen, dtype=torch.float64) for s in shapes]
        new_m = [b1 * mm + (1 - b1) * gg for mm, gg in zip(m, g, strict=True)]
        new_v = [b2 * vv + (1 - b2) * gg * gg for vv, gg in zip(v, g, strict=True)]
        expected = []
        for pp, mm, vv, nm, nv in zip(p, m, v, new_m, new_v, strict=True):
            rows = []
            for i in range(3):
                if variant == "code":  # the lag: the moments from before the step
                    rows.append(pp[i] + neg_step[i].item() * mm[i] / (vv[i].sqrt() + eps))
                else:
                    denom = nv[i].sqrt() / bias2_sqrt[i].item() + eps
                    rows.append(pp[i] + neg_step[i].item() * nm[i] / denom)
            expected.append(torch.stack(rows))
        if variant == "code":
            fused_code_update(p, g, m, v, neg_step, b1, b2, eps)
        else:
            fused_paper_update(p, g, m, v, neg_step, bias2_sqrt, b1, b2, eps)
        for got, want in zip(p + m + v, expected + new_m + new_v, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("fused", [False, True])
def test_a_step_refuses_a_learning_rate_count_that_is_not_the_groups(fused):
    """set_learning_rates stores the list as given: with a rate too few, the next step must fail
    and leave the group untouched, not give every member the first member's rate (the exact
    path's one-pass update, the fused path's broadcast of a (2, 1) step-size table)."""
    params = [torch.nn.Parameter(torch.ones(3, 4))]
    group = MemberAdam(params, 3, "paper", [1e-3] * 3, fused=fused, compile_cpu=False)
    group.set_learning_rates([1e-3])
    params[0].grad = torch.ones(3, 4)
    with pytest.raises(ValueError):
        group.step()
    assert torch.equal(params[0], torch.ones(3, 4)) and group.taken == [0, 0, 0]


def test_member_adam_refuses_a_malformed_group():
    """A wrong fidelity, a learning rate too few, a parameter without the member dimension or a
    parameter without a gradient would train members under the wrong Adam or on the wrong rows:
    each is refused before any state is touched. The good parameter comes first, so that a check
    of the first parameter only (or of all at once) lets the bad one through."""
    good = torch.nn.Parameter(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="unknown fidelity 'adamw'"):
        MemberAdam([good], 2, "adamw", [1e-3, 1e-3])
    with pytest.raises(ValueError, match="one learning rate per member"):
        MemberAdam([good], 2, "code", [1e-3])
    with pytest.raises(ValueError, match="lead with the member dimension"):
        MemberAdam([good, torch.nn.Parameter(torch.zeros(3, 2))], 2, "code", [1e-3, 1e-3])
    other = torch.nn.Parameter(torch.zeros(2, 4))
    group = MemberAdam([good, other], 2, "paper", [1e-3, 1e-3])
    good.grad = torch.ones_like(good)
    with pytest.raises(RuntimeError, match="every parameter of a group needs a gradient"):
        group.step()
    assert group.taken == [0, 0] and torch.equal(good, torch.zeros(2, 3))


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_member_adam_follows_new_learning_rates_as_each_member_alone(variant):
    """Members with one learning rate and step count take the update once over the stack, the
    others member by member; set_learning_rates moves a group from one case to the other (stage
    schedules that part). Each member, exact, stays bit-identical to its own optimizer with the
    same learning rates (a uniform step applied twice, or member 0's rate used for all, would
    not); the fused twin follows within the float32 rounding of the existing fused tests."""
    gen = torch.Generator().manual_seed(5)
    singles = [[torch.nn.Parameter(torch.randn(1, 5, 3, generator=gen))] for _ in range(2)]
    optimizers = [make_optimizer(variant, s, 1e-3) for s in singles]
    stacked = [torch.nn.Parameter(torch.cat([s[0].detach() for s in singles]))]
    group = MemberAdam(stacked, 2, variant, [1e-3, 1e-3])
    fused_params = [torch.nn.Parameter(stacked[0].detach().clone())]
    fused = MemberAdam(fused_params, 2, variant, [1e-3, 1e-3], fused=True, compile_cpu=False)
    for lrs in ([1e-3, 1e-3], [1e-3, 1e-3], [4e-3, 5e-4], [4e-3, 5e-4], [2e-3, 2e-3]):
        grad = torch.randn(stacked[0].shape, generator=gen)
        for i, opt in enumerate(optimizers):
            set_learning_rate(opt, lrs[i])
            singles[i][0].grad = grad[i:i + 1].clone()
            opt.step()
        for params, opt in ((stacked, group), (fused_params, fused)):
            opt.set_learning_rates(lrs)
            params[0].grad = grad.clone()
            opt.step()
        for i in range(2):
            assert torch.equal(stacked[0][i], singles[i][0][0])
        torch.testing.assert_close(fused_params[0], stacked[0], rtol=1e-5, atol=1e-6)
    assert group.lrs == fused.lrs == [2e-3, 2e-3] and group.taken == fused.taken == [5, 5]


def test_a_group_of_one_takes_the_single_run_optimizers_exact_steps():
    """The documented promise: a group of one is bit-identical to the single-run optimizer (the
    uniform path over the whole stack), for both fidelities, also when it resumes from the
    single run's checkpoint of a one-parameter model (whose state has an entry 0 only)."""
    gen = torch.Generator().manual_seed(9)
    for variant in ("code", "paper"):
        single = torch.nn.Parameter(torch.randn(1, 4, 2, generator=gen))
        alone = make_optimizer(variant, [single], 2e-3)
        stacked = torch.nn.Parameter(single.detach().clone())
        group = MemberAdam([stacked], 1, variant, [2e-3])
        resumed = None
        for step in range(4):
            if step == 2:
                resumed = torch.nn.Parameter(single.detach().clone())
                resumed_group = MemberAdam([resumed], 1, variant, [1e-3])
                resumed_group.load_member_state_dict(0, copy.deepcopy(alone.state_dict()))
            grad = torch.randn(single.shape, generator=gen)
            single.grad, stacked.grad = grad.clone(), grad.clone()
            alone.step()
            group.step()
            assert torch.equal(stacked, single)
            if resumed is not None:
                resumed.grad = grad.clone()
                resumed_group.step()
                assert torch.equal(resumed, single)


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_member_checkpoints_round_trip_in_the_single_run_format(variant):
    """A member resumed from a single run's checkpoint takes its moments, its step count and its
    learning rate (the stage it had reached, whatever rate the group was built with), and saves
    them back unchanged; a single-run optimizer loads a member's state and steps as the member
    does. An empty state (a run saved before its first step) leaves the member fresh."""
    singles, optimizers, stacked, gen = stacked_and_single_optimizers(variant)
    group = MemberAdam(stacked, 3, variant, [1e-3, 1e-3, 1e-3])
    group.load_member_state_dict(1, copy.deepcopy(optimizers[2].state_dict()))
    assert group.lrs == [1e-3, 3e-3, 1e-3] and group.taken == [0, 2, 0]
    saved, theirs = group.member_state_dict(1), optimizers[2].state_dict()
    assert saved["param_groups"] == theirs["param_groups"]
    for j, entry in theirs["state"].items():
        assert saved["state"][j].keys() == entry.keys()
        for key, value in entry.items():
            mine = saved["state"][j][key]
            assert torch.equal(mine, value) if isinstance(value, torch.Tensor) else mine == value
    # member 1, moved into a single-run optimizer built with another rate, steps as the member
    alone = [torch.nn.Parameter(p[1:2].detach().clone()) for p in stacked]
    single = make_optimizer(variant, alone, 5e-4)
    single.load_state_dict(copy.deepcopy(saved))
    grads = [torch.randn(p.shape, generator=gen) for p in stacked]
    for p, g in zip(stacked, grads, strict=True):
        p.grad = g.clone()
    for p, g in zip(alone, grads, strict=True):
        p.grad = g[1:2].clone()
    group.step()
    single.step()
    for p, q in zip(stacked, alone, strict=True):
        assert torch.equal(p[1], q[0])
    # an optimizer that never stepped saves an empty state: loading it makes the member fresh,
    # whatever moments and step count it had, with the saved learning rate
    fresh = MemberAdam([p.detach().clone() for p in stacked], 3, variant, [1e-3] * 3)
    for m, v in zip(fresh.m, fresh.v, strict=True):
        m[0].fill_(0.5)
        v[0].fill_(0.25)
    fresh.taken[0] = 7
    first_v = 1.0 if variant == "code" else 0.0
    fresh.load_member_state_dict(0, make_optimizer(variant, singles[0], 2e-3).state_dict())
    assert fresh.taken == [0, 0, 0] and fresh.lrs == [2e-3, 1e-3, 1e-3]
    for m, v in zip(fresh.m, fresh.v, strict=True):
        assert torch.equal(m, torch.zeros_like(m)) and torch.equal(v, torch.full_like(v, first_v))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("variant", ["code", "paper"])
def test_a_selected_group_steps_as_its_members_did(variant, fused, monkeypatch):
    """select (members leaving a group) keeps each kept member's moments, step count, learning
    rate and update path (the eager fused kernel stays eager): the smaller group's next step is
    bit-identical to the same members' step in the whole group. Parameters that do not match the
    group's one for one are refused rather than left with fresh moments."""
    recorder = RecordingCompile()
    monkeypatch.setattr(torch, "compile", recorder)
    _, optimizers, stacked, gen = stacked_and_single_optimizers(variant)
    group = MemberAdam(stacked, 3, variant, [1e-3, 2e-3, 3e-3], fused=fused, compile_cpu=False)
    group.load_member_state_dict(2, copy.deepcopy(optimizers[2].state_dict()))
    for p in stacked:
        p.grad = torch.randn(p.shape, generator=gen)
    group.step()
    keep = [2, 0]
    kept = [torch.nn.Parameter(p[keep].detach().clone()) for p in stacked]
    smaller = group.select(keep, kept)
    assert smaller.fused is fused and smaller.variant == variant
    for p, q in zip(stacked, kept, strict=True):
        p.grad = torch.randn(p.shape, generator=gen)
        q.grad = p.grad[keep].clone()
    group.step()
    smaller.step()
    assert smaller.taken == [4, 2] and smaller.lrs == [3e-3, 1e-3]
    for whole, part in zip(stacked + group.m + group.v, kept + smaller.m + smaller.v, strict=True):
        assert torch.equal(part, whole[keep])
    assert recorder.calls == []
    with pytest.raises(ValueError):  # a parameter list that is not the group's, refused
        group.select(keep, kept[:1])


class RecordingCompile:
    """A stand-in for torch.compile that records what it was asked to compile, and for each call
    of a compiled function its number (in order of compiling) and the recompile limit it runs
    under; it runs the function eagerly (or fails, as a missing compiler does)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail, self.compiled, self.calls = fail, [], []

    def __call__(self, fn, **options):
        number = len(self.compiled)
        self.compiled.append((fn, options))

        def compiled(*args):
            self.calls.append((number, torch._dynamo.config.recompile_limit))
            if self.fail:
                raise RuntimeError("no C++ compiler")
            return fn(*args)
        return compiled


def fused_group(variant: str, **options):
    """Fresh parameters (the same every call) under a fused MemberAdam of three members."""
    gen = torch.Generator().manual_seed(2)
    params = [torch.nn.Parameter(torch.randn(3, 4, 2, generator=gen))]
    return params, MemberAdam(params, 3, variant, [1e-3, 2e-3, 3e-3], fused=True, **options)


def step_with(params, opt, grads) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt.step()


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_the_fused_update_is_compiled_once_and_only_on_the_cpu(variant, monkeypatch):
    """On the CPU (unless told not to) the fused update of the group's fidelity is compiled, once,
    with dynamic sizes so that any group size shares the kernel, and every step runs it under the
    raised recompile limit; a group selected out of it keeps that kernel. Off the CPU (a CUDA
    graph captures the eager update) and for the exact path nothing is compiled."""
    recorder = RecordingCompile()
    monkeypatch.setattr(torch, "compile", recorder)
    kernel = fused_code_update if variant == "code" else fused_paper_update
    eager_params, eager = fused_group(variant, compile_cpu=False)
    MemberAdam(eager_params, 3, variant, [1e-3] * 3)
    assert recorder.compiled == []
    params, compiled = fused_group(variant)
    assert recorder.compiled == [(kernel, {"dynamic": True, "fullgraph": True})]
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        grads = [torch.randn(p.shape, generator=gen) for p in params]
        step_with(eager_params, eager, grads)
        step_with(params, compiled, grads)
    assert recorder.calls == [(0, COMPILED_VARIANTS)] * 2
    assert torch.equal(params[0], eager_params[0])  # the stand-in ran the very kernel
    kept = [torch.nn.Parameter(params[0][[1]].detach().clone())]
    step_with(kept, compiled.select([1], kept), [torch.ones_like(kept[0])])
    assert recorder.calls[2] == (0, COMPILED_VARIANTS)  # select keeps what was compiled
    on_meta = torch.nn.Parameter(torch.zeros(3, 4, device="meta"))
    elsewhere = MemberAdam([on_meta], 3, variant, [1e-3] * 3, fused=True)
    assert elsewhere.step_sizes.device == on_meta.device  # where a CUDA graph reads them
    step_with([on_meta], elsewhere, [torch.ones_like(on_meta)])
    assert len(recorder.calls) == 3


@pytest.mark.parametrize("variant", ["code", "paper"])
def test_a_failing_compiler_leaves_the_fused_update_eager(variant, monkeypatch):
    """When the compiled update fails (no C++ compiler), the step warns once, runs the eager
    update instead (the same numbers as never compiling) and never tries the compiler again."""
    recorder = RecordingCompile(fail=True)
    monkeypatch.setattr(torch, "compile", recorder)
    eager_params, eager = fused_group(variant, compile_cpu=False)
    params, compiled = fused_group(variant)
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    step_with(eager_params, eager, grads)
    with pytest.warns(RuntimeWarning, match=r"^torch\.compile of the fused Adam failed "
                      r"\(RuntimeError\); using the eager update$"):
        step_with(params, compiled, grads)
    grads = [torch.randn(p.shape, generator=gen) for p in params]
    step_with(eager_params, eager, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        step_with(params, compiled, grads)
    assert len(recorder.calls) == 1
    for a, b in zip(params + compiled.m + compiled.v, eager_params + eager.m + eager.v,
                    strict=True):
        assert torch.equal(a, b)


def test_flush_denormals_reaches_every_worker_thread():
    tiny = torch.full((1 << 20,), 1e-39)  # denormal float32, big enough to run in parallel
    assert (tiny * 2).min().item() > 0
    with flush_denormals() as complete:
        flushed = (tiny * 2).max().item()
    assert (tiny * 2).min().item() > 0  # switched off again
    if complete:
        assert flushed == 0.0
    with flush_denormals(False) as complete:
        assert not complete and (tiny * 2).min().item() > 0


def member_generators() -> list[torch.Generator]:
    return [torch.Generator().manual_seed(11), torch.Generator().manual_seed(12)]


def half_pruned_masks(model: IWAEModel) -> list[torch.Tensor]:
    """Every other unit of layer 1 of member 0 pruned, nothing of member 1."""
    masks = [torch.ones(2, d, dtype=torch.bool) for d in model.arch.latent_sizes]
    masks[0][0, ::2] = False
    return masks


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_evaluation_keeps_the_reference_draws(layers):
    model = random_model(layers, members=2, seed=3)
    x = binary_images(2, 7, 784)
    exact = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700)
    # passes smaller than, across and beyond the draw layout
    for rows in (150, 1000, 100_000):
        fast = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700,
                                        fast=True, rows_per_pass=rows, compile_forward=False)
        np.testing.assert_allclose(fast, exact, rtol=2e-6)  # float32 rounding of ~500 nats
    # pruned units (the half of layer 1 of member 0, none of member 1) reach the fast path too
    masks = half_pruned_masks(model)
    exact_pruned = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700,
                                            unit_masks=masks)
    fast_pruned = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700,
                                           unit_masks=masks, fast=True, rows_per_pass=1000,
                                           compile_forward=False)
    np.testing.assert_allclose(fast_pruned, exact_pruned, rtol=2e-6)
    assert np.abs(exact_pruned[0] - exact[0]).min() > 1e-3  # the masks change member 0's L_k
    # member 1 of the pair is exactly member 1 scored alone with its own generator
    alone = IWAEModel(layers, members=1)
    with torch.no_grad():
        for a, b in zip(alone.parameters(), model.parameters(), strict=True):
            a.copy_(b[1:2])
    single = log_likelihood_estimates(alone, x[1:2], 300, torch.Generator().manual_seed(12),
                                      rows_per_chunk=700)
    np.testing.assert_allclose(exact[1], single[0], rtol=2e-6)


class RecordedCalls:
    """Wraps a model's draw_noise and log_weights_given_noise and records every call: what was
    drawn (samples, examples, device, dtype) and each forward's noise shape and head."""

    def __init__(self, model: IWAEModel, monkeypatch: pytest.MonkeyPatch) -> None:
        self.draws: list[tuple] = []
        self.forwards: list[tuple] = []
        draw, forward = model.draw_noise, model.log_weights_given_noise

        def draw_noise(members, k, batch, generator, device, dtype=torch.float32):
            self.draws.append((k, batch, device, dtype))
            return draw(members, k, batch, generator, device, dtype)

        def log_weights_given_noise(x, eps, unit_masks=None, fused_likelihood=False,
                                    routing=None):
            self.forwards.append((tuple(eps[0].shape[:3]), fused_likelihood))
            return forward(x, eps, unit_masks, fused_likelihood, routing)

        monkeypatch.setattr(model, "draw_noise", draw_noise)
        monkeypatch.setattr(model, "log_weights_given_noise", log_weights_given_noise)

    def clear(self) -> None:
        self.draws.clear()
        self.forwards.clear()


def test_fast_evaluation_passes_keep_the_draws_and_their_size(monkeypatch):
    """k = 7 in pieces of 6 and 1 (one example a batch), in float64. The fast path must draw
    exactly the reference's pieces, on x's device and in x's dtype (float64 noise is another
    stream than float32 noise), and compute them with the fused head in forwards of at most
    rows_per_pass rows, or of one batch's single sample where rows_per_pass is smaller; without
    rows_per_pass the CPU passes hold CPU_ROWS_PER_PASS rows. Catches a last piece drawn whole,
    float32 or host-side noise, passes that ignore or exceed rows_per_pass, and the unfused
    head."""
    model = random_model(1, members=2, seed=3, dtype=torch.float64)
    x = binary_images(2, 7, 784, dtype=torch.float64)
    record = RecordedCalls(model, monkeypatch)
    exact = log_likelihood_estimates(model, x, 7, member_generators(), rows_per_chunk=6)
    reference_draws = list(record.draws)
    assert reference_draws == [(6, 1, x.device, torch.float64), (1, 1, x.device, torch.float64)] * 7
    monkeypatch.setattr(likelihood, "CPU_ROWS_PER_PASS", 30)
    for rows in (1, 30, None):
        record.clear()
        fast = log_likelihood_estimates(model, x, 7, member_generators(), rows_per_chunk=6,
                                        fast=True, rows_per_pass=rows, compile_forward=False)
        # float64: the fused head rounds differently, ~1e-16 of each of 784 terms of ~500 nats
        np.testing.assert_allclose(fast, exact, rtol=1e-12)
        assert record.draws == reference_draws
        assert all(fused for _, fused in record.forwards)
        # (members, samples, examples) of every forward; 2 x 7 x 7 rows in all
        sizes = [m * s * n for (m, s, n), _ in record.forwards]
        assert sum(sizes) == 2 * 7 * 7
        assert max(sizes) <= max(rows or 30, 2 * 1 * 1)  # one sample of a one-example batch
        if rows != 1:
            assert max(sizes) > 30 // 2  # about rows_per_pass, not a few rows at a time


def test_gpu_passes_fill_half_the_free_memory_within_bounds(monkeypatch):
    """On a GPU a pass holds what half the free memory of that GPU holds at BYTES_PER_ROW a row,
    but no fewer than DEFAULT_ROWS_PER_CHUNK rows and no more than MAX_GPU_ROWS_PER_PASS. The
    memory query is a stand-in, so this runs on the CPU; it must be asked about x's GPU."""
    asked = []
    free_bytes = [0]

    def mem_get_info(device):
        asked.append(device)
        return free_bytes[0], 80 * 2**30

    monkeypatch.setattr(torch.cuda, "mem_get_info", mem_get_info)
    gpu = torch.device("cuda", 1)
    row = likelihood.BYTES_PER_ROW
    for free, rows in ((10 * 2**30 + 3 * row, 10 * 2**30 // 2 // row + 1),  # half, floored
                       (2**20, likelihood.DEFAULT_ROWS_PER_CHUNK),  # 32 rows: the floor
                       (2**40, likelihood.MAX_GPU_ROWS_PER_PASS)):  # 33.5M rows: the cap
        free_bytes[0] = free
        got = likelihood.default_rows_per_pass(gpu)
        assert got == rows and isinstance(got, int)
    assert asked == [gpu] * 3
    assert likelihood.default_rows_per_pass(torch.device("cpu")) == likelihood.CPU_ROWS_PER_PASS
    assert len(asked) == 3  # the CPU asks no GPU


@pytest.fixture
def stand_in_compile(monkeypatch) -> RecordingCompile:
    """RecordingCompile as torch.compile, with the evaluation's compiled forward not yet built."""
    compile_ = RecordingCompile()
    monkeypatch.setattr(torch, "compile", compile_)
    monkeypatch.setattr(likelihood._CompiledForward, "compiled", None)
    monkeypatch.setattr(likelihood._CompiledForward, "failed", False)
    return compile_


def test_long_cpu_evaluations_compile_the_reference_forward_once(stand_in_compile, monkeypatch):
    """compile_forward None compiles from COMPILE_EVALUATION_ROWS rows (samples x examples x
    members) on, True and False decide alone, and a GPU never compiles. What is compiled is the
    unfused reference forward, once per process, called under the raised recompile limit, with
    the pruning masks, and it gives the reference's numbers (float64: rounding only)."""
    model = random_model(1, members=2, seed=3, dtype=torch.float64)
    x = binary_images(2, 7, 784, dtype=torch.float64)
    masks = half_pruned_masks(model)
    exact = log_likelihood_estimates(model, x, 7, member_generators(), rows_per_chunk=6,
                                     unit_masks=masks)

    def fast(compile_forward):
        return log_likelihood_estimates(model, x, 7, member_generators(), rows_per_chunk=6,
                                        unit_masks=masks, fast=True, rows_per_pass=30,
                                        compile_forward=compile_forward)

    calls = stand_in_compile.calls
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a compiled forward that fails would fall back, warning
        for threshold, compile_forward, compiles in ((2 * 7 * 7, None, True),
                                                     (2 * 7 * 7 + 1, None, False),
                                                     (2 * 7 * 7, False, False),
                                                     (2 * 7 * 7 + 1, True, True)):
            monkeypatch.setattr(likelihood, "COMPILE_EVALUATION_ROWS", threshold)
            before = len(calls)
            np.testing.assert_allclose(fast(compile_forward), exact, rtol=1e-12)
            assert (len(calls) > before) == compiles, (threshold, compile_forward)
    assert [fn for fn, _ in stand_in_compile.compiled] == [likelihood._reference_forward]
    assert calls == [(0, likelihood.COMPILED_VARIANTS)] * len(calls) and len(calls) == 2 * 4
    for total in (1, 2 * likelihood.COMPILE_EVALUATION_ROWS):
        for choice in (None, True):
            assert likelihood._fast_forward(torch.device("cuda"), total, choice) \
                is likelihood._eager_forward


def test_a_failing_compiled_evaluation_warns_once_and_stays_eager(stand_in_compile):
    """A compiled forward that raises on its first call: one RuntimeWarning naming the error,
    and from then on the eager fast path, never the compiled one again, with the same numbers
    as an eager evaluation, pruned units included."""
    stand_in_compile.fail = True
    model = random_model(1, members=2, seed=3)
    x = binary_images(2, 7, 784)
    masks = half_pruned_masks(model)

    def fast(compile_forward):
        return log_likelihood_estimates(model, x, 7, member_generators(), rows_per_chunk=6,
                                        unit_masks=masks, fast=True, rows_per_pass=30,
                                        compile_forward=compile_forward)

    eager = fast(False)
    with pytest.warns(RuntimeWarning) as warned:
        fallback = fast(True)
    assert [str(w.message) for w in warned] == [
        "torch.compile of the evaluation failed (RuntimeError); evaluating eagerly"]
    np.testing.assert_array_equal(fallback, eager)
    assert likelihood._CompiledForward.failed and len(stand_in_compile.calls) == 1


@pytest.mark.compiles
@pytest.mark.parametrize("layers", [1, 2])
def test_compiled_fast_evaluation_keeps_the_reference_draws(layers):
    model = random_model(layers, members=2, seed=3)
    x = binary_images(2, 7, 784)
    exact = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700)
    fast = log_likelihood_estimates(model, x, 300, member_generators(), rows_per_chunk=700,
                                    fast=True, rows_per_pass=1000, compile_forward=True)
    np.testing.assert_allclose(fast, exact, rtol=2e-6)


def test_members_evaluated_together_score_as_alone(synthetic_data_dir, tmp_path):
    from benchmark.data.splits import load_dataset

    config = RunConfig(data="mnist-dynamic", model="iwae", k=2, layers=2, steps=3, eval_k=20,
                       eval_n=10)
    inputs = evaluation_inputs(load_dataset(config.data, synthetic_data_dir), config)
    pair = random_model(2, members=2, seed=5)
    together = evaluate_members(pair, inputs, [config, config],
                                torch.device("cpu"), [tmp_path / "a", tmp_path / "b"],
                                show_progress=False)
    for i in range(2):
        alone = IWAEModel(2, members=1)
        with torch.no_grad():
            for a, b in zip(alone.parameters(), pair.parameters(), strict=True):
                a.copy_(b[i:i + 1])
        (metrics, _), = evaluate_members(alone, inputs, [config], torch.device("cpu"),
                                         [tmp_path / f"alone{i}"], show_progress=False)
        for key in ("test_nll", "train_nll", "test_nll_pruned"):
            assert together[i][0][key] == pytest.approx(metrics[key], abs=1e-4)
        assert together[i][0]["active_units"] == metrics["active_units"]
        np.testing.assert_allclose(np.load(tmp_path / ("ab"[i]) / "samples.npy"),
                                   np.load(tmp_path / f"alone{i}" / "samples.npy"), atol=1e-5)


def test_standalone_group_step_trains_without_touching_disk(synthetic_data_dir, tmp_path,
                                                           monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    configs = [RunConfig(data="mnist-dynamic", model=m, k=2, layers=1, seed=s)
               for m, s in (("vae", 0), ("iwae", 1))]
    step, state = standalone_group_step(configs, synthetic_data_dir)
    before = [p.detach().clone() for p in state.model.parameters()]
    for _ in range(3):
        bounds = step()
    assert bounds.shape == (2, 20) and torch.isfinite(bounds).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, state.model.parameters(),
                                                     strict=True))
    assert list(work.iterdir()) == []


def generator_states(state_members) -> list[torch.Tensor]:
    states = []
    for member in state_members:
        states.append(member.noise.get_state())
        if member.binarizer.dynamic:
            states.append(member.binarizer.generator.get_state())
    return states


@needs_cuda
@pytest.mark.parametrize("numerics", ["exact", "fast"])
def test_cuda_graph_step_replays_the_eager_step(synthetic_data_dir, numerics, monkeypatch):
    """exact: the graph replays the very kernels of the eager step, so bounds, parameters and
    Adam moments are bit-identical (torch.equal); fast: the same, except that the fused
    optimizer runs inside the graph, so only float rounding separates them. Either way every
    member's generators end in the same state: a replay draws what the eager step draws."""
    from benchmark.training import loop

    captured = {}
    real_new_member = loop.new_member

    def keeping_members(*args, **kwargs):
        member = real_new_member(*args, **kwargs)
        captured.setdefault("members", []).append(member)
        return member

    monkeypatch.setattr(loop, "new_member", keeping_members)
    configs = [RunConfig(data=d, model=m, k=3, layers=2, seed=s, device="cuda")
               for d, m, s in (("mnist-dynamic", "iwae", 0), ("mnist-fixed", "vae", 1))]
    results = []
    for graphs in (False, True):
        captured.clear()
        options = ExecutionOptions(numerics=numerics, cuda_graphs=graphs)
        step, state = standalone_group_step(configs, synthetic_data_dir, options)
        bounds = torch.stack([step().clone() for _ in range(8)])  # warm-up, capture, replays
        torch.cuda.synchronize()
        results.append((bounds, [p.detach().clone() for p in state.model.parameters()],
                        [t.clone() for t in state.optimizer.m + state.optimizer.v],
                        generator_states(captured["members"])))
    (eager_bounds, eager_params, eager_moments, eager_rng), (graph_bounds, graph_params,
                                                             graph_moments, graph_rng) = results
    for a, b in zip(graph_rng, eager_rng, strict=True):
        assert torch.equal(a, b)
    if numerics == "exact":
        assert torch.equal(graph_bounds, eager_bounds)
        for a, b in zip(graph_params + graph_moments, eager_params + eager_moments, strict=True):
            assert torch.equal(a, b)
    else:
        torch.testing.assert_close(graph_bounds, eager_bounds, rtol=1e-5, atol=1e-4)
        for a, b in zip(graph_params, eager_params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def gpu_configs(**kw) -> list[RunConfig]:
    return [RunConfig(**{"data": "mnist-dynamic", "model": m, "k": 3, "layers": 1, "seed": s,
                         "epochs": 4, "eval_k": 50, "eval_n": 50, **kw})
            for m, s in (("vae", 0), ("iwae", 1))]


# Measured on the CPU for gpu_configs() (code fidelity: the initial model is the same for every
# seed, so seeds differ only in their random streams, as the two devices do): over seeds 0-7 the
# test NLL has a standard deviation of 0.065 (VAE) and 0.060 (IWAE) nats; one trained model
# scored with 8 evaluation-noise seeds, 0.22 and 0.21 nats.
SEED_SD, EVAL_SD = 0.07, 0.23


@needs_cuda
def test_a_group_trained_on_the_gpu_scores_as_on_the_cpu(synthetic_data_dir, tmp_path):
    """The same configurations trained on the GPU (CUDA graphs, exact numerics) and on the CPU.
    The devices draw different random numbers (CUDA's Philox against the CPU's Mersenne
    twister), so they can only agree as runs of different seeds agree. The GPU-trained model,
    scored on the CPU with the CPU's evaluation noise, differs from the CPU run by training noise
    alone (sd sqrt(2) SEED_SD); the GPU's own score of it by evaluation noise alone (sd sqrt(2)
    EVAL_SD). Five standard deviations each."""
    from benchmark.data.splits import load_dataset
    from benchmark.evaluation.inputs import evaluation_inputs
    from benchmark.evaluation.run import score
    from benchmark.records.checkpoint import load_latest_checkpoint
    from benchmark.training.loop import train_group

    gpu_dirs, cpu_dirs = [tmp_path / "g0", tmp_path / "g1"], [tmp_path / "c0", tmp_path / "c1"]
    gpu = train_group(gpu_configs(device="cuda"), gpu_dirs, synthetic_data_dir,
                      show_progress=False)
    cpu = train_group(gpu_configs(), cpu_dirs, synthetic_data_dir, show_progress=False)
    config = gpu_configs()[0]
    inputs = evaluation_inputs(load_dataset(config.data, synthetic_data_dir), config)
    for g, c, run_dir in zip(gpu, cpu, gpu_dirs, strict=True):
        assert g["status"] == c["status"] == "complete"
        assert g["environment"]["execution"]["cuda_graphs"] is True
        model = IWAEModel(1)
        model.load_state_dict({name: t.cpu() for name, t
                               in load_latest_checkpoint(run_dir)["model"].items()})
        on_cpu = -score(model, inputs.test[inputs.test_index], 50, torch.device("cpu")).mean()
        assert abs(on_cpu - c["metrics"]["test_nll"]) < 5 * 2**0.5 * SEED_SD
        assert abs(g["metrics"]["test_nll"] - on_cpu) < 5 * 2**0.5 * EVAL_SD


@needs_cuda
def test_a_run_with_cuda_graphs_resumes_bit_identically(synthetic_data_dir, tmp_path):
    """Interrupted between two checkpoints and run again: the resumed run re-captures its graph
    from the checkpoint and ends with the parameters and metrics of the uninterrupted run."""
    from benchmark.records.checkpoint import checkpoint_steps, load_latest_checkpoint
    from benchmark.training.loop import train_run

    config = gpu_configs(device="cuda")[1]

    def interrupt_after_step_12(done: int, planned: int) -> None:
        if done >= 12:
            raise KeyboardInterrupt

    whole = train_run(config, tmp_path / "whole", synthetic_data_dir, show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        train_run(config, tmp_path / "resumed", synthetic_data_dir, show_progress=False,
                  on_progress=interrupt_after_step_12)
    assert 0 < checkpoint_steps(tmp_path / "resumed")[-1] < 12
    resumed = train_run(config, tmp_path / "resumed", synthetic_data_dir, show_progress=False)
    assert resumed["environment"]["execution"]["cuda_graphs"] is True
    a = load_latest_checkpoint(tmp_path / "whole")["model"]
    b = load_latest_checkpoint(tmp_path / "resumed")["model"]
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert resumed["metrics"] == whole["metrics"]
