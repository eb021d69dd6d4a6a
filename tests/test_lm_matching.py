"""The matching of Larochelle-Murray binary images to the MNIST gray images they were drawn
from, the mnist-dynamic-lm50k condition built on it, and the test binarizations that use it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.data import (
    binarized_test_images,
    load_dataset,
    load_lm_pairs,
    parse_test_binarization,
)
from benchmark.data.binarization import TEST_BINARIZATION_SEED, binarize_once
from benchmark.data.lm_matching import MatchingError, assign_one_to_one, check_pairs, match
from benchmark.data.lm_pairs import cache_paths
from benchmark.data.splits import gray_from_bytes
from benchmark.errors import UserError
from tests.synthetic import PIXELS, synthetic_arrays, write_amat


def draw(gray: np.ndarray, seed: int) -> np.ndarray:
    p = gray.reshape(len(gray), PIXELS) / 255.0
    return (np.random.default_rng(seed).random(p.shape) < p).astype(np.uint8)


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), PIXELS)


def test_match_recovers_a_known_permutation() -> None:
    arrays = synthetic_arrays(n_train=150, n_test=40, seed=3)
    gray = flat(arrays.mnist_train)
    truth = np.random.default_rng(1).permutation(len(gray))[:200]
    bits = draw(gray[truth], seed=2)
    np.testing.assert_array_equal(match(bits, gray, "synthetic"), truth)


def test_near_duplicates_get_distinct_images_and_never_an_impossible_one() -> None:
    """Two gray images that differ in one pixel (0 in one, 255 in the other): a draw with a 1
    there can only come from the second; a per-row argmax could give both rows the first."""
    rng = np.random.default_rng(0)
    base = flat(synthetic_arrays(n_train=10, n_test=10, seed=5).mnist_train)[:6].copy()
    twin = base[0].copy()
    blank = int(np.flatnonzero(base[0] == 0)[0])
    twin[blank] = 255
    gray = np.vstack([base, twin[None]])
    bits = draw(gray, seed=4)
    bits[-1, blank] = 1  # always so under the twin's 255
    order = rng.permutation(len(gray))
    chosen = match(bits[order], gray, "twins")
    np.testing.assert_array_equal(chosen, order)
    assert (check_pairs(bits[order], gray[chosen]).impossible == 0).all()


def test_a_likelier_but_impossible_gray_image_is_never_chosen() -> None:
    """Gray A has many mid-gray pixels; gray B is a draw of A made sharp (0/255), except one
    pixel where the draw has a 1 and B has 0. B explains every other pixel better, so it is the
    more likely under the clipped Bernoulli; but it cannot have produced that 1."""
    a = np.zeros(PIXELS, dtype=np.uint8)
    a[100:140] = 128
    bits = draw(a[None], seed=0)[0]
    j = int(np.flatnonzero(bits)[0])
    b = (bits * 255).astype(np.uint8)
    b[j] = 0
    gray = np.stack([a, b])
    assert check_pairs(b[None] // 255, b[None]).impossible[0] == 0
    assert check_pairs(bits[None], b[None]).impossible[0] == 1
    np.testing.assert_array_equal(match(bits[None], gray, "sharp twin"), [0])


def test_one_to_one_assignment_breaks_a_collision_by_total_likelihood() -> None:
    """Rows 0 and 1 both prefer gray 7; row 1 loses less by taking its second choice."""
    index = np.array([[7, 3], [7, 5]])
    score = np.array([[-10.0, -30.0], [-10.0, -11.0]])
    possible = np.ones_like(index, dtype=bool)
    np.testing.assert_array_equal(assign_one_to_one(index, score, possible, 10), [7, 5])


def test_images_of_another_dataset_are_refused_with_one_clear_error() -> None:
    a = synthetic_arrays(n_train=60, n_test=30, seed=0)
    b = synthetic_arrays(n_train=60, n_test=30, seed=1)
    with pytest.raises(MatchingError, match="not Bernoulli draws|cannot each be given"):
        match(draw(b.mnist_test, seed=0), flat(a.mnist_test), "LM test file")


def test_more_binary_than_gray_images_is_refused() -> None:
    gray = flat(synthetic_arrays(n_train=10, n_test=10).mnist_test)
    with pytest.raises(MatchingError, match="only 10 gray images"):
        match(draw(np.vstack([gray, gray]), 0), gray, "LM test file")


def test_lm_pairs_of_the_synthetic_files_are_their_sources(synthetic_data_dir: Path) -> None:
    arrays = synthetic_arrays()
    pairs = load_lm_pairs(synthetic_data_dir, quiet=True)
    np.testing.assert_array_equal(pairs.train, arrays.fixed_train_source)
    np.testing.assert_array_equal(pairs.valid, arrays.fixed_valid_source)
    np.testing.assert_array_equal(pairs.test, arrays.fixed_test_source)
    assert pairs.computed and pairs.cache is not None and pairs.cache.is_file()
    again = load_lm_pairs(synthetic_data_dir, quiet=True)
    assert not again.computed
    np.testing.assert_array_equal(again.train, pairs.train)


def test_a_tampered_cache_is_recomputed_not_trusted(synthetic_data_dir: Path) -> None:
    first = load_lm_pairs(synthetic_data_dir, quiet=True)
    npz, sidecar = first.cache, first.cache.with_suffix(".json")
    swapped = {"train": first.train[::-1].astype(np.int32), "valid": first.valid,
               "test": first.test}
    np.savez_compressed(npz, **swapped)
    meta = json.loads(sidecar.read_text())
    assert meta["sha256"]
    again = load_lm_pairs(synthetic_data_dir, quiet=True)
    assert again.computed  # the checksum no longer matched
    np.testing.assert_array_equal(again.train, first.train)


def test_a_cache_with_a_matching_checksum_but_wrong_pairs_is_refused(
        synthetic_data_dir: Path) -> None:
    """The checksum proves the file is what was written, not that it is right: the pairs are
    verified every time they are read."""
    from benchmark.data.lm_pairs import write_cache
    from benchmark.data.sources import cache_dir, load_catalogue
    from benchmark.data.splits import lm_sources, raw_files_for, require_verified

    entries = raw_files_for("mnist-dynamic-lm50k", load_catalogue(synthetic_data_dir))
    shas = require_verified("mnist-dynamic-lm50k", entries, synthetic_data_dir)
    sources = lm_sources(entries, synthetic_data_dir, shas)
    pairs = load_lm_pairs(synthetic_data_dir, quiet=True)
    wrong = {"train": np.roll(pairs.train, 1), "valid": pairs.valid, "test": pairs.test}
    write_cache(cache_dir(synthetic_data_dir), sources, wrong)
    assert cache_paths(cache_dir(synthetic_data_dir), sources)[0].is_file()
    with pytest.raises(MatchingError, match="LM train file"):
        load_lm_pairs(synthetic_data_dir, quiet=True)


def test_a_foreign_lm_file_stops_the_condition_before_training(synthetic_data_dir: Path
                                                                ) -> None:
    """An LM test file of other images (re-registered in the catalogue, as a user's own files
    would be): loading the condition fails with one line, and nothing is cached as a match."""
    from benchmark.data.sources import load_catalogue, write_catalogue
    from tests.synthetic import synthetic_catalogue

    other = synthetic_arrays(seed=9)
    write_amat(synthetic_data_dir / "raw/binarized_mnist/binarized_mnist_test.amat",
               draw(other.mnist_test, 0))
    write_catalogue(synthetic_data_dir, synthetic_catalogue(synthetic_data_dir / "raw"))
    assert load_catalogue(synthetic_data_dir).origin
    with pytest.raises(UserError, match="LM test file"):
        load_dataset("mnist-dynamic-lm50k", synthetic_data_dir)
    assert not list((synthetic_data_dir / "cache").glob("lm-matching.*"))


def test_the_lm50k_condition_holds_the_gray_images_behind_the_lm_train_file(
        synthetic_data_dir: Path) -> None:
    arrays = synthetic_arrays()
    ds = load_dataset("mnist-dynamic-lm50k", synthetic_data_dir)
    assert ds.dynamic
    np.testing.assert_array_equal(
        ds.train, gray_from_bytes(flat(arrays.mnist_train)[arrays.fixed_train_source]))
    np.testing.assert_array_equal(
        ds.valid, gray_from_bytes(flat(arrays.mnist_train)[arrays.fixed_valid_source]))
    np.testing.assert_array_equal(ds.test, gray_from_bytes(flat(arrays.mnist_test)))
    fixed = load_dataset("mnist-fixed", synthetic_data_dir)
    assert fixed.train.shape == ds.train.shape


def test_lm50k_and_fixed_minibatches_read_the_same_images_in_the_same_order(
        synthetic_data_dir: Path) -> None:
    """Same seed, same schedule: the fixed run reads LM's draw of image i where the lm50k run
    reads a fresh draw of the gray image i came from (the hand-built reference)."""
    import torch

    from benchmark.config import RunConfig
    from benchmark.training.group import member_generators
    from benchmark.training.minibatches import MinibatchSource
    from benchmark.training.schedule import make_plan

    arrays = synthetic_arrays()
    for fidelity in ("code", "paper"):
        fixed_config = RunConfig(data="mnist-fixed", model="vae", k=1, layers=1, seed=4,
                                 fidelity=fidelity, schedule="quick")
        dynamic_config = RunConfig(data="mnist-dynamic-lm50k", model="vae", k=1, layers=1,
                                   seed=4, fidelity=fidelity, schedule="quick")
        fixed_ds = load_dataset("mnist-fixed", synthetic_data_dir)
        dyn_ds = load_dataset("mnist-dynamic-lm50k", synthetic_data_dir)
        plan = make_plan(fixed_config, fixed_ds.train.shape[0])
        cpu = torch.device("cpu")
        fixed_src = MinibatchSource(fixed_ds.train, fixed_config, plan, cpu)
        dyn_src = MinibatchSource(dyn_ds.train, dynamic_config, plan, cpu)
        _, binarizer = member_generators(dynamic_config, True, cpu)
        reference = torch.Generator().manual_seed(binarizer.seed)
        gray = gray_from_bytes(flat(arrays.mnist_train)[arrays.fixed_train_source])
        for step in (0, 3, plan.steps_per_epoch + 1):
            rows = fixed_src.indices(step)
            np.testing.assert_array_equal(rows, dyn_src.indices(step))
            np.testing.assert_array_equal(fixed_src.batch(step).numpy(),
                                          arrays.fixed_train[rows])
            expected_p = torch.from_numpy(gray[rows])
            np.testing.assert_array_equal(dyn_src.batch(step).numpy(), gray[rows])
            u = torch.rand(expected_p.shape, generator=reference)
            np.testing.assert_array_equal(binarizer(dyn_src.batch(step)).numpy(),
                                          (u < expected_p).float().numpy())


def test_test_binarizations_are_in_mnist_order(synthetic_data_dir: Path) -> None:
    arrays = synthetic_arrays()
    (lm,) = binarized_test_images(parse_test_binarization("lm"), synthetic_data_dir)
    expected = np.empty_like(arrays.fixed_test)
    expected[arrays.fixed_test_source] = arrays.fixed_test
    np.testing.assert_array_equal(lm, expected)
    (dynamic,) = binarized_test_images(parse_test_binarization("dynamic"), synthetic_data_dir)
    gray = gray_from_bytes(flat(arrays.mnist_test))
    np.testing.assert_array_equal(dynamic, binarize_once(gray, TEST_BINARIZATION_SEED))
    resampled = binarized_test_images(parse_test_binarization("resampled:3"), synthetic_data_dir)
    assert len(resampled) == 3
    assert not np.array_equal(resampled[0], resampled[1])
    # every draw is a draw of the same gray images: no 1 where the gray value is 0
    assert not ((resampled[2] == 1) & (gray == 0)).any()


@pytest.mark.parametrize("text", ["lm:2", "resampled", "resampled:0", "resampled:x", "LM", ""])
def test_unknown_test_binarizations_are_refused(text: str) -> None:
    with pytest.raises(UserError, match="choose lm"):
        parse_test_binarization(text)


@pytest.mark.realdata
@pytest.mark.slow
def test_the_real_lm_files_match_mnist_one_to_one(real_data_dir: Path) -> None:
    """The facts the decomposition rests on: LM's test file is the MNIST test set in stable
    label order, and LM's train and valid files a permutation of MNIST's 60,000 training images,
    every pair a plausible Bernoulli(gray) draw (about a minute)."""
    import gzip

    pairs = load_lm_pairs(real_data_dir, quiet=True)
    labels = np.frombuffer(gzip.decompress(
        (Path(real_data_dir) / "raw/mnist/t10k-labels-idx1-ubyte.gz").read_bytes())[8:],
        dtype=np.uint8)
    np.testing.assert_array_equal(pairs.test, np.argsort(labels, kind="stable"))
    both = np.concatenate([pairs.train, pairs.valid])
    assert sorted(both.tolist()) == list(range(60_000))


def test_the_match_command_reports_a_verified_one_to_one_matching(
        synthetic_data_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from benchmark.cli import main

    assert main(["match", "--data-dir", str(synthetic_data_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"]["images"] == summary["train"]["distinct_mnist_images"] == 100
    assert summary["test"]["impossible_pixels"] == 0
    assert summary["computed_now"] and Path(summary["cache"]).is_file()
    assert not summary["train_and_valid_cover_mnist_train"]  # 150 of the synthetic 500
