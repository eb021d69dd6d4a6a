"""The pieces behind batched and fast training: per-member noise, the fused Bernoulli head, the
group optimizer, flush-to-zero, batched evaluation, and (with a GPU) the CUDA-graph step."""

import copy

import numpy as np
import pytest
import torch
from cuda_marks import needs_cuda

from benchmark.config import RunConfig
from benchmark.evaluation.inputs import evaluation_inputs
from benchmark.evaluation.likelihood import log_likelihood_estimates
from benchmark.evaluation.run import evaluate_members
from benchmark.models.network import IWAEModel, standard_normal
from benchmark.training.denormals import flush_denormals
from benchmark.training.execution import ExecutionOptions
from benchmark.training.loop import standalone_group_step
from benchmark.training.optim import make_optimizer
from benchmark.training.stacked_adam import MemberAdam


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
    masks = [torch.ones(2, d, dtype=torch.bool) for d in model.arch.latent_sizes]
    masks[0][0, ::2] = False
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
