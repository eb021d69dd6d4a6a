"""The real files in ../shared/datasets: checksums, shapes and pixel statistics (skip if absent).

The files are never copied into the project: a temporary data directory links to them, and its
verification records and parse cache live in the temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.data import loaders
from benchmark.data.sources import DEFAULT_CATALOGUE, compute_digests, mismatches
from benchmark.data.splits import DataUnavailable, load_dataset

pytestmark = pytest.mark.realdata

PRESENT = [e for e in DEFAULT_CATALOGUE.files if e.dataset != "omniglot"]


@pytest.fixture(scope="module")
def mnist(real_data_dir: Path):
    return load_dataset("mnist-dynamic", real_data_dir)


@pytest.fixture(scope="module")
def fixed(real_data_dir: Path):
    return load_dataset("mnist-fixed", real_data_dir)


@pytest.mark.parametrize("entry", PRESENT, ids=lambda e: e.name)
def test_every_checksum_verifies(entry, shared_datasets: Path) -> None:
    digests = compute_digests(shared_datasets / entry.relpath)
    assert mismatches(entry, digests) == []
    assert entry.size is not None and entry.sha256 is not None


def test_catalogue_agrees_with_sha256sums(shared_datasets: Path) -> None:
    listed = dict(reversed(line.split()) for line in
                  (shared_datasets / "SHA256SUMS").read_text().splitlines() if line.strip())
    assert listed == {e.relpath: e.sha256 for e in PRESENT}


def test_mnist_dynamic_shapes_and_mean(mnist) -> None:
    assert mnist.shapes() == {"train": (59_600, 784), "valid": (400, 784),
                              "test": (10_000, 784)}
    all_60000 = np.concatenate([mnist.train, mnist.valid]).mean(dtype=np.float64)
    assert all_60000 == pytest.approx(0.130660, abs=5e-7)  # the usual 0.1307
    assert mnist.train.mean(dtype=np.float64) == pytest.approx(0.130656, abs=5e-7)
    assert mnist.test.mean(dtype=np.float64) == pytest.approx(0.132515, abs=5e-7)
    assert mnist.train.min() == 0.0 and mnist.train.max() == 1.0


def test_the_cost_models_split_sizes_are_the_real_ones(mnist, fixed) -> None:
    from benchmark.data import CONDITION_SIZES

    for name, data in (("mnist-dynamic", mnist), ("mnist-fixed", fixed)):
        assert CONDITION_SIZES[name] == (data.train.shape[0], data.test.shape[0])


def test_mnist_fixed_shapes_and_mean(fixed) -> None:
    assert fixed.shapes() == {"train": (50_000, 784), "valid": (10_000, 784),
                              "test": (10_000, 784)}
    assert fixed.train.mean(dtype=np.float64) == pytest.approx(0.130562, abs=5e-7)  # 0.1306
    assert fixed.valid.mean(dtype=np.float64) == pytest.approx(0.131127, abs=5e-7)
    assert fixed.test.mean(dtype=np.float64) == pytest.approx(0.132512, abs=5e-7)


def test_label_files_parse(shared_datasets: Path) -> None:
    train = loaders.parse_mnist_labels(shared_datasets / "mnist/train-labels-idx1-ubyte.gz")
    test = loaders.parse_mnist_labels(shared_datasets / "mnist/t10k-labels-idx1-ubyte.gz")
    assert np.bincount(train["labels"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918,
                                                     6265, 5851, 5949]
    assert np.bincount(test["labels"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                    974, 1009]


def test_second_load_is_from_the_cache(real_data_dir: Path, mnist, fixed,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path):
        raise AssertionError(f"parsed {path} again")

    monkeypatch.setattr(loaders, "parse_mnist_images", boom)
    monkeypatch.setattr(loaders, "parse_amat", boom)
    again = load_dataset("mnist-dynamic", real_data_dir)
    assert np.array_equal(again.train, mnist.train)
    assert load_dataset("mnist-fixed", real_data_dir).source_sha256 == fixed.source_sha256


def test_omniglot_is_reported_unavailable(real_data_dir: Path) -> None:
    with pytest.raises(DataUnavailable, match="python -m benchmark fetch omniglot"):
        load_dataset("omniglot", real_data_dir)
