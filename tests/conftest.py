"""Shared fixtures: the real datasets folder, synthetic data directories, a local HTTP server.

- shared_datasets: ../shared/datasets (relative to the repository root); skips when absent.
- real_data_dir: a data directory linking to the real MNIST files (skips without them).
- synthetic_tree: synthetic raw files laid out like ../shared/datasets (session-wide, read-only).
- synthetic_data_dir: a fresh data directory whose raw files are written, catalogued and already
  verified, so that load_dataset(condition, synthetic_data_dir) works for all three conditions
  (train n_train=100, test n_test=50; see tests/synthetic.py).
- http_server: a factory, http_server(root) -> FileServer, serving `root` on 127.0.0.1 from a
  thread; every request is logged and faults can be injected per path (see synthetic.FileServer
  and synthetic.Fault).
- closed_url: an http://127.0.0.1:PORT base URL that refuses connections.
- fast_fetch: FetchSettings with tiny retries, backoff and timeout, so that failure tests are fast.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from synthetic import FileServer, write_source_tree, write_synthetic_raw

from benchmark.data.sources import DEFAULT_CATALOGUE, load_catalogue, verify_file
from benchmark.data.transfer import FetchSettings

SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not (SHARED_DATASETS / "mnist").is_dir():
        pytest.skip(f"the real dataset files are not in {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def real_data_dir(shared_datasets: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory whose raw files are links to the real MNIST and fixed-MNIST files."""
    data_dir = tmp_path_factory.mktemp("real") / "data"
    for entry in DEFAULT_CATALOGUE.files:
        if entry.dataset == "omniglot":
            continue
        link = entry.local_path(data_dir)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(shared_datasets / entry.relpath)
    return data_dir


@pytest.fixture(scope="session")
def synthetic_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_source_tree(tmp_path_factory.mktemp("synthetic-tree"))


@pytest.fixture(scope="session")
def _verified_synthetic_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = write_synthetic_raw(tmp_path_factory.mktemp("synthetic-data") / "data")
    for entry in load_catalogue(data_dir).files:
        assert verify_file(entry, data_dir).ok, entry.relpath
    return data_dir


@pytest.fixture
def synthetic_data_dir(_verified_synthetic_template: Path, tmp_path: Path) -> Path:
    # copy2 keeps mtimes to the nanosecond, so the verification records stay trusted.
    return Path(shutil.copytree(_verified_synthetic_template, tmp_path / "data",
                                copy_function=shutil.copy2))


@pytest.fixture
def trained_run(synthetic_data_dir: Path, tmp_path: Path) -> Path:
    """One epoch of a small IWAE on synthetic fixed MNIST, evaluated by L_20 on 30 images."""
    from benchmark.config import RunConfig
    from benchmark.training import train_run

    config = RunConfig(data="mnist-fixed", model="iwae", k=2, layers=1, epochs=1, eval_k=20,
                       eval_n=30)
    train_run(config, tmp_path / "run", synthetic_data_dir, show_progress=False)
    return tmp_path / "run"


@pytest.fixture
def fast_fetch() -> FetchSettings:
    return FetchSettings(attempts=2, backoff_s=0.01, timeout_s=2.0, chunk_bytes=4096,
                         progress=False)


@pytest.fixture
def closed_url() -> Iterator[str]:
    # Bound but not listening: connections are refused, and no other process can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], FileServer]]:
    servers: list[FileServer] = []

    def start(root: Path) -> FileServer:
        server = FileServer(root).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
