"""Where each raw dataset file comes from and how to tell it is the right one.

The catalogue lists, per dataset, every file with its canonical URL, public mirrors and the
checksums published for it (docs/data.md lists them with their sources). A file is *verified*
when its size and every known digest match. Verification is recorded in a small sidecar beside
the file (`<file>.verified.json`: size, mtime and digests) so that a second run does not re-hash
110 MB; the record is trusted only while the file's size and mtime are the recorded ones.

A data directory may carry its own `catalogue.json`. It then replaces the built-in catalogue for
that directory (fetch, info and load_dataset all use it). The test suite relies on this to work
with small synthetic files, whose checksums are not the real ones; provenance stays visible
because every run records the sha256 of the files it used.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from benchmark.errors import UserError
from benchmark.records import atomic_write_json

DATASET_NAMES = ("mnist", "binarized-mnist", "omniglot")
CATALOGUE_FILENAME = "catalogue.json"
RECORD_SUFFIX = ".verified.json"
PART_SUFFIX = ".part"
DIGEST_NAMES = ("sha256", "md5", "git_blob")

LECUN_MNIST = "http://yann.lecun.com/exdb/mnist/"
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
LAROCHELLE_BINARIZED = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
OMNIGLOT_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
OMNIGLOT_MIRRORS = ("https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",)


@dataclass(frozen=True)
class RawFile:
    """One file of a dataset. Digests that are not known independently are None."""

    dataset: str
    relpath: str  # posix path below <data_dir>/raw: mnist/, binarized_mnist/, omniglot/
    url: str
    mirrors: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None
    git_blob: str | None = None  # sha1 of b"blob <size>\0" + content, as git names a file

    @property
    def name(self) -> str:
        return PurePosixPath(self.relpath).name

    @property
    def folder(self) -> str:
        return str(PurePosixPath(self.relpath).parent)

    def local_path(self, data_dir: Path) -> Path:
        return raw_dir(data_dir) / self.relpath

    def expected_digests(self) -> dict[str, str]:
        return {k: v for k in DIGEST_NAMES if (v := getattr(self, k)) is not None}

    def describe_checks(self) -> str:
        """The published facts this file is checked against, for messages and the README."""
        facts = [f"{self.size:,} bytes"] if self.size is not None else []
        facts += [f"{k} {v}" for k, v in self.expected_digests().items()]
        return ", ".join(facts)


@dataclass(frozen=True)
class Catalogue:
    files: tuple[RawFile, ...]
    origin: str = "built-in"  # or the path of the catalogue.json it was read from

    @property
    def dataset_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f.dataset for f in self.files))

    def dataset(self, name: str) -> tuple[RawFile, ...]:
        files = tuple(f for f in self.files if f.dataset == name)
        if not files:
            known = ", ".join(self.dataset_names)
            raise UserError(f"unknown dataset {name!r} (catalogue {self.origin}: {known})")
        return files

    def entry(self, relpath: str) -> RawFile:
        for f in self.files:
            if f.relpath == relpath:
                return f
        raise UserError(f"{relpath} is not in the dataset catalogue ({self.origin})")


def _mnist(name: str, size: int, sha256: str, md5: str, git_blob: str | None = None) -> RawFile:
    return RawFile("mnist", f"mnist/{name}", LECUN_MNIST + name,
                   tuple(m + name for m in MNIST_MIRRORS), size, sha256, md5, git_blob)


def _binarized(name: str, size: int, sha256: str) -> RawFile:
    return RawFile("binarized-mnist", f"binarized_mnist/{name}", LAROCHELLE_BINARIZED + name,
                   (), size, sha256)


# Published facts: md5 as torchvision publishes them, sha256 as
# tensorflow-datasets publishes them. chardata.mat has no published sha256 or size; its md5
# (one public loader) and git blob id (the authors' repository) are checked together.
DEFAULT_CATALOGUE = Catalogue(files=(
    _mnist("train-images-idx3-ubyte.gz", 9_912_422,
           "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
           "f68b3c2dcbeaaa9fbdd348bbdeb94873", "b50e4b6bccdebde3d57f575c7fbeb24bec277f10"),
    _mnist("train-labels-idx1-ubyte.gz", 28_881,
           "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
           "d53e105ee54ea40749a09fcbcd1e9432"),
    _mnist("t10k-images-idx3-ubyte.gz", 1_648_877,
           "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
           "9fb629c4189551a2d022fa330f9573f3"),
    _mnist("t10k-labels-idx1-ubyte.gz", 4_542,
           "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
           "ec29112dd5afa0611ce80d1b7f02629c"),
    _binarized("binarized_mnist_train.amat", 78_400_000,
               "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
    _binarized("binarized_mnist_valid.amat", 15_680_000,
               "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
    _binarized("binarized_mnist_test.amat", 15_680_000,
               "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
    RawFile("omniglot", "omniglot/chardata.mat", OMNIGLOT_URL, OMNIGLOT_MIRRORS,
            md5="21ecaf34373511aa7691cf2e0802aa3d",
            git_blob="016a3536ffe5e1d38e42563a18d7a78bfaf643ec"),
))


def raw_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "raw"


def cache_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "cache"


def part_path(path: Path) -> Path:
    return path.with_name(path.name + PART_SUFFIX)


def record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


# --- the catalogue on disk -------------------------------------------------------------------

def catalogue_to_json(catalogue: Catalogue) -> dict[str, Any]:
    return {"files": [asdict(f) for f in catalogue.files]}


def catalogue_from_json(obj: dict[str, Any], origin: str) -> Catalogue:
    try:
        files = tuple(RawFile(**{**f, "mirrors": tuple(f.get("mirrors", ()))})
                      for f in obj["files"])
    except (KeyError, TypeError) as err:
        raise UserError(f"{origin} is not a valid dataset catalogue ({err}); delete it") from err
    return Catalogue(files=files, origin=origin)


def write_catalogue(data_dir: Path, catalogue: Catalogue) -> Path:
    path = Path(data_dir) / CATALOGUE_FILENAME
    atomic_write_json(path, catalogue_to_json(catalogue))
    return path


def load_catalogue(data_dir: Path) -> Catalogue:
    """The data directory's own catalogue.json if it has one, else the built-in catalogue."""
    path = Path(data_dir) / CATALOGUE_FILENAME
    if not path.is_file():
        return DEFAULT_CATALOGUE
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path} ({err}); delete it to use the built-in one") from err
    return catalogue_from_json(obj, origin=str(path))


# --- digests and verification ----------------------------------------------------------------

@dataclass(frozen=True)
class Digests:
    size: int
    values: dict[str, str] = field(default_factory=dict)  # name in DIGEST_NAMES -> hex


def compute_digests(path: Path, names: Iterable[str] = DIGEST_NAMES,
                    chunk: int = 1 << 20) -> Digests:
    """Every requested digest in a single read of the file."""
    wanted = set(names)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        hashers: dict[str, Any] = {}
        if "sha256" in wanted:
            hashers["sha256"] = hashlib.sha256()
        if "md5" in wanted:
            hashers["md5"] = hashlib.md5(usedforsecurity=False)
        if "git_blob" in wanted:
            hashers["git_blob"] = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
        while block := fh.read(chunk):
            for h in hashers.values():
                h.update(block)
    return Digests(size=size, values={k: h.hexdigest() for k, h in hashers.items()})


def mismatches(entry: RawFile, digests: Digests) -> list[str]:
    """What differs from the published facts; empty when the file is the right one."""
    problems = []
    if entry.size is not None and digests.size != entry.size:
        problems.append(f"size {digests.size:,} bytes, expected {entry.size:,}")
    for name, expected in entry.expected_digests().items():
        actual = digests.values.get(name)
        if actual is None:
            problems.append(f"{name} not computed")
        elif actual.lower() != expected.lower():
            problems.append(f"{name} {actual}, expected {expected}")
    return problems


def _digest_names_for(entry: RawFile) -> set[str]:
    # sha256 is always computed: it keys the parse cache and goes into every result record.
    return {"sha256", *entry.expected_digests()}


def read_trusted_record(path: Path, entry: RawFile) -> Digests | None:
    """The recorded digests, if the file is unchanged since they were computed and they match."""
    try:
        rec = json.loads(record_path(path).read_text(encoding="utf-8"))
        st = path.stat()
        if st.st_size != rec["size"] or st.st_mtime_ns != rec["mtime_ns"]:
            return None
        digests = Digests(size=int(rec["size"]), values=dict(rec["digests"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _digest_names_for(entry) <= digests.values.keys() or mismatches(entry, digests):
        return None
    return digests


def make_shareable(path: Path) -> None:
    """rw-r--r--: temp files are created 0600, but a data directory may be shared."""
    os.chmod(path, 0o644)


def write_record(path: Path, digests: Digests) -> None:
    """Best effort: a read-only data directory only costs a re-hash next time."""
    try:
        st = path.stat()
        atomic_write_json(record_path(path), {"size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                              "digests": digests.values})
        make_shareable(record_path(path))
    except OSError:
        pass


def forget_record(path: Path) -> None:
    try:
        record_path(path).unlink(missing_ok=True)
    except OSError:
        pass


@dataclass(frozen=True)
class Verification:
    path: Path
    exists: bool
    digests: Digests | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.exists and not self.problems

    @property
    def sha256(self) -> str | None:
        return self.digests.values.get("sha256") if self.digests else None

    def summary(self) -> str:
        if not self.exists:
            return "missing"
        return "verified" if self.ok else "fails its check: " + "; ".join(self.problems)


def verify_path(entry: RawFile, path: Path, *, trust_record: bool = True) -> Verification:
    """Check `path` against `entry`, recording success; a changed file is always re-hashed."""
    if not path.is_file():
        return Verification(path, False, None, ())
    if trust_record and (digests := read_trusted_record(path, entry)) is not None:
        return Verification(path, True, digests, ())
    digests = compute_digests(path, _digest_names_for(entry))
    problems = tuple(mismatches(entry, digests))
    if problems:
        forget_record(path)
    else:
        write_record(path, digests)
    return Verification(path, True, digests, problems)


def verify_file(entry: RawFile, data_dir: Path) -> Verification:
    return verify_path(entry, entry.local_path(data_dir))
