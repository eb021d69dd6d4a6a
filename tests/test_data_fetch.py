"""Fetching against a real HTTP server on 127.0.0.1, serving synthetic files in the real formats.

The synthetic files cannot match the real checksums, so these tests pass a synthetic catalogue
(tests/synthetic.py) whose canonical URLs refuse connections; the servers are given as mirrors.
One subprocess test at the end uses the real catalogue against ../shared/datasets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from synthetic import Fault, FileServer, synthetic_catalogue

from benchmark.data import transfer as transfer_module
from benchmark.data.fetch import fetch_command, fetch_dataset, source_urls
from benchmark.data.sources import (
    DEFAULT_CATALOGUE,
    Catalogue,
    compute_digests,
    part_path,
    record_path,
    verify_file,
    write_catalogue,
)
from benchmark.data.transfer import FetchSettings
from benchmark.errors import UserError

REPO = Path(__file__).resolve().parents[1]
IMAGES = "mnist/train-images-idx3-ubyte.gz"
OMNIGLOT = "omniglot/chardata.mat"
Server = Callable[[Path], FileServer]


@pytest.fixture
def catalogue(synthetic_tree: Path, closed_url: str) -> Catalogue:
    return synthetic_catalogue(synthetic_tree, base_url=closed_url)


def assert_fetched(data_dir: Path, tree: Path, catalogue: Catalogue, name: str) -> None:
    for entry in catalogue.dataset(name):
        dest = entry.local_path(data_dir)
        assert dest.read_bytes() == (tree / entry.relpath).read_bytes(), entry.relpath
        assert record_path(dest).is_file()
        assert not part_path(dest).exists()


def test_normal_download(synthetic_tree: Path, http_server: Server, catalogue: Catalogue,
                         fast_fetch: FetchSettings, tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    outcome = fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                            settings=fast_fetch)
    assert outcome.ok and {f.status for f in outcome.files} == {"fetched"}
    assert_fetched(tmp_path, synthetic_tree, catalogue, "mnist")
    assert sorted(r.path for r in server.requests) == sorted(
        e.relpath for e in catalogue.dataset("mnist"))
    assert all(r.status == 200 and r.range is None for r in server.requests)
    record = json.loads(record_path(tmp_path / "raw" / IMAGES).read_text())
    assert record["digests"]["sha256"] == catalogue.entry(IMAGES).sha256


def _truncated_part(tree: Path, data_dir: Path, rel: str, keep: int) -> bytes:
    data = (tree / rel).read_bytes()
    part = part_path(data_dir / "raw" / rel)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[:keep])
    return data


def test_resume_sends_only_the_rest(synthetic_tree: Path, http_server: Server,
                                    catalogue: Catalogue, fast_fetch: FetchSettings,
                                    tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    data = _truncated_part(synthetic_tree, tmp_path, IMAGES, keep=30_000)
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    (request,) = server.requests_for(IMAGES)
    assert request.range == "bytes=30000-"
    assert request.status == 206 and request.bytes_sent == len(data) - 30_000
    assert (tmp_path / "raw" / IMAGES).read_bytes() == data


def test_server_ignoring_range_restarts_from_zero(synthetic_tree: Path, http_server: Server,
                                                  catalogue: Catalogue,
                                                  fast_fetch: FetchSettings,
                                                  tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    server.inject(IMAGES, Fault(ignore_range=True))
    data = _truncated_part(synthetic_tree, tmp_path, IMAGES, keep=30_000)
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    (request,) = server.requests_for(IMAGES)
    assert request.range == "bytes=30000-" and request.status == 200
    assert request.bytes_sent == len(data)
    assert (tmp_path / "raw" / IMAGES).read_bytes() == data


def test_broken_transfer_is_resumed_in_the_same_run(synthetic_tree: Path, http_server: Server,
                                                    catalogue: Catalogue,
                                                    fast_fetch: FetchSettings,
                                                    tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    server.inject(IMAGES, Fault(cut_after=20_000, times=1))
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    first, second = server.requests_for(IMAGES)
    assert first.range is None and first.bytes_sent == 20_000
    assert second.range == "bytes=20000-" and second.status == 206
    assert_fetched(tmp_path, synthetic_tree, catalogue, "mnist")


def test_complete_part_is_verified_without_a_request(synthetic_tree: Path,
                                                     http_server: Server,
                                                     catalogue: Catalogue,
                                                     fast_fetch: FetchSettings,
                                                     tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    data = _truncated_part(synthetic_tree, tmp_path, IMAGES, keep=10**9)
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    assert server.requests_for(IMAGES) == []
    assert (tmp_path / "raw" / IMAGES).read_bytes() == data


def test_oversized_part_is_discarded(synthetic_tree: Path, http_server: Server,
                                     catalogue: Catalogue, fast_fetch: FetchSettings,
                                     tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    part = part_path(tmp_path / "raw" / IMAGES)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * (catalogue.entry(IMAGES).size + 5))
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    (request,) = server.requests_for(IMAGES)
    assert request.range is None


def test_corrupt_bytes_are_rejected_and_nothing_is_kept(synthetic_tree: Path,
                                                        http_server: Server,
                                                        catalogue: Catalogue,
                                                        fast_fetch: FetchSettings,
                                                        tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    server.inject(IMAGES, Fault(corrupt=True))
    outcome = fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                            settings=fast_fetch)
    assert not outcome.ok
    (failed,) = outcome.failed
    assert failed.entry.relpath == IMAGES
    reasons = {a.source: a.reason for a in failed.attempts}
    assert reasons[f"{server.url}/{IMAGES}"].startswith("wrong content (sha256 ")
    dest = tmp_path / "raw" / IMAGES
    assert not dest.exists() and not part_path(dest).exists()
    assert len(server.wait_for_requests(IMAGES, 1)) == 1  # wrong content: not retried
    assert sum(f.status == "fetched" for f in outcome.files) == 3  # the others are kept


def test_corrupt_resumed_file_is_retried_from_zero(synthetic_tree: Path, http_server: Server,
                                                   catalogue: Catalogue,
                                                   fast_fetch: FetchSettings,
                                                   tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    part = part_path(tmp_path / "raw" / IMAGES)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"garbage prefix")
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    assert [r.range for r in server.requests_for(IMAGES)] == [f"bytes={len(b'garbage prefix')}-",
                                                               None]


def test_404_on_the_first_mirror_then_the_next(synthetic_tree: Path, http_server: Server,
                                               catalogue: Catalogue, fast_fetch: FetchSettings,
                                               tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first, second = http_server(empty), http_server(synthetic_tree)
    outcome = fetch_dataset("omniglot", tmp_path / "data", catalogue=catalogue,
                            mirrors=[first.url, second.url], settings=fast_fetch)
    assert outcome.ok and outcome.files[0].source == f"{second.url}/{OMNIGLOT}"
    assert [r.status for r in first.requests] == [404]  # a 404 is not retried
    assert [r.status for r in second.requests] == [200]
    assert_fetched(tmp_path / "data", synthetic_tree, catalogue, "omniglot")


def test_a_404_keeps_the_partial_download_for_the_next_source(synthetic_tree: Path,
                                                               http_server: Server,
                                                               catalogue: Catalogue,
                                                               fast_fetch: FetchSettings,
                                                               tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    first, second = http_server(empty), http_server(synthetic_tree)
    data = _truncated_part(synthetic_tree, tmp_path, IMAGES, keep=12_345)
    assert fetch_dataset("mnist", tmp_path, catalogue=catalogue,
                         mirrors=[first.url, second.url], settings=fast_fetch).ok
    (request,) = second.requests_for(IMAGES)
    assert request.range == "bytes=12345-" and request.bytes_sent == len(data) - 12_345


def test_transient_errors_are_retried(synthetic_tree: Path, http_server: Server,
                                      catalogue: Catalogue, tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    server.inject(OMNIGLOT, Fault(status=503, times=1))
    server.inject(OMNIGLOT, Fault(delay_s=0.5, times=1))  # longer than the timeout
    settings = FetchSettings(attempts=3, backoff_s=0.01, timeout_s=0.2, progress=False)
    assert fetch_dataset("omniglot", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=settings).ok
    served = server.wait_for_requests(OMNIGLOT, 3)
    assert [r.status for r in served] == [503, 200, 200]


def test_every_source_failing_lists_each_url_and_reason(synthetic_tree: Path,
                                                        http_server: Server,
                                                        closed_url: str,
                                                        fast_fetch: FetchSettings,
                                                        tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    server.inject(OMNIGLOT, Fault(status=404))
    flaky = http_server(synthetic_tree)
    flaky.inject(OMNIGLOT, Fault(status=500))
    catalogue = synthetic_catalogue(synthetic_tree, base_url=closed_url,
                                    public_mirrors=(flaky.url,))
    data_dir = tmp_path / "data"
    with pytest.raises(UserError) as err:
        fetch_command(["omniglot"], data_dir, [server.url], None, catalogue=catalogue,
                      settings=fast_fetch)
    message = str(err.value)
    assert message.startswith("omniglot: could not fetch 1 of 1 files; every source failed:")
    assert f"{server.url}/{OMNIGLOT}: HTTP 404 Not Found" in message
    assert f"{closed_url}/{OMNIGLOT}: connection failed: [Errno 111] Connection refused " \
           "(after 2 attempts)" in message
    assert f"{flaky.url}/{OMNIGLOT}: HTTP 500 Internal Server Error (after 2 attempts)" in message
    assert str((data_dir / "raw" / "omniglot").resolve()) + "/" in message
    assert "chardata.mat (md5 " in message and "git_blob " in message
    assert f"python -m benchmark fetch omniglot --data-dir {data_dir}" in message
    assert message.index(server.url) < message.index(closed_url) < message.index(flaky.url)
    assert not (data_dir / "raw" / OMNIGLOT).exists()


def test_fetch_all_keeps_what_it_could_fetch(synthetic_tree: Path, http_server: Server,
                                             catalogue: Catalogue, fast_fetch: FetchSettings,
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    server = http_server(synthetic_tree)
    server.inject(OMNIGLOT, Fault(status=404))
    with pytest.raises(UserError) as err:
        fetch_command(["all"], tmp_path, [server.url], None, catalogue=catalogue,
                      settings=fast_fetch)
    message = str(err.value)
    assert message.splitlines()[0] == ("1 of 3 datasets could not be fetched (omniglot); "
                                       "datasets complete: mnist, binarized-mnist.")
    assert "omniglot: could not fetch 1 of 1 files" in message
    assert_fetched(tmp_path, synthetic_tree, catalogue, "mnist")
    assert_fetched(tmp_path, synthetic_tree, catalogue, "binarized-mnist")
    out = capsys.readouterr().out
    assert "mnist: 4 files verified" in out and "binarized-mnist: 3 files verified" in out


def test_from_dir_copies_and_verifies(synthetic_tree: Path, catalogue: Catalogue,
                                      fast_fetch: FetchSettings, tmp_path: Path) -> None:
    assert fetch_command(["all"], tmp_path / "data", [], synthetic_tree, catalogue=catalogue,
                         settings=fast_fetch) == 0
    for name in catalogue.dataset_names:
        assert_fetched(tmp_path / "data", synthetic_tree, catalogue, name)
    # another data directory (raw/ inside) works as a source too
    assert fetch_command(["mnist"], tmp_path / "copy", [], tmp_path / "data",
                         catalogue=catalogue, settings=fast_fetch) == 0
    assert_fetched(tmp_path / "copy", synthetic_tree, catalogue, "mnist")


def test_from_dir_rejects_a_wrong_file(synthetic_tree: Path, catalogue: Catalogue,
                                       fast_fetch: FetchSettings, tmp_path: Path) -> None:
    source = Path(shutil.copytree(synthetic_tree, tmp_path / "source"))
    path = source / OMNIGLOT
    path.write_bytes(path.read_bytes()[:-1] + b"\0")
    (source / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(UserError) as err:
        fetch_command(["all"], tmp_path / "data", [], source, catalogue=catalogue,
                      settings=fast_fetch)
    message = str(err.value)
    assert f"{path}: wrong content (md5 " in message
    assert f"{source / 'mnist/t10k-labels-idx1-ubyte.gz'}: not found" in message
    dest = tmp_path / "data" / "raw" / OMNIGLOT
    assert not dest.exists() and not part_path(dest).exists()
    assert_fetched(tmp_path / "data", synthetic_tree, catalogue, "binarized-mnist")


def test_second_fetch_makes_no_request_and_hashes_nothing(synthetic_tree: Path,
                                                          http_server: Server,
                                                          catalogue: Catalogue,
                                                          fast_fetch: FetchSettings,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    server = http_server(synthetic_tree)
    assert fetch_command(["all"], tmp_path, [server.url], None, catalogue=catalogue,
                         settings=fast_fetch) == 0
    served = len(server.requests)

    def no_hashing(*args, **kwargs):
        raise AssertionError("re-hashed a verified file")

    monkeypatch.setattr("benchmark.data.sources.compute_digests", no_hashing)
    monkeypatch.setattr(transfer_module, "compute_digests", no_hashing)
    assert fetch_command(["all"], tmp_path, [server.url], None, catalogue=catalogue,
                         settings=fast_fetch) == 0
    assert len(server.requests) == served


def test_a_changed_file_is_checked_again_and_replaced(synthetic_tree: Path,
                                                      http_server: Server,
                                                      catalogue: Catalogue,
                                                      fast_fetch: FetchSettings,
                                                      tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    assert fetch_dataset("omniglot", tmp_path, catalogue=catalogue, mirrors=[server.url],
                         settings=fast_fetch).ok
    dest = tmp_path / "raw" / OMNIGLOT
    with open(dest, "ab") as fh:
        fh.write(b"x")
    outcome = fetch_dataset("omniglot", tmp_path, catalogue=catalogue, mirrors=[server.url],
                            settings=fast_fetch)
    assert outcome.ok and outcome.files[0].status == "fetched"
    assert "was present but fails its check" in outcome.files[0].attempts[0].reason
    # the server logs a request once its answer is sent: the client may be done a moment before
    assert len(server.wait_for_requests(OMNIGLOT, 2)) == 2
    assert dest.read_bytes() == (synthetic_tree / OMNIGLOT).read_bytes()


def test_md5_and_git_blob_both_checked(synthetic_tree: Path, http_server: Server,
                                       catalogue: Catalogue, fast_fetch: FetchSettings,
                                       tmp_path: Path) -> None:
    from dataclasses import replace

    entry = catalogue.entry(OMNIGLOT)
    assert entry.size is None and entry.sha256 is None  # like the real chardata.mat entry
    wrong_blob = replace(entry, git_blob="0" * 40)
    bad = Catalogue(files=(wrong_blob,))
    server = http_server(synthetic_tree)
    outcome = fetch_dataset("omniglot", tmp_path, catalogue=bad, mirrors=[server.url],
                            settings=fast_fetch)
    assert not outcome.ok
    assert "git_blob" in outcome.files[0].attempts[0].reason
    assert not (tmp_path / "raw" / OMNIGLOT).exists()


def test_git_blob_id_matches_git(synthetic_tree: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    path = synthetic_tree / OMNIGLOT
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True,
                              text=True, check=True).stdout.strip()
    assert compute_digests(path).values["git_blob"] == expected


def test_source_order() -> None:
    entry = DEFAULT_CATALOGUE.entry("mnist/t10k-labels-idx1-ubyte.gz")
    assert source_urls(entry, ["http://a/", "http://b"]) == [
        "http://a/mnist/t10k-labels-idx1-ubyte.gz", "http://b/mnist/t10k-labels-idx1-ubyte.gz",
        "http://yann.lecun.com/exdb/mnist/t10k-labels-idx1-ubyte.gz",
        "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz",
        "https://storage.googleapis.com/cvdf-datasets/mnist/t10k-labels-idx1-ubyte.gz"]


def test_bad_arguments_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="for a local folder use --from"):
        fetch_command(["mnist"], tmp_path, [str(tmp_path)], None)
    with pytest.raises(UserError, match="no such folder"):
        fetch_command(["mnist"], tmp_path, [], tmp_path / "nowhere")
    with pytest.raises(UserError, match="unknown dataset"):
        fetch_command(["cifar"], tmp_path, [], tmp_path)


# --- the command line in a subprocess --------------------------------------------------------

def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("IWAE_MIRROR", None)
    return subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_with_a_data_dir_catalogue(synthetic_tree: Path, http_server: Server,
                                       tmp_path: Path) -> None:
    server = http_server(synthetic_tree)
    data_dir = tmp_path / "data"
    # canonical URLs on the same server under a path it does not have: a 404, not a retry
    write_catalogue(data_dir, synthetic_catalogue(synthetic_tree, base_url=server.url + "/gone"))
    ok = run_cli("fetch", "mnist", "binarized-mnist", "--data-dir", str(data_dir),
                 "--mirror", server.url)
    assert ok.returncode == 0, ok.stderr
    assert "mnist: 4 files verified" in ok.stdout
    server.inject(OMNIGLOT, Fault(status=404))
    failed = run_cli("fetch", "all", "--data-dir", str(data_dir), "--mirror", server.url)
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: 1 of 3 datasets could not be fetched (omniglot)")
    assert f"{server.url}/{OMNIGLOT}: HTTP 404" in failed.stderr
    assert f"{server.url}/gone/{OMNIGLOT}: HTTP 404" in failed.stderr
    assert "Traceback" not in failed.stderr
    info = run_cli("info", "--json", "--data-dir", str(data_dir))
    assert info.returncode == 0, info.stderr
    report = json.loads(info.stdout)
    assert report["datasets"]["mnist"]["complete"]
    assert report["conditions"]["mnist-fixed"]["splits"]["train"] == [100, 784]
    assert not report["conditions"]["omniglot"]["available"]


@pytest.mark.realdata
def test_cli_fetches_real_mnist_with_the_real_catalogue(shared_datasets: Path,
                                                        http_server: Server,
                                                        tmp_path: Path) -> None:
    server = http_server(shared_datasets)
    result = run_cli("fetch", "mnist", "--data-dir", str(tmp_path), "--mirror", server.url)
    assert result.returncode == 0, result.stderr
    for entry in DEFAULT_CATALOGUE.dataset("mnist"):
        assert verify_file(entry, tmp_path).ok
        assert (tmp_path / "raw" / entry.relpath).read_bytes() == \
            (shared_datasets / entry.relpath).read_bytes()
    assert {r.status for r in server.requests} == {200}
