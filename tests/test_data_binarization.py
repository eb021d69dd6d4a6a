"""Fixed and dynamic binarization, and the decoder-bias mean."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cuda_marks import needs_cuda

from benchmark.data.binarization import (
    TEST_BINARIZATION_SEED,
    DynamicBinarizer,
    FixedBinarizer,
    binarize_once,
    decoder_bias_mean,
    make_binarizer,
)

# Standard errors allowed between an empirical frequency and its Bernoulli probability. With a
# fixed seed the test is deterministic; 5 standard errors would be exceeded by chance with
# probability about 6e-7 per pixel, so a failure means a real bias, not bad luck.
Z_TOLERANCE = 5.0


def gray_batch(batch: int = 20, seed: int = 0) -> torch.Tensor:
    """(batch, 784) intensities including exact 0s and 1s, like MNIST gray values."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, 784, generator=g)
    p[:, :100] = 0.0
    p[:, 100:150] = 1.0
    return p


def within_binomial_error(freq: np.ndarray, p: np.ndarray, n: int) -> bool:
    se = np.sqrt(p * (1 - p) / n)  # 0 where p is 0 or 1: those must match exactly
    return bool(np.all(np.abs(freq - p) <= Z_TOLERANCE * se + 1e-12))


def test_two_draws_of_one_minibatch_differ() -> None:
    b = DynamicBinarizer(seed=0, device="cpu")
    p = gray_batch()
    first, second = b(p), b(p)
    assert first.dtype == torch.float32 and first.device == p.device
    assert set(first.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(first, second)


def test_mean_of_many_draws_matches_the_intensities() -> None:
    b = DynamicBinarizer(seed=1, device="cpu")
    p = gray_batch(batch=4)
    n = 4000
    total = torch.zeros_like(p, dtype=torch.float64)
    for _ in range(n):
        total += b(p)
    freq = (total / n).numpy()
    assert within_binomial_error(freq, p.double().numpy(), n)


def test_always_black_pixels_stay_black_and_white_stay_white() -> None:
    b = DynamicBinarizer(seed=2, device="cpu")
    p = gray_batch(batch=20)
    draws = torch.stack([b(p) for _ in range(100)])  # (100, 20, 784)
    assert draws[..., :100].sum() == 0
    assert bool((draws[..., 100:150] == 1).all())


def test_a_seed_reproduces_its_draws() -> None:
    p = gray_batch()
    a, b = DynamicBinarizer(7, "cpu"), DynamicBinarizer(7, "cpu")
    for _ in range(3):
        assert torch.equal(a(p), b(p))
    assert not torch.equal(DynamicBinarizer(8, "cpu")(p), DynamicBinarizer(7, "cpu")(p))


def test_state_dict_round_trip_continues_the_stream() -> None:
    p = gray_batch()
    original = DynamicBinarizer(3, "cpu")
    original(p)
    state = original.state_dict()
    expected = [original(p) for _ in range(3)]
    resumed = DynamicBinarizer(999, "cpu")
    resumed.load_state_dict(state)
    assert resumed.seed == 3
    for want in expected:
        assert torch.equal(resumed(p), want)


def test_state_dict_survives_torch_save(tmp_path) -> None:
    p = gray_batch()
    b = DynamicBinarizer(4, "cpu")
    torch.save(b.state_dict(), tmp_path / "state.pt")
    want = b(p)
    other = DynamicBinarizer(0, "cpu")
    other.load_state_dict(torch.load(tmp_path / "state.pt"))
    assert torch.equal(other(p), want)


def test_fixed_binarizer_returns_its_input() -> None:
    x = torch.randint(0, 2, (5, 784)).float()
    b = FixedBinarizer()
    assert b(x) is x
    b.load_state_dict(b.state_dict())
    with pytest.raises(ValueError):
        b.load_state_dict(DynamicBinarizer(0, "cpu").state_dict())


def test_make_binarizer() -> None:
    assert isinstance(make_binarizer(True, 0, "cpu"), DynamicBinarizer)
    assert isinstance(make_binarizer(False, 0, torch.device("cpu")), FixedBinarizer)
    assert make_binarizer(True, 0, "cpu").dynamic and not make_binarizer(False, 0, "cpu").dynamic


def test_binarize_once_is_deterministic_for_a_seed() -> None:
    x = gray_batch(batch=30).numpy()
    a = binarize_once(x, TEST_BINARIZATION_SEED)
    assert a.dtype == np.float32 and a.shape == x.shape
    assert set(np.unique(a)) <= {0.0, 1.0}
    np.testing.assert_array_equal(a, binarize_once(x, 123))
    assert not np.array_equal(a, binarize_once(x, 124))
    assert a[:, :100].sum() == 0 and (a[:, 100:150] == 1).all()


def test_binarize_once_is_unbiased() -> None:
    p = np.full((2000, 784), 0.3, dtype=np.float32)
    n = p.size
    freq = binarize_once(p, 5).mean()
    assert abs(freq - 0.3) <= Z_TOLERANCE * np.sqrt(0.3 * 0.7 / n)


def test_binarize_once_keeps_fixed_data_unchanged() -> None:
    bits = np.random.default_rng(0).integers(0, 2, (10, 784)).astype(np.float32)
    np.testing.assert_array_equal(binarize_once(bits, 123), bits)


def test_decoder_bias_mean_is_the_clipped_gray_mean() -> None:
    train = np.zeros((4, 784), dtype=np.float32)
    train[:, 1] = 1.0
    train[:, 2] = [0.2, 0.4, 0.6, 0.8]
    mean = decoder_bias_mean(train)
    assert mean.shape == (784,) and mean.dtype == np.float32
    assert mean[0] == np.float32(0.001) and mean[1] == np.float32(0.999)
    assert mean[2] == pytest.approx(0.5)


def test_decoder_bias_mean_accumulates_in_float32_as_the_authors() -> None:
    """Their get_train_mean_np averaged float32 data in float32; a float64 mean differs in the
    last bits (it did in 631 of 784 MNIST pixels), which the oracle's bit-for-bit comparison of
    the initial parameters caught."""
    train = np.random.default_rng(0).random((30_000, 784), dtype=np.float32)
    mean = decoder_bias_mean(train)
    np.testing.assert_array_equal(mean, np.mean(train, axis=0))  # float32 accumulation
    assert (mean != np.mean(train, axis=0, dtype=np.float64).astype(np.float32)).any()


@needs_cuda
def test_dynamic_binarizer_on_cuda() -> None:
    p = gray_batch().cuda()
    b = DynamicBinarizer(0, "cuda")
    state = b.state_dict()
    first, second = b(p), b(p)
    assert first.device == p.device and first.dtype == torch.float32
    assert not torch.equal(first, second)
    assert first[:, :100].sum() == 0 and bool((first[:, 100:150] == 1).all())
    resumed = DynamicBinarizer(1, torch.device("cuda"))
    resumed.load_state_dict({**state, "rng_state": state["rng_state"].cuda()})
    assert torch.equal(resumed(p), first)


def test_a_pixel_equal_to_its_uniform_is_black() -> None:
    """x = 1[u < p]: at a tie u == p the pixel is 0 (the authors' 1[u <= p] would give 1; see
    README Fidelity). Ties are forced by feeding each draw back as the gray values."""
    b = DynamicBinarizer(seed=5, device="cpu")
    saved = b.generator.get_state()
    u = torch.rand((20, 784), generator=b.generator)
    b.generator.set_state(saved)
    assert not b(u).any()
    shape = (3, 784)
    u_once = np.random.default_rng(11).random(shape, dtype=np.float32)
    assert not binarize_once(u_once, seed=11).any()


def test_the_test_binarization_is_float32_uniforms_of_its_seed() -> None:
    """Every evaluation scores this binary set: its draws are float32 uniforms of
    default_rng(seed) (a float64 draw would give another set and shift every NLL)."""
    x = np.linspace(0, 1, 5 * 784, dtype=np.float32).reshape(5, 784)
    u = np.random.default_rng(TEST_BINARIZATION_SEED).random(x.shape, dtype=np.float32)
    assert np.array_equal(binarize_once(x, TEST_BINARIZATION_SEED), (u < x).astype(np.float32))


def test_the_decoder_bias_mean_is_a_float32_mean_whatever_the_input_type() -> None:
    """Their get_train_mean_np averaged float32 data in float32; a float64 mean differs in the
    last bits, which the oracle compares bit for bit."""
    train = np.random.default_rng(3).random((1000, 784), dtype=np.float32)
    in_float32 = decoder_bias_mean(train)
    assert np.array_equal(decoder_bias_mean(train.astype(np.float64)), in_float32)
    assert not np.array_equal(np.clip(train.astype(np.float64).mean(0), 0.001, 0.999)
                              .astype(np.float32), in_float32)  # the two means do differ


def test_a_state_loaded_onto_another_device_is_brought_back() -> None:
    """torch.load(map_location="cuda") moves the generator state too; it is set from .cpu()
    (stand-in for a CUDA tensor: an object whose .cpu() is the state)."""

    class Moved:
        def __init__(self, tensor: torch.Tensor) -> None:
            self.tensor = tensor

        def cpu(self) -> torch.Tensor:
            return self.tensor

    original = DynamicBinarizer(9, "cpu")
    state = original.state_dict()
    resumed = DynamicBinarizer(0, "cpu")
    resumed.load_state_dict(dict(state, rng_state=Moved(state["rng_state"])))
    p = gray_batch()
    assert torch.equal(resumed(p), original(p))


def test_states_and_batches_of_the_wrong_kind_are_refused_by_name() -> None:
    """A checkpoint of the other binarization, or a batch on another device than the
    binarizer's generator, ends in one message naming what was found."""
    with pytest.raises(ValueError, match="^not a dynamic binarizer state: 'fixed'$"):
        DynamicBinarizer(0, "cpu").load_state_dict({"kind": "fixed"})
    with pytest.raises(ValueError, match="^not a fixed binarizer state: 'dynamic'$"):
        FixedBinarizer().load_state_dict({"kind": "dynamic", "seed": 0})
    with pytest.raises(ValueError, match="^binarizer lives on cpu, the batch on meta$"):
        DynamicBinarizer(0, "cpu")(torch.empty(2, 784, device="meta"))


def test_the_draws_are_float32_whatever_torchs_default_dtype() -> None:
    """The minibatches a seed gives must not depend on torch's global default dtype: a
    float64 uniform draw is another stream, and every run would train on other images."""
    p = gray_batch()
    expected = DynamicBinarizer(3, "cpu")(p)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = DynamicBinarizer(3, "cpu")(p)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(got, expected)
