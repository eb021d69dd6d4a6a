"""Small synthetic files in the real raw formats, and a local file server, for every module's tests.

    arrays = synthetic_arrays(n_train=100, n_test=50, seed=0)   # the content, as numpy arrays
    write_source_tree(root, n_train=100, n_test=50, seed=0)     # laid out like ../shared/datasets
        root/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz   (gzip IDX)
        root/binarized_mnist/binarized_mnist_{train,valid,test}.amat (Larochelle text format)
        root/omniglot/chardata.mat   ('data' 784 x N, 'testdata' 784 x M, 'target', 'testtarget')
    synthetic_catalogue(root, base_url=...)   # a Catalogue with those files' checksums
    write_synthetic_raw(data_dir, n_train=100, n_test=50, seed=0)
        the same tree under data_dir/raw plus data_dir/catalogue.json, so that
        load_dataset(condition, data_dir) works for all three conditions.
    FileServer(root).start()   # serves a folder on 127.0.0.1, logs requests, injects Faults

Sizes: every condition's train split has n_train rows and its test split n_test rows. The held
out validation splits are the authors' fixed sizes for mnist-dynamic (the last 400 of the train
file) and omniglot (the last 1,345 after the shuffle), and n_valid rows for mnist-fixed.
Every file is deterministic for a seed (gzip mtime 0), so their checksums are too.
"""

from __future__ import annotations

import gzip
import threading
import time
import urllib.parse
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import scipy.io

from benchmark.data.sources import DEFAULT_CATALOGUE, Catalogue, compute_digests, write_catalogue
from benchmark.data.splits import MNIST_VALID, OMNIGLOT_VALID
from benchmark.records.fileio import atomic_write_bytes

SIDE = 28
PIXELS = SIDE * SIDE
BORDER = 3  # pixels at the image border are 0 in every image, as in MNIST
N_ALPHABETS = 50
UNREACHABLE = "http://127.0.0.1:9"  # the discard port: refused at once, never a real download


@dataclass(frozen=True)
class SyntheticArrays:
    mnist_train: np.ndarray  # uint8 (n_train + 400, 28, 28), file order
    mnist_train_labels: np.ndarray  # uint8 (n_train + 400,)
    mnist_test: np.ndarray  # uint8 (n_test, 28, 28)
    mnist_test_labels: np.ndarray  # uint8 (n_test,)
    fixed_train: np.ndarray  # uint8 0/1 (n_train, 784)
    fixed_valid: np.ndarray  # uint8 0/1 (n_valid, 784)
    fixed_test: np.ndarray  # uint8 0/1 (n_test, 784)
    # Which MNIST image each fixed row was drawn from, as in the real Larochelle-Murray files:
    # train and valid a random permutation of MNIST training images, test sorted by label.
    fixed_train_source: np.ndarray  # int (n_train,) into mnist_train
    fixed_valid_source: np.ndarray  # int (n_valid,) into mnist_train
    fixed_test_source: np.ndarray  # int (n_test,) into mnist_test
    omniglot_train: np.ndarray  # float64 in [0, 1], upright images (n_train + 1345, 28, 28)
    omniglot_test: np.ndarray  # float64 in [0, 1] (n_test, 28, 28)


def digit_like_bytes(n: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, 28, 28): mostly 0, strokes of 255 with gray edges, a zero border."""
    images = np.zeros((n, SIDE, SIDE), dtype=np.uint8)
    inner = SIDE - 2 * BORDER
    ink = rng.random((n, inner, inner)) < 0.2
    gray = rng.integers(1, 255, size=(n, inner, inner), dtype=np.uint8)
    full = rng.random((n, inner, inner)) < 0.6
    images[:, BORDER:-BORDER, BORDER:-BORDER] = np.where(ink, np.where(full, 255, gray), 0)
    return images


def bernoulli_draw(gray: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 0/1 (N, 784): one Bernoulli(gray / 255) draw of uint8 images (N, 28, 28)."""
    p = gray.reshape(len(gray), PIXELS) / 255.0
    return (rng.random(p.shape) < p).astype(np.uint8)


def synthetic_arrays(n_train: int = 100, n_test: int = 50, seed: int = 0,
                     n_valid: int | None = None) -> SyntheticArrays:
    rng = np.random.default_rng(seed)
    n_valid = n_test if n_valid is None else n_valid
    n_mnist = n_train + MNIST_VALID
    n_omni = n_train + OMNIGLOT_VALID
    mnist_train = digit_like_bytes(n_mnist, rng)
    mnist_train_labels = rng.integers(0, 10, n_mnist, dtype=np.uint8)
    mnist_test = digit_like_bytes(n_test, rng)
    mnist_test_labels = rng.integers(0, 10, n_test, dtype=np.uint8)
    if n_train + n_valid > n_mnist:
        raise ValueError(f"n_valid {n_valid} is more than the {MNIST_VALID} MNIST images the "
                         "fixed files' permutation has beyond n_train")
    order = rng.permutation(n_mnist)[:n_train + n_valid]
    test_order = np.argsort(mnist_test_labels, kind="stable")
    return SyntheticArrays(
        mnist_train=mnist_train, mnist_train_labels=mnist_train_labels,
        mnist_test=mnist_test, mnist_test_labels=mnist_test_labels,
        fixed_train=bernoulli_draw(mnist_train[order[:n_train]], rng),
        fixed_valid=bernoulli_draw(mnist_train[order[n_train:]], rng),
        fixed_test=bernoulli_draw(mnist_test[test_order], rng),
        fixed_train_source=order[:n_train], fixed_valid_source=order[n_train:],
        fixed_test_source=test_order,
        omniglot_train=digit_like_bytes(n_omni, rng) / 255.0,
        omniglot_test=digit_like_bytes(n_test, rng) / 255.0,
    )


# --- writers, one per format -----------------------------------------------------------------

def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_gz(path: Path, array: np.ndarray, magic: int) -> Path:
    """An IDX file (2051 images (N, 28, 28), 2049 labels (N,)) compressed like the originals."""
    atomic_write_bytes(path, gzip.compress(idx_bytes(array, magic), compresslevel=6, mtime=0))
    return path


def amat_bytes(bits: np.ndarray) -> bytes:
    lines = np.full((len(bits), 2 * PIXELS), ord(" "), dtype=np.uint8)
    lines[:, 0::2] = np.asarray(bits, dtype=np.uint8) + ord("0")
    lines[:, -1] = ord("\n")
    return lines.tobytes()


def write_amat(path: Path, bits: np.ndarray) -> Path:
    """Larochelle & Murray's text format: '0'/'1' separated by spaces, one image per line."""
    atomic_write_bytes(path, amat_bytes(bits))
    return path


def matlab_columns(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) upright images -> (784, N), each column the image in MATLAB column order."""
    return images.transpose(0, 2, 1).reshape(len(images), PIXELS).T


def one_hot_alphabets(n: int, rng: np.random.Generator) -> np.ndarray:
    target = np.zeros((N_ALPHABETS, n))
    target[rng.integers(0, N_ALPHABETS, n), np.arange(n)] = 1.0
    return target


def write_chardata(path: Path, train: np.ndarray, test: np.ndarray, seed: int = 0) -> Path:
    """chardata.mat as the authors' loader reads it (float64 columns, MATLAB v5, compressed)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {
        "data": matlab_columns(train), "target": one_hot_alphabets(len(train), rng),
        "testdata": matlab_columns(test), "testtarget": one_hot_alphabets(len(test), rng),
    }, do_compression=True, format="5")
    return path


# --- trees and catalogues --------------------------------------------------------------------

def write_arrays(root: Path, a: SyntheticArrays) -> Path:
    root = Path(root)
    write_idx_gz(root / "mnist/train-images-idx3-ubyte.gz", a.mnist_train, 2051)
    write_idx_gz(root / "mnist/train-labels-idx1-ubyte.gz", a.mnist_train_labels, 2049)
    write_idx_gz(root / "mnist/t10k-images-idx3-ubyte.gz", a.mnist_test, 2051)
    write_idx_gz(root / "mnist/t10k-labels-idx1-ubyte.gz", a.mnist_test_labels, 2049)
    write_amat(root / "binarized_mnist/binarized_mnist_train.amat", a.fixed_train)
    write_amat(root / "binarized_mnist/binarized_mnist_valid.amat", a.fixed_valid)
    write_amat(root / "binarized_mnist/binarized_mnist_test.amat", a.fixed_test)
    write_chardata(root / "omniglot/chardata.mat", a.omniglot_train, a.omniglot_test)
    return root


def write_source_tree(root: Path, n_train: int = 100, n_test: int = 50, seed: int = 0,
                      n_valid: int | None = None) -> Path:
    """Every raw file, laid out like ../shared/datasets (mnist/, binarized_mnist/, omniglot/)."""
    return write_arrays(root, synthetic_arrays(n_train, n_test, seed, n_valid))


def synthetic_catalogue(root: Path, base_url: str = UNREACHABLE,
                        public_mirrors: tuple[str, ...] = ()) -> Catalogue:
    """The built-in catalogue's files with the checksums of the files under `root`.

    The facts checked are the kinds the real catalogue has: size, sha256 and md5 for MNIST, size
    and sha256 for the .amat files, and only md5 and the git blob id for chardata.mat. URLs point
    at `base_url` (by default a port that refuses connections).
    """
    files = []
    for entry in DEFAULT_CATALOGUE.files:
        digests = compute_digests(Path(root) / entry.relpath)
        facts = {k: digests.values[k] for k in entry.expected_digests()}
        files.append(replace(
            entry, url=f"{base_url.rstrip('/')}/{entry.relpath}",
            mirrors=tuple(f"{m.rstrip('/')}/{entry.relpath}" for m in public_mirrors),
            size=digests.size if entry.size is not None else None,
            sha256=facts.get("sha256"), md5=facts.get("md5"), git_blob=facts.get("git_blob")))
    return Catalogue(files=tuple(files), origin="synthetic")


def write_synthetic_raw(data_dir: Path, n_train: int = 100, n_test: int = 50, seed: int = 0,
                        n_valid: int | None = None) -> Path:
    """A data directory holding every raw file and the catalogue.json that matches them."""
    data_dir = Path(data_dir)
    raw = write_source_tree(data_dir / "raw", n_train, n_test, seed, n_valid)
    write_catalogue(data_dir, synthetic_catalogue(raw))
    return data_dir


# --- a file server with fault injection ------------------------------------------------------

@dataclass(frozen=True)
class Fault:
    """What to do to the next `times` requests of a path (times=None: every request)."""

    status: int | None = None  # answer with this HTTP error status
    corrupt: bool = False  # flip bits of the content (same length)
    ignore_range: bool = False  # answer a Range request with 200 and the whole file
    cut_after: int | None = None  # close the connection after this many body bytes
    delay_s: float = 0.0  # wait before answering
    times: int | None = None


@dataclass(frozen=True)
class Served:
    path: str  # relative to the served root, without a leading slash
    range: str | None  # the Range header the client sent
    status: int
    bytes_sent: int  # body bytes actually written


class FileServer:
    """Serves a folder over HTTP/1.0 on 127.0.0.1, with byte ranges and injectable faults."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.requests: list[Served] = []
        self._faults: dict[str, list[Fault]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def inject(self, path: str, fault: Fault) -> None:
        with self._lock:
            self._faults.setdefault(path, []).append(fault)

    def requests_for(self, path: str) -> list[Served]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait_for_requests(self, path: str, n: int, timeout_s: float = 5.0) -> list[Served]:
        """The log of `path` once it has n entries (a delayed answer is logged when sent)."""
        deadline = time.monotonic() + timeout_s
        while len(served := self.requests_for(path)) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return served

    def take_fault(self, path: str) -> Fault:
        with self._lock:
            queue = self._faults.get(path, [])
            if not queue:
                return Fault()
            fault = queue[0]
            if fault.times is not None:
                remaining = fault.times - 1
                queue[0] = Fault(**{**fault.__dict__, "times": remaining})
                if remaining <= 0:
                    queue.pop(0)
            return fault

    def log(self, served: Served) -> None:
        with self._lock:
            self.requests.append(served)

    def start(self) -> FileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _parse_range(header: str | None) -> int | None:
    """The start byte of a 'bytes=N-' request; None when absent or of another form."""
    if not header or not header.startswith("bytes=") or not header.endswith("-"):
        return None
    start = header[len("bytes="):-1]
    return int(start) if start.isdigit() else None


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet test output
            pass

        def do_GET(self) -> None:  # noqa: N802 (the name http.server dispatches to)
            rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
            range_header = self.headers.get("Range")
            fault = server.take_fault(rel)
            if fault.delay_s:
                time.sleep(fault.delay_s)
            target = (server.root / rel).resolve()
            if fault.status is not None or not target.is_file() \
                    or server.root not in target.parents:
                status = fault.status or 404
                self.send_error(status)
                server.log(Served(rel, range_header, status, 0))
                return
            self._send_file(rel, target.read_bytes(), range_header, fault)

        def _send_file(self, rel: str, data: bytes, range_header: str | None,
                       fault: Fault) -> None:
            if fault.corrupt:
                data = bytes(b ^ 0x5A for b in data)
            start = None if fault.ignore_range else _parse_range(range_header)
            if start is not None and start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                server.log(Served(rel, range_header, 416, 0))
                return
            body = data[start or 0:]
            status = 206 if start is not None else 200
            self.send_response(status)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if fault.cut_after is not None:
                body = body[:fault.cut_after]
            try:
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                pass
            server.log(Served(rel, range_header, status, len(body)))
            if fault.cut_after is not None:
                self.close_connection = True

    return Handler
