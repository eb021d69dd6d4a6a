"""The three data conditions, split exactly as the IWAE authors' code split them.

- mnist-dynamic: LeCun MNIST, pixel/255 as float32. Train = the first 59,600 training images in
  file order, valid = the last 400 (never used for anything), test = the 10,000 test images.
- mnist-fixed: Larochelle & Murray's binarized MNIST, values {0, 1}. Train = the train file
  (50,000), valid = the valid file (10,000), test = the test file (10,000). (The authors
  concatenated train and valid and split the last 10,000 off again: the same thing.)
- mnist-dynamic-lm50k: the 50,000 MNIST gray images behind the LM train file, in that file's
  order (benchmark.data.lm_pairs), binarized afresh for every minibatch; valid = the 10,000
  behind the LM valid file, test = the 10,000 MNIST test images. It differs from mnist-fixed
  only in the resampling, and from mnist-dynamic only in which training images it holds.
- omniglot: chardata.mat, gray values in [0, 1]. The 24,345 training images are shuffled once
  with np.random.RandomState(123).permutation; train = the first 23,000, valid = the last 1,345;
  test = the 8,070 test images.

load_dataset never downloads: it raises DataUnavailable, which says what to fetch.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import numpy as np

from benchmark.config import DATA_CONDITIONS
from benchmark.data import loaders
from benchmark.data.lm_matching import MatchingError
from benchmark.data.lm_pairs import LMPairs, LMSources, lm_pairs
from benchmark.data.sources import (
    DEFAULT_CATALOGUE,
    Catalogue,
    RawFile,
    cache_dir,
    load_catalogue,
    raw_dir,
    verify_file,
)
from benchmark.errors import UserError

MNIST_VALID = 400
OMNIGLOT_VALID = 1345
OMNIGLOT_SHUFFLE_SEED = 123
# (train, test) examples of each condition once split: what a cost projection needs without
# loading the files (tests/test_data_real.py checks them against the real MNIST files)
CONDITION_SIZES = MappingProxyType({"mnist-dynamic": (59_600, 10_000),
                                    "mnist-fixed": (50_000, 10_000),
                                    "mnist-dynamic-lm50k": (50_000, 10_000),
                                    "omniglot": (23_000, 8_070)})

# Which datasets (fetch names, space separated) and which of their files each condition reads.
CONDITION_DATASET = MappingProxyType({"mnist-dynamic": "mnist", "mnist-fixed": "binarized-mnist",
                                      "mnist-dynamic-lm50k": "mnist binarized-mnist",
                                      "omniglot": "omniglot"})
MNIST_FILES = ("mnist/train-images-idx3-ubyte.gz", "mnist/t10k-images-idx3-ubyte.gz")
LM_FILES = ("binarized_mnist/binarized_mnist_train.amat",
            "binarized_mnist/binarized_mnist_valid.amat",
            "binarized_mnist/binarized_mnist_test.amat")
CONDITION_FILES = MappingProxyType({
    "mnist-dynamic": MNIST_FILES,
    "mnist-fixed": LM_FILES,
    "mnist-dynamic-lm50k": MNIST_FILES + LM_FILES,
    "omniglot": ("omniglot/chardata.mat",),
})


@dataclass
class Dataset:
    """Float32 (N, 784) splits: gray values in [0, 1] when dynamic, else {0, 1}."""

    name: str
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    dynamic: bool
    source_sha256: dict[str, str] = field(default_factory=dict)  # raw relpath -> sha256
    catalogue: str = "built-in"  # what the files were verified against (Catalogue.origin)

    def split(self, name: str) -> np.ndarray:
        if name not in ("train", "valid", "test"):
            raise UserError(f"unknown split {name!r}; choose train, valid or test")
        return getattr(self, name)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {s: tuple(self.split(s).shape) for s in ("train", "valid", "test")}


class DataUnavailable(UserError):
    """The raw files a condition needs are missing or fail their checks."""


def check_condition(name: str) -> None:
    if name not in DATA_CONDITIONS:
        raise UserError(f"unknown data condition {name!r}; choose one of "
                        f"{', '.join(DATA_CONDITIONS)}")


def raw_files_for(name: str, catalogue: Catalogue = DEFAULT_CATALOGUE) -> list[RawFile]:
    """The catalogue entries whose files load_dataset(name) reads."""
    check_condition(name)
    return [catalogue.entry(relpath) for relpath in CONDITION_FILES[name]]


def fetch_hint(dataset: str, data_dir: Path) -> str:
    return f"python -m benchmark fetch {dataset} --data-dir {shlex.quote(str(data_dir))}"


def require_verified(name: str, entries: list[RawFile], data_dir: Path) -> dict[str, str]:
    """sha256 of each file, or DataUnavailable naming every file that is missing or wrong."""
    checks = {e.relpath: verify_file(e, data_dir) for e in entries}
    bad = {rel: v for rel, v in checks.items() if not v.ok}
    if bad:
        folders = sorted({str(raw_dir(data_dir).resolve() / Path(rel).parent)
                          for rel in bad})
        listing = "; ".join(f"{Path(rel).name} ({v.summary()})" for rel, v in bad.items())
        dataset = CONDITION_DATASET[name]
        raise DataUnavailable(
            f"data condition {name} needs files that are missing or unverified in "
            f"{', '.join(folders)}: {listing}. Run: {fetch_hint(dataset, data_dir)} "
            "(or place the files there by hand and run that command to verify them)")
    return {rel: v.sha256 for rel, v in checks.items() if v.sha256}


def _parse(entry: RawFile, data_dir: Path, sha256: str, parse: Callable[[Path], loaders.Parsed],
           keys: tuple[str, ...]) -> loaders.Parsed:
    try:
        return loaders.load_cached(entry.local_path(data_dir), sha256, cache_dir(data_dir),
                                   parse, keys)
    except loaders.MalformedFile as err:
        raise err.with_remedy(f"delete it and run: {fetch_hint(entry.dataset, data_dir)}") \
            from err


def gray_from_bytes(images: np.ndarray) -> np.ndarray:
    """uint8 -> float32 pixel/255.

    The authors divided in float64 and cast to float32; dividing in float32 gives the same
    numbers (a float64 quotient rounded to float32 is correctly rounded, as 53 >= 2 * 24 + 2)
    and is several times faster on the 47 million pixels of the training file.
    """
    gray = images.astype(np.float32)
    gray /= np.float32(255.0)
    return gray


def _needs_more_than(path: Path, n: int, held_out: int) -> None:
    if n <= held_out:
        raise loaders.MalformedFile(path, f"{n} training images; the split holds out the last "
                                          f"{held_out}, so it needs more")


def load_mnist_dynamic(entries: list[RawFile], data_dir: Path,
                       shas: dict[str, str]) -> tuple[np.ndarray, ...]:
    train_entry, test_entry = entries
    train_all = _parse(train_entry, data_dir, shas[train_entry.relpath],
                       loaders.parse_mnist_images, ("images",))["images"]
    test = _parse(test_entry, data_dir, shas[test_entry.relpath],
                  loaders.parse_mnist_images, ("images",))["images"]
    _needs_more_than(train_entry.local_path(data_dir), len(train_all), MNIST_VALID)
    gray = gray_from_bytes(train_all)  # file order, no shuffle: the authors' split
    return gray[:-MNIST_VALID], gray[-MNIST_VALID:], gray_from_bytes(test)


def load_mnist_fixed(entries: list[RawFile], data_dir: Path,
                     shas: dict[str, str]) -> tuple[np.ndarray, ...]:
    return tuple(_parse(e, data_dir, shas[e.relpath], loaders.parse_amat, ("bits",))["bits"]
                 .astype(np.float32) for e in entries)


def lm_sources(entries: list[RawFile], data_dir: Path, shas: dict[str, str]) -> LMSources:
    """The MNIST images and LM bits a matching is computed from (entries: MNIST_FILES then
    LM_FILES)."""
    mnist_train, mnist_test, *lm = entries
    images = [_parse(e, data_dir, shas[e.relpath], loaders.parse_mnist_images, ("images",))
              ["images"] for e in (mnist_train, mnist_test)]
    bits = {part: _parse(e, data_dir, shas[e.relpath], loaders.parse_amat, ("bits",))["bits"]
            for part, e in zip(("train", "valid", "test"), lm, strict=True)}
    return LMSources(mnist_train=images[0], mnist_test=images[1], lm=bits,
                     sha256={e.relpath: shas[e.relpath] for e in entries})


def verified_lm_pairs(sources: LMSources, data_dir: Path, quiet: bool = False) -> LMPairs:
    """lm_pairs, with what to do when the files are not LM's draws of these MNIST images."""
    try:
        return lm_pairs(sources, cache_dir(data_dir), quiet=quiet)
    except MatchingError as err:
        raise MatchingError(
            f"{err}. The files in {raw_dir(data_dir).resolve()} must be the canonical MNIST and "
            f"binarized-MNIST files: run {fetch_hint('mnist binarized-mnist', data_dir)} "
            "(nothing was trained on them)") from err


def load_lm_pairs(data_dir: Path, quiet: bool = False) -> LMPairs:
    """The verified matching of the LM files to MNIST (cached under <data_dir>/cache)."""
    data_dir = Path(data_dir)
    entries = raw_files_for("mnist-dynamic-lm50k", load_catalogue(data_dir))
    shas = require_verified("mnist-dynamic-lm50k", entries, data_dir)
    return verified_lm_pairs(lm_sources(entries, data_dir, shas), data_dir, quiet)


def load_mnist_test_gray(data_dir: Path) -> np.ndarray:
    """The 10,000 MNIST test images as float32 gray values, in the file's order."""
    data_dir = Path(data_dir)
    entry = raw_files_for("mnist-dynamic", load_catalogue(data_dir))[1]
    shas = require_verified("mnist-dynamic", [entry], data_dir)
    return gray_from_bytes(_parse(entry, data_dir, shas[entry.relpath],
                                  loaders.parse_mnist_images, ("images",))["images"])


def load_lm_test_bits(data_dir: Path) -> np.ndarray:
    """The Larochelle-Murray test file's bits, uint8 (10000, 784), in the file's order."""
    data_dir = Path(data_dir)
    entry = raw_files_for("mnist-fixed", load_catalogue(data_dir))[2]
    shas = require_verified("mnist-fixed", [entry], data_dir)
    return _parse(entry, data_dir, shas[entry.relpath], loaders.parse_amat, ("bits",))["bits"]


def load_mnist_dynamic_lm50k(entries: list[RawFile], data_dir: Path,
                             shas: dict[str, str]) -> tuple[np.ndarray, ...]:
    sources = lm_sources(entries, data_dir, shas)
    pairs = verified_lm_pairs(sources, data_dir)
    return (gray_from_bytes(sources.mnist_train[pairs.train]),
            gray_from_bytes(sources.mnist_train[pairs.valid]),
            gray_from_bytes(sources.mnist_test))


def load_omniglot(entries: list[RawFile], data_dir: Path,
                  shas: dict[str, str]) -> tuple[np.ndarray, ...]:
    (entry,) = entries
    parsed = _parse(entry, data_dir, shas[entry.relpath], loaders.parse_chardata,
                    ("train", "test"))
    train_all = parsed["train"]
    _needs_more_than(entry.local_path(data_dir), len(train_all), OMNIGLOT_VALID)
    order = np.random.RandomState(OMNIGLOT_SHUFFLE_SEED).permutation(len(train_all))
    shuffled = train_all[order]  # parse_chardata gives float32; fancy indexing copies
    return shuffled[:-OMNIGLOT_VALID], shuffled[-OMNIGLOT_VALID:], np.array(parsed["test"])


LOADERS = MappingProxyType({"mnist-dynamic": load_mnist_dynamic,
                            "mnist-fixed": load_mnist_fixed,
                            "mnist-dynamic-lm50k": load_mnist_dynamic_lm50k,
                            "omniglot": load_omniglot})


def load_dataset(name: str, data_dir: Path) -> Dataset:
    """The splits of one data condition from verified raw files under <data_dir>/raw."""
    check_condition(name)
    data_dir = Path(data_dir)
    catalogue = load_catalogue(data_dir)
    entries = raw_files_for(name, catalogue)
    shas = require_verified(name, entries, data_dir)
    train, valid, test = LOADERS[name](entries, data_dir, shas)
    return Dataset(name=name, train=train, valid=valid, test=test,
                   dynamic=name != "mnist-fixed", source_sha256=shas, catalogue=catalogue.origin)
