"""Parsers for the three raw formats, and a cache of their parsed arrays.

- LeCun IDX files, gzip-compressed (MNIST images and labels).
- Larochelle & Murray .amat text files (fixed binarization of MNIST): one image per line, 784
  characters '0'/'1' separated by single spaces, ending in '\\n' (1568 bytes per line).
- chardata.mat (28x28 OMNIGLOT as the IWAE authors used it): 'data' (784 x N) and
  'testdata' (784 x M), gray values in [0, 1], one image per column.

Every parser returns arrays in the layout the IWAE authors' code produced and raises
MalformedFile (a UserError naming the file) when the file is not what it should be.

Parsed arrays are cached as .npy files keyed by the raw file's sha256 and PARSER_VERSION, so a
second load is an np.load instead of a decompression or a text parse.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.errors import UserError
from benchmark.records import atomic_write

IMAGE_SIDE = 28
PIXELS = IMAGE_SIDE * IMAGE_SIDE
IDX_IMAGES_MAGIC = 2051  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # unsigned bytes, 1 dimension
AMAT_LINE_BYTES = 2 * PIXELS  # 784 digits, each followed by a space or, last, a newline
# Bump when a parser's output changes, so that old cache entries are not used.
PARSER_VERSION = 1

Parsed = dict[str, np.ndarray]


class MalformedFile(UserError):
    """A raw file that cannot be what the catalogue says it is."""

    def __init__(self, path: Path, problem: str, remedy: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        self.remedy = remedy or "delete it and fetch it again (python -m benchmark fetch ...)"
        super().__init__(f"{self.path} is malformed: {problem}; {self.remedy}")

    def with_remedy(self, remedy: str) -> MalformedFile:
        return MalformedFile(self.path, self.problem, remedy)


# --- IDX -------------------------------------------------------------------------------------

def read_gzip(path: Path) -> bytes:
    try:
        return gzip.decompress(Path(path).read_bytes())
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise MalformedFile(path, f"not a complete gzip file ({err})") from err


def parse_idx(path: Path, data: bytes, magic: int) -> np.ndarray:
    """The array an IDX file holds; only unsigned-byte IDX files occur in MNIST."""
    if len(data) < 4:
        raise MalformedFile(path, f"{len(data)} bytes, too short for an IDX header")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise MalformedFile(path, f"IDX magic number {found}, expected {magic}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MalformedFile(path, "IDX header cut short")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected:
        raise MalformedFile(path, f"{len(data):,} bytes after decompression, the header "
                                  f"{shape} implies {expected:,}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def parse_mnist_images(path: Path) -> Parsed:
    """{'images': uint8 (N, 784)}, each image flattened row by row as in the file."""
    images = parse_idx(path, read_gzip(path), IDX_IMAGES_MAGIC)
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise MalformedFile(path, f"images of {images.shape[1:]} pixels, expected 28 x 28")
    return {"images": images.reshape(len(images), PIXELS)}


def parse_mnist_labels(path: Path) -> Parsed:
    """{'labels': uint8 (N,)} with values 0..9."""
    labels = parse_idx(path, read_gzip(path), IDX_LABELS_MAGIC)
    if labels.size and labels.max() > 9:
        raise MalformedFile(path, f"label {labels.max()} outside 0..9")
    return {"labels": labels}


# --- .amat -----------------------------------------------------------------------------------

def parse_amat(path: Path) -> Parsed:
    """{'bits': uint8 (N, 784)} of 0/1, read in one vectorised pass (the train file is 78 MB)."""
    raw = np.frombuffer(Path(path).read_bytes(), dtype=np.uint8)
    if raw.size == 0 or raw.size % AMAT_LINE_BYTES:
        raise MalformedFile(path, f"{raw.size:,} bytes is not a whole number of 784-pixel lines "
                                  f"of {AMAT_LINE_BYTES} bytes ('0'/'1' separated by spaces)")
    lines = raw.reshape(-1, AMAT_LINE_BYTES)
    separators = lines[:, 1::2]
    if not ((separators[:, :-1] == ord(" ")).all() and (separators[:, -1] == ord("\n")).all()):
        row = int(np.argmax(~((separators[:, :-1] == ord(" ")).all(1)
                              & (separators[:, -1] == ord("\n")))))
        raise MalformedFile(path, f"line {row + 1} is not 784 values separated by single "
                                  "spaces and ending in a newline")
    bits = lines[:, 0::2] - np.uint8(ord("0"))  # anything but '0'/'1' wraps to a value > 1
    if (bits > 1).any():
        row = int(np.argmax((bits > 1).any(1)))
        raise MalformedFile(path, f"line {row + 1} holds a value other than 0 or 1")
    return {"bits": bits}


# --- chardata.mat ----------------------------------------------------------------------------

def omniglot_images_from_columns(columns: np.ndarray) -> np.ndarray:
    """(784, N) columns -> (N, 784) float32 rows, as the authors' code reshaped them.

    Their code did data.T.reshape((-1, 28, 28)).reshape((-1, 784), order='fortran'): each
    image is read column-major, i.e. transposed, which turns MATLAB's column-major storage
    into upright row-major images.
    """
    rows = columns.T.astype(np.float32)
    return np.ascontiguousarray(rows.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
                                .reshape(-1, PIXELS, order="F"))


def _mat_variable(path: Path, mat: dict, key: str) -> np.ndarray:
    if key not in mat:
        found = ", ".join(sorted(k for k in mat if not k.startswith("__"))) or "none"
        raise MalformedFile(path, f"no variable {key!r} (variables: {found})")
    value = np.asarray(mat[key])
    if value.ndim != 2 or value.shape[0] != PIXELS or value.dtype.kind not in "fiub":
        raise MalformedFile(path, f"{key!r} is {value.dtype} {value.shape}, "
                                  "expected numbers of shape (784, N)")
    if value.size and not (np.isfinite(value).all() and value.min() >= 0 and value.max() <= 1):
        raise MalformedFile(path, f"{key!r} holds values outside [0, 1]")
    return value


def parse_chardata(path: Path) -> Parsed:
    """{'train': float32 (24345, 784), 'test': float32 (8070, 784)} for the real file."""
    import scipy.io  # imported here: scipy takes a while to import and only OMNIGLOT needs it

    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as err:  # scipy's MATLAB reader raises many types on damaged input
        raise MalformedFile(path, f"not a readable MATLAB file ({err})") from err
    return {"train": omniglot_images_from_columns(_mat_variable(path, mat, "data")),
            "test": omniglot_images_from_columns(_mat_variable(path, mat, "testdata"))}


# --- cache -----------------------------------------------------------------------------------

def cache_paths(cache_dir: Path, raw: Path, sha256: str, keys: tuple[str, ...]) -> dict[str, Path]:
    stem = f"{raw.name}.{sha256[:16]}.v{PARSER_VERSION}"
    return {k: Path(cache_dir) / f"{stem}.{k}.npy" for k in keys}


def _read_cached(paths: dict[str, Path]) -> Parsed | None:
    try:
        # np.asarray drops the memmap subclass: callers get plain (read-only) arrays.
        return {k: np.asarray(np.load(p, mmap_mode="r", allow_pickle=False))
                for k, p in paths.items()}
    except (OSError, ValueError):
        return None


def _write_cached(paths: dict[str, Path], parsed: Parsed) -> None:
    # Best effort: a read-only data directory only costs a parse next time.
    try:
        for key, path in paths.items():
            atomic_write(path, lambda fh, a=parsed[key]: np.save(fh, a, allow_pickle=False))
            os.chmod(path, 0o644)  # temp files are created 0600; a data dir may be shared
    except OSError:
        pass


def load_cached(raw: Path, sha256: str, cache_dir: Path, parse: Callable[[Path], Parsed],
                keys: tuple[str, ...]) -> Parsed:
    """parse(raw), or its cached result for this exact file content (read-only memory maps)."""
    paths = cache_paths(cache_dir, raw, sha256, keys)
    cached = _read_cached(paths) if all(p.is_file() for p in paths.values()) else None
    if cached is not None:
        return cached
    parsed = parse(raw)
    _write_cached(paths, parsed)
    return parsed
