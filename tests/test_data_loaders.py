"""Loaders and splits on synthetic files in the real formats."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from synthetic import (
    amat_bytes,
    idx_bytes,
    matlab_columns,
    synthetic_arrays,
    synthetic_catalogue,
    write_amat,
    write_chardata,
    write_idx_gz,
)

from benchmark.data import loaders, splits
from benchmark.data.info import collect_info, info_command
from benchmark.data.sources import DEFAULT_CATALOGUE, compute_digests, write_catalogue
from benchmark.data.splits import (
    DATA_CONDITIONS,
    MNIST_VALID,
    OMNIGLOT_VALID,
    DataUnavailable,
    load_dataset,
    raw_files_for,
)
from benchmark.errors import UserError

N_TRAIN, N_TEST = 100, 50  # what the synthetic_data_dir fixture holds


@pytest.fixture(scope="module")
def arrays():
    return synthetic_arrays(N_TRAIN, N_TEST)


# --- splits as the authors made them ---------------------------------------------------------

def test_mnist_dynamic_is_gray_in_file_order(synthetic_data_dir: Path, arrays) -> None:
    ds = load_dataset("mnist-dynamic", synthetic_data_dir)
    gray = (arrays.mnist_train.reshape(-1, 784) / 255.0).astype(np.float32)
    assert ds.dynamic and ds.name == "mnist-dynamic"
    assert ds.shapes() == {"train": (N_TRAIN, 784), "valid": (MNIST_VALID, 784),
                           "test": (N_TEST, 784)}
    assert all(a.dtype == np.float32 for a in (ds.train, ds.valid, ds.test))
    np.testing.assert_array_equal(ds.train, gray[:N_TRAIN])  # the first rows, no shuffle
    np.testing.assert_array_equal(ds.valid, gray[-MNIST_VALID:])
    np.testing.assert_array_equal(ds.test, (arrays.mnist_test.reshape(-1, 784) / 255.0)
                                  .astype(np.float32))
    assert 0.0 <= ds.train.min() and ds.train.max() <= 1.0


def test_mnist_fixed_is_binary_and_keeps_the_files_apart(synthetic_data_dir: Path,
                                                         arrays) -> None:
    ds = load_dataset("mnist-fixed", synthetic_data_dir)
    assert not ds.dynamic
    np.testing.assert_array_equal(ds.train, arrays.fixed_train)
    np.testing.assert_array_equal(ds.valid, arrays.fixed_valid)
    np.testing.assert_array_equal(ds.test, arrays.fixed_test)
    assert ds.train.dtype == np.float32
    assert set(np.unique(np.concatenate([ds.train, ds.valid, ds.test]))) == {0.0, 1.0}


def test_omniglot_shuffled_with_seed_123_and_upright(synthetic_data_dir: Path, arrays) -> None:
    ds = load_dataset("omniglot", synthetic_data_dir)
    upright = arrays.omniglot_train.reshape(-1, 784).astype(np.float32)
    order = np.random.RandomState(123).permutation(len(upright))
    assert ds.dynamic
    assert ds.shapes() == {"train": (N_TRAIN, 784), "valid": (OMNIGLOT_VALID, 784),
                           "test": (N_TEST, 784)}
    np.testing.assert_array_equal(ds.train, upright[order][:N_TRAIN])
    np.testing.assert_array_equal(ds.valid, upright[order][-OMNIGLOT_VALID:])
    np.testing.assert_array_equal(ds.test, arrays.omniglot_test.reshape(-1, 784)
                                  .astype(np.float32))
    assert not np.array_equal(ds.train, upright[:N_TRAIN])  # the shuffle did happen
    # chardata.mat holds float64; the model and the evaluation take float32 splits
    assert {ds.split(s).dtype for s in ("train", "valid", "test")} == {np.dtype(np.float32)}


def test_omniglot_layout_is_the_authors_fortran_reshape(tmp_path: Path) -> None:
    images = np.zeros((3, 28, 28))
    images[0, 2, 9] = 1.0  # an asymmetric mark: row 2, column 9
    images[1, 27, 0] = 0.5
    images[2] = np.linspace(0, 1, 784).reshape(28, 28)
    path = write_chardata(tmp_path / "chardata.mat", images, images[:1])
    parsed = loaders.parse_chardata(path)
    assert parsed["train"][0].argmax() == 2 * 28 + 9  # upright, row-major
    assert parsed["train"][1, 27 * 28 + 0] == 0.5
    np.testing.assert_array_equal(parsed["train"], images.reshape(3, 784).astype(np.float32))
    raw = scipy.io.loadmat(str(path))["data"]
    authors = raw.T.astype("float32").reshape((-1, 28, 28)).reshape((-1, 784), order="F")
    np.testing.assert_array_equal(parsed["train"], authors)
    assert raw.T[0].argmax() == 9 * 28 + 2  # a plain C-order reading would be transposed


def test_sources_are_recorded_by_sha256(synthetic_data_dir: Path) -> None:
    ds = load_dataset("mnist-fixed", synthetic_data_dir)
    assert set(ds.source_sha256) == set(splits.CONDITION_FILES["mnist-fixed"])
    for rel, sha in ds.source_sha256.items():
        assert compute_digests(synthetic_data_dir / "raw" / rel).values["sha256"] == sha


def test_raw_files_for_each_condition() -> None:
    assert [e.name for e in raw_files_for("mnist-dynamic")] == [
        "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"]
    assert [e.dataset for e in raw_files_for("mnist-fixed")] == ["binarized-mnist"] * 3
    assert raw_files_for("omniglot") == [DEFAULT_CATALOGUE.entry("omniglot/chardata.mat")]
    with pytest.raises(UserError, match="unknown data condition"):
        raw_files_for("cifar")


# --- missing and unverified files ------------------------------------------------------------

def test_missing_files_say_what_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailable) as err:
        load_dataset("mnist-fixed", tmp_path / "empty")
    message = str(err.value)
    folder = (tmp_path / "empty" / "raw" / "binarized_mnist").resolve()
    missing = "; ".join(f"binarized_mnist_{s}.amat (missing)" for s in ("train", "valid", "test"))
    # The whole line: every missing file, the folder, the command and what else to do.
    assert message == (
        f"data condition mnist-fixed needs files that are missing or unverified in {folder}: "
        f"{missing}. Run: python -m benchmark fetch binarized-mnist --data-dir "
        f"{tmp_path / 'empty'} (or place the files there by hand and run that command to "
        "verify them)")
    assert isinstance(err.value, UserError)


def test_unknown_split_and_condition_list_the_choices(synthetic_data_dir: Path) -> None:
    ds = load_dataset("mnist-fixed", synthetic_data_dir)
    with pytest.raises(UserError, match="unknown split 'dev'; choose train, valid or test"):
        ds.split("dev")
    with pytest.raises(UserError, match="choose one of mnist-dynamic, mnist-fixed, "
                                        "mnist-dynamic-lm50k, omniglot"):
        load_dataset("mnist", synthetic_data_dir)


def test_dataset_records_the_catalogue_it_was_verified_against(synthetic_data_dir: Path) -> None:
    from benchmark.data.sources import load_catalogue

    origin = load_catalogue(synthetic_data_dir).origin
    assert origin != "built-in"  # the synthetic files carry their own catalogue
    assert load_dataset("omniglot", synthetic_data_dir).catalogue == origin
    assert load_dataset("mnist-dynamic", synthetic_data_dir).catalogue == origin


def test_changed_file_is_not_trusted(synthetic_data_dir: Path) -> None:
    path = synthetic_data_dir / "raw/mnist/t10k-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(DataUnavailable, match=r"t10k-images-idx3-ubyte.gz \(fails its check"):
        load_dataset("mnist-dynamic", synthetic_data_dir)


def test_unverified_files_are_hashed_once_then_trusted(synthetic_data_dir: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for record in (synthetic_data_dir / "raw").rglob("*.verified.json"):
        record.unlink()
    load_dataset("mnist-fixed", synthetic_data_dir)  # hashes, then records
    assert len(list((synthetic_data_dir / "raw").rglob("*.amat.verified.json"))) == 3

    def no_hashing(*args, **kwargs):
        raise AssertionError("re-hashed a file whose record is valid")

    monkeypatch.setattr("benchmark.data.sources.compute_digests", no_hashing)
    load_dataset("mnist-fixed", synthetic_data_dir)


# --- the parse cache -------------------------------------------------------------------------

def _fail_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: Path):
        raise AssertionError(f"parsed {path} again instead of using the cache")

    for name in ("parse_mnist_images", "parse_amat", "parse_chardata"):
        monkeypatch.setattr(loaders, name, boom)


@pytest.mark.parametrize("condition", DATA_CONDITIONS)
def test_second_load_uses_the_cache(condition: str, synthetic_data_dir: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(condition, synthetic_data_dir)
    assert list((synthetic_data_dir / "cache").glob("*.npy"))
    _fail_parsing(monkeypatch)
    second = load_dataset(condition, synthetic_data_dir)
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(first.split(split), second.split(split))
        assert second.split(split).dtype == np.float32
        assert type(second.split(split)) is np.ndarray


def test_cache_is_keyed_by_content(synthetic_data_dir: Path, tmp_path: Path) -> None:
    load_dataset("mnist-fixed", synthetic_data_dir)
    new = synthetic_arrays(N_TRAIN, N_TEST, seed=7)
    write_amat(synthetic_data_dir / "raw/binarized_mnist/binarized_mnist_test.amat",
               new.fixed_test)
    write_catalogue(synthetic_data_dir, synthetic_catalogue(synthetic_data_dir / "raw"))
    ds = load_dataset("mnist-fixed", synthetic_data_dir)
    np.testing.assert_array_equal(ds.test, new.fixed_test)


def test_corrupt_cache_entry_is_parsed_again(synthetic_data_dir: Path, arrays) -> None:
    load_dataset("mnist-fixed", synthetic_data_dir)
    for cached in (synthetic_data_dir / "cache").glob("*.npy"):
        cached.write_bytes(b"not an npy file")
    ds = load_dataset("mnist-fixed", synthetic_data_dir)
    np.testing.assert_array_equal(ds.train, arrays.fixed_train)


# --- malformed files -------------------------------------------------------------------------

def _images(n: int = 3, side: int = 28) -> np.ndarray:
    return np.arange(n * side * side, dtype=np.uint64).reshape(n, side, side).astype(np.uint8)


def _malformed_idx(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "train-images-idx3-ubyte.gz"
    if kind == "labels magic":
        return write_idx_gz(path, np.arange(5, dtype=np.uint8), 2049)
    if kind == "27x27":
        return write_idx_gz(path, _images(side=27), 2051)
    if kind == "short data":
        path.write_bytes(gzip.compress(idx_bytes(_images(), 2051)[:-10]))
    elif kind == "truncated gzip":
        path.write_bytes(gzip.compress(idx_bytes(_images(), 2051))[:-20])
    elif kind == "not gzip":
        path.write_bytes(idx_bytes(_images(), 2051))
    return path


@pytest.mark.parametrize("kind", ["labels magic", "27x27", "short data", "truncated gzip",
                                  "not gzip"])
def test_malformed_idx(kind: str, tmp_path: Path) -> None:
    path = _malformed_idx(tmp_path, kind)
    with pytest.raises(UserError, match="train-images-idx3-ubyte.gz is malformed") as err:
        loaders.parse_mnist_images(path)
    assert "delete it" in str(err.value)


def test_idx_labels_parse(tmp_path: Path) -> None:
    labels = np.array([0, 9, 3], dtype=np.uint8)
    path = write_idx_gz(tmp_path / "labels.gz", labels, 2049)
    np.testing.assert_array_equal(loaders.parse_mnist_labels(path)["labels"], labels)
    with pytest.raises(UserError, match="IDX magic number 2049, expected 2051"):
        loaders.parse_mnist_images(path)


def _malformed_amat(tmp_path: Path, kind: str) -> Path:
    bits = np.random.default_rng(0).integers(0, 2, (4, 784), dtype=np.uint8)
    text = bytearray(amat_bytes(bits))
    if kind == "value 2":
        text[1568 * 2 + 40] = ord("2")
    elif kind == "tab separator":
        text[1568 + 1] = ord("\t")
    elif kind == "783 values":
        text = bytearray(amat_bytes(bits)[:-2]) + b"\n"
    elif kind == "crlf":
        text = bytearray(text.replace(b"\n", b"\r\n"))
    elif kind == "empty":
        text = bytearray()
    path = tmp_path / "binarized_mnist_train.amat"
    path.write_bytes(bytes(text))
    return path


@pytest.mark.parametrize("kind", ["value 2", "tab separator", "783 values", "crlf", "empty"])
def test_malformed_amat(kind: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="binarized_mnist_train.amat is malformed"):
        loaders.parse_amat(_malformed_amat(tmp_path, kind))


def test_amat_parse_is_exact(tmp_path: Path) -> None:
    bits = np.random.default_rng(1).integers(0, 2, (7, 784), dtype=np.uint8)
    path = write_amat(tmp_path / "x.amat", bits)
    reference = np.array([[int(v) for v in line.split()]
                          for line in path.read_text().splitlines()])  # the authors' parse
    np.testing.assert_array_equal(loaders.parse_amat(path)["bits"], reference)


def _malformed_mat(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "chardata.mat"
    good = matlab_columns(np.zeros((2, 28, 28)))
    contents = {"data": good, "testdata": good}
    if kind == "no testdata":
        del contents["testdata"]
    elif kind == "783 rows":
        contents["data"] = good[:-1]
    elif kind == "values above 1":
        contents["data"] = good + 2.0
    elif kind == "not a mat file":
        path.write_bytes(os.urandom(2000))
        return path
    elif kind == "truncated":
        write_chardata(path, np.ones((20, 28, 28)) * 0.5, np.zeros((2, 28, 28)))
        path.write_bytes(path.read_bytes()[:300])
        return path
    scipy.io.savemat(str(path), contents)
    return path


@pytest.mark.parametrize("kind", ["no testdata", "783 rows", "values above 1", "not a mat file",
                                  "truncated"])
def test_malformed_chardata(kind: str, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="chardata.mat is malformed"):
        loaders.parse_chardata(_malformed_mat(tmp_path, kind))


def test_malformed_file_through_load_dataset_names_the_fix(synthetic_data_dir: Path) -> None:
    # A file that matches its catalogue but cannot be parsed (possible with a custom catalogue).
    path = synthetic_data_dir / "raw/binarized_mnist/binarized_mnist_valid.amat"
    path.write_bytes(path.read_bytes().replace(b"1", b"7", 1))
    write_catalogue(synthetic_data_dir, synthetic_catalogue(synthetic_data_dir / "raw"))
    with pytest.raises(UserError) as err:
        load_dataset("mnist-fixed", synthetic_data_dir)
    message = str(err.value)
    assert str(path) in message and "value other than 0 or 1" in message
    assert f"delete it and run: python -m benchmark fetch binarized-mnist --data-dir " \
           f"{synthetic_data_dir}" in message


def test_too_few_training_images(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    raw = data_dir / "raw"
    write_idx_gz(raw / "mnist/train-images-idx3-ubyte.gz", _images(MNIST_VALID), 2051)
    write_idx_gz(raw / "mnist/t10k-images-idx3-ubyte.gz", _images(2), 2051)
    for rel in ("mnist/train-labels-idx1-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"):
        write_idx_gz(raw / rel, np.zeros(2, np.uint8), 2049)
    for rel in ("binarized_mnist/binarized_mnist_train.amat",
                "binarized_mnist/binarized_mnist_valid.amat",
                "binarized_mnist/binarized_mnist_test.amat"):
        write_amat(raw / rel, np.zeros((1, 784), np.uint8))
    write_chardata(raw / "omniglot/chardata.mat", np.zeros((2, 28, 28)), np.zeros((1, 28, 28)))
    write_catalogue(data_dir, synthetic_catalogue(raw))
    with pytest.raises(UserError, match="needs more") as err:
        load_dataset("mnist-dynamic", data_dir)
    assert str(raw / "mnist/train-images-idx3-ubyte.gz") in str(err.value)
    with pytest.raises(UserError, match="needs more") as err:
        load_dataset("omniglot", data_dir)
    assert str(raw / "omniglot/chardata.mat") in str(err.value)


# --- info ------------------------------------------------------------------------------------

def test_info_reports_files_and_splits(synthetic_data_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert info_command(synthetic_data_dir, as_json=True) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["catalogue"].endswith("catalogue.json")
    assert all(d["complete"] for d in info["datasets"].values())
    assert info["conditions"]["omniglot"]["splits"] == {
        "train": [N_TRAIN, 784], "valid": [OMNIGLOT_VALID, 784], "test": [N_TEST, 784]}
    assert info["conditions"]["mnist-fixed"]["dynamic"] is False
    assert info_command(synthetic_data_dir, as_json=False) == 0
    text = capsys.readouterr().out
    assert "mnist-dynamic        train (100, 784)  valid (400, 784)  test (50, 784)" in text
    # the condition on the 50,000 images behind the fixed file: here the synthetic 100 and 50
    assert info["conditions"]["mnist-dynamic-lm50k"]["splits"] == {
        "train": [N_TRAIN, 784], "valid": [50, 784], "test": [N_TEST, 784]}
    assert "mnist-dynamic-lm50k  train (100, 784)  valid (50, 784)  test (50, 784)" in text


def test_info_on_an_empty_data_dir(tmp_path: Path) -> None:
    info = collect_info(tmp_path)
    assert info["catalogue"] == "built-in"
    files = info["datasets"]["omniglot"]["files"]
    assert files == [{"path": "omniglot/chardata.mat", "status": "missing"}]
    condition = info["conditions"]["mnist-dynamic"]
    assert not condition["available"]
    assert "python -m benchmark fetch mnist" in condition["reason"]


def test_info_reports_a_failed_file_and_a_partial_download(synthetic_data_dir: Path) -> None:
    path = synthetic_data_dir / "raw/omniglot/chardata.mat"
    path.write_bytes(path.read_bytes()[:-1])
    (synthetic_data_dir / "raw/mnist/t10k-images-idx3-ubyte.gz.part").write_bytes(b"x" * 10)
    info = collect_info(synthetic_data_dir)
    (omni,) = info["datasets"]["omniglot"]["files"]
    assert omni["status"] == "failed" and any("md5" in p for p in omni["problems"])
    mnist = {f["path"]: f for f in info["datasets"]["mnist"]["files"]}
    assert mnist["mnist/t10k-images-idx3-ubyte.gz"]["partial_bytes"] == 10
    assert not info["conditions"]["omniglot"]["available"]


def test_gray_values_are_the_authors_float64_quotients() -> None:
    every_byte = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(splits.gray_from_bytes(every_byte),
                                  (every_byte / 255.0).astype("float32"))
