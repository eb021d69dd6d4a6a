"""`python -m benchmark fetch`: download (or copy) the raw files and verify them.

For each file of a dataset, sources are tried in order: every --mirror (a base URL laid out like
../shared/datasets), the canonical URL, then the public mirrors; or, with --from DIR, only the
local folder DIR. A download streams into `<file>.part`, resumes an interrupted .part with an
HTTP Range request, retries transient failures with exponential backoff, and becomes `<file>`
by an atomic rename only after its size and every known digest match the catalogue. A file that
fails its check is deleted. A verified file is never fetched again (see sources.py for how the
verification is recorded and when the record is trusted).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3
from filelock import FileLock
from tqdm import tqdm

from benchmark.data.sources import (
    Catalogue,
    Digests,
    RawFile,
    compute_digests,
    load_catalogue,
    mismatches,
    part_path,
    raw_dir,
    verify_path,
    write_record,
)
from benchmark.errors import UserError

LOCK_FILENAME = ".fetch.lock"
USER_AGENT = "iwae-benchmark-fetch/0.1 (+https://github.com/yburda/iwae reproduction)"
PERMANENT_HTTP = frozenset({400, 401, 403, 404, 405, 410, 451})
NETWORK_ERRORS = (requests.RequestException, urllib3.exceptions.HTTPError, ConnectionError,
                  TimeoutError)
BAD_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema,
                  requests.exceptions.MissingSchema)


@dataclass(frozen=True)
class FetchSettings:
    """Knobs of the transfer; tests inject small values."""

    attempts: int = 3  # per source, for transient failures (timeouts, 5xx, broken transfers)
    backoff_s: float = 1.0  # sleep backoff_s * 2**i before retry i + 1
    timeout_s: float = 30.0  # connect timeout and the longest wait for the next bytes
    chunk_bytes: int = 1 << 16
    progress: bool | None = None  # None: a tqdm bar per file on a terminal only


class SourceError(Exception):
    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


@dataclass(frozen=True)
class Attempt:
    source: str
    reason: str


@dataclass
class FileOutcome:
    entry: RawFile
    status: str  # "present" (already verified), "fetched" or "failed"
    source: str | None = None
    sha256: str | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class DatasetOutcome:
    name: str
    files: list[FileOutcome]

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    @property
    def failed(self) -> list[FileOutcome]:
        return [f for f in self.files if not f.ok]


# --- sources ---------------------------------------------------------------------------------

def mirror_url(base: str, entry: RawFile) -> str:
    return base.rstrip("/") + "/" + entry.relpath


def source_urls(entry: RawFile, mirrors: Sequence[str]) -> list[str]:
    """User mirrors first, then the canonical URL, then the public mirrors; no duplicates."""
    urls = [mirror_url(m, entry) for m in mirrors] + [entry.url, *entry.mirrors]
    return list(dict.fromkeys(u for u in urls if u))


def local_candidates(from_dir: Path, entry: RawFile) -> list[Path]:
    # A folder laid out like ../shared/datasets, or another data directory (with raw/).
    return [Path(from_dir) / entry.relpath, raw_dir(from_dir) / entry.relpath]


def check_mirrors(mirrors: Sequence[str]) -> None:
    for m in mirrors:
        if not m.startswith(("http://", "https://")):
            raise UserError(f"--mirror {m}: expected an http(s) base URL laid out like "
                            "../shared/datasets; for a local folder use --from DIR")


# --- one HTTP transfer -----------------------------------------------------------------------

def describe_network_error(err: BaseException, settings: FetchSettings) -> str:
    """A short reason: urllib3's messages embed object reprs a person need not read."""
    if isinstance(err, requests.Timeout | urllib3.exceptions.TimeoutError | TimeoutError):
        return f"timed out (limit {settings.timeout_s:g} s)"
    text = str(err)
    errno = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if isinstance(err, requests.ConnectionError | ConnectionError) and errno:
        return f"connection failed: {errno.group(0).strip()}"
    if "IncompleteRead" in text or "Connection broken" in text:
        return "connection broken"
    return f"{type(err).__name__}: {text[:160]}"


def check_status(response: requests.Response) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    reason = f"HTTP {code} {response.reason or ''}".strip()
    transient = code in (408, 425, 429) or code >= 500
    if code in PERMANENT_HTTP or not transient:
        raise SourceError(reason, transient=False)
    raise SourceError(reason, transient=True)


def content_range_start(response: requests.Response) -> int | None:
    match = re.match(r"bytes\s+(\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def progress_bar(entry: RawFile, total: int | None, initial: int,
                 settings: FetchSettings) -> tqdm:
    disable = None if settings.progress is None else not settings.progress
    return tqdm(total=total, initial=initial, desc=entry.name, unit="B", unit_scale=True,
                unit_divisor=1024, disable=disable, file=sys.stderr, leave=False)


def write_body(response: requests.Response, part: Path, offset: int, entry: RawFile,
               settings: FetchSettings) -> None:
    """Append the response body to `part` (from byte `offset`); raise if it stops short."""
    length = content_length(response)
    total = offset + length if length is not None else entry.size
    received = 0
    too_long = False
    with open(part, "ab" if offset else "wb") as fh, \
            progress_bar(entry, total, offset, settings) as bar:
        try:
            # decode_content=False: bytes exactly as served, even if a server mislabels a .gz
            # file with Content-Encoding: gzip (requests would then silently decompress it).
            for chunk in response.raw.stream(settings.chunk_bytes, decode_content=False):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                if entry.size is not None and offset + received > entry.size:
                    too_long = True
                    break
        except NETWORK_ERRORS as err:
            raise SourceError(f"transfer broke off after {offset + received:,} bytes "
                              f"({describe_network_error(err, settings)})",
                              transient=True) from err
    if too_long:
        part.unlink()
        raise SourceError(f"sent more than the expected {entry.size:,} bytes", transient=False)
    if length is not None and received < length:
        raise SourceError(f"transfer broke off after {offset + received:,} of {total:,} bytes",
                          transient=True)


def resume_offset(part: Path, entry: RawFile) -> int:
    size = part.stat().st_size if part.is_file() else 0
    if entry.size is not None and size > entry.size:
        part.unlink()
        return 0
    return size


def download_once(session: requests.Session, url: str, entry: RawFile, part: Path,
                  settings: FetchSettings) -> int:
    """One GET of `url` into `part`, resuming what is there; returns the byte it resumed at."""
    offset = resume_offset(part, entry)
    if entry.size is not None and offset == entry.size:
        return offset  # a complete .part left by an interrupted run: only verify it
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=settings.timeout_s) as r:
            if offset and r.status_code == 416:
                return offset  # nothing left to send: the .part is complete, or wrong
            check_status(r)
            if r.status_code == 200:
                offset = 0  # the server ignored the Range header: start over
            elif content_range_start(r) != offset:
                part.unlink(missing_ok=True)
                got = r.headers.get("Content-Range")
                raise SourceError(f"server resumed at the wrong byte ({got!r} for {offset})",
                                  transient=True)
            length = content_length(r)
            if entry.size is not None and length is not None and offset + length != entry.size:
                raise SourceError(f"server offers {offset + length:,} bytes, expected "
                                  f"{entry.size:,}", transient=False)
            write_body(r, part, offset, entry, settings)
    except BAD_URL_ERRORS as err:
        raise SourceError(f"invalid URL ({err})", transient=False) from err
    except NETWORK_ERRORS as err:
        raise SourceError(describe_network_error(err, settings), transient=True) from err
    return offset


def digest_names(entry: RawFile) -> set[str]:
    return {"sha256", *entry.expected_digests()}


def verified_part(entry: RawFile, part: Path) -> tuple[Digests | None, list[str]]:
    digests = compute_digests(part, digest_names(entry))
    problems = mismatches(entry, digests)
    return (None, problems) if problems else (digests, [])


def fetch_url(session: requests.Session, url: str, entry: RawFile, part: Path,
              settings: FetchSettings) -> Digests:
    """Download `url` into a verified `part`, retrying transient failures; else SourceError."""
    last: SourceError | None = None
    for attempt in range(settings.attempts):
        if attempt:
            time.sleep(settings.backoff_s * 2 ** (attempt - 1))
        try:
            resumed_from = download_once(session, url, entry, part, settings)
        except SourceError as err:
            if not err.transient:
                raise  # e.g. a 404: a .part from an earlier source is kept for the next one
            last = err
            continue
        digests, problems = verified_part(entry, part)
        if digests is not None:
            return digests
        part.unlink(missing_ok=True)
        detail = "; ".join(problems)
        if not resumed_from:
            raise SourceError(f"wrong content ({detail})", transient=False)
        # The kept prefix may be what was wrong: try once more from byte zero.
        last = SourceError(f"wrong content after resuming ({detail})", transient=True)
    assert last is not None
    suffix = f" (after {settings.attempts} attempts)" if settings.attempts > 1 else ""
    raise SourceError(last.reason + suffix, transient=True)


# --- one local copy --------------------------------------------------------------------------

def copy_local(src: Path, entry: RawFile, part: Path, settings: FetchSettings) -> Digests:
    size = src.stat().st_size
    if entry.size is not None and size != entry.size:
        raise SourceError(f"size {size:,} bytes, expected {entry.size:,}", transient=False)
    with open(src, "rb") as fi, open(part, "wb") as fo, \
            progress_bar(entry, size, 0, settings) as bar:
        while block := fi.read(settings.chunk_bytes * 16):
            fo.write(block)
            bar.update(len(block))
    digests, problems = verified_part(entry, part)
    if digests is None:
        part.unlink(missing_ok=True)
        raise SourceError("wrong content (" + "; ".join(problems) + ")", transient=False)
    return digests


# --- one file, one dataset -------------------------------------------------------------------

Fetcher = Callable[[Path], Digests]


def candidate_sources(entry: RawFile, mirrors: Sequence[str], from_dir: Path | None,
                      settings: FetchSettings,
                      session: requests.Session) -> list[tuple[str, Fetcher | None]]:
    """(where, how) pairs in the order to try; `how` is None for a local file that is absent."""
    if from_dir is not None:
        found = [p for p in local_candidates(from_dir, entry) if p.is_file()]
        if not found:
            return [(str(local_candidates(from_dir, entry)[0]), None)]
        src = found[0]
        return [(str(src), lambda part: copy_local(src, entry, part, settings))]
    return [(url, lambda part, url=url: fetch_url(session, url, entry, part, settings))
            for url in source_urls(entry, mirrors)]


def fetch_file(entry: RawFile, data_dir: Path, *, mirrors: Sequence[str] = (),
               from_dir: Path | None = None, settings: FetchSettings = FetchSettings(),
               session: requests.Session) -> FileOutcome:
    dest = entry.local_path(data_dir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # The lock keeps two fetches of the same data directory from writing one .part together.
    with FileLock(str(Path(data_dir) / LOCK_FILENAME)):
        present = verify_path(entry, dest)
        if present.ok:
            return FileOutcome(entry, "present", source=str(dest), sha256=present.sha256)
        attempts = []
        if present.exists:
            dest.unlink()  # never kept, never used
            attempts.append(Attempt(str(dest), "was present but " + present.summary()
                                    + "; deleted"))
        part = part_path(dest)
        for where, fetch in candidate_sources(entry, mirrors, from_dir, settings, session):
            if fetch is None:
                attempts.append(Attempt(where, "not found"))
                continue
            try:
                digests = fetch(part)
            except SourceError as err:
                attempts.append(Attempt(where, err.reason))
                continue
            os.replace(part, dest)
            write_record(dest, digests)
            return FileOutcome(entry, "fetched", source=where, sha256=digests.values["sha256"],
                               attempts=attempts)
        return FileOutcome(entry, "failed", attempts=attempts)


def fetch_dataset(name: str, data_dir: Path, *, catalogue: Catalogue,
                  mirrors: Sequence[str] = (), from_dir: Path | None = None,
                  settings: FetchSettings = FetchSettings(),
                  session: requests.Session | None = None) -> DatasetOutcome:
    """Every file of one dataset; files that succeed are kept even if another fails."""
    with _session(session) as s:
        files = [fetch_file(e, Path(data_dir), mirrors=mirrors, from_dir=from_dir,
                            settings=settings, session=s) for e in catalogue.dataset(name)]
    return DatasetOutcome(name, files)


@contextmanager
def _session(session: requests.Session | None) -> Iterator[requests.Session]:
    if session is not None:
        yield session
        return
    with requests.Session() as fresh:
        fresh.headers["User-Agent"] = USER_AGENT
        yield fresh


# --- messages and the command ----------------------------------------------------------------

def fetch_command_line(name: str, data_dir: Path) -> str:
    from benchmark.data.splits import fetch_hint  # the one spelling of the command

    return fetch_hint(name, data_dir)


def unavailable_message(outcome: DatasetOutcome, data_dir: Path) -> str:
    """Every source tried with its reason, and where to put the files by hand."""
    failed = outcome.failed
    lines = [f"{outcome.name}: could not fetch {len(failed)} of {len(outcome.files)} files; "
             "every source failed:"]
    for f in failed:
        lines.append(f"  {f.entry.relpath}:")
        lines += [f"    {a.source}: {a.reason}" for a in f.attempts] or ["    no source to try"]
    folders = sorted({str(raw_dir(Path(data_dir)).resolve() / f.entry.folder) for f in failed})
    lines.append(f"  To place them by hand, put these files in {', '.join(folders)}/ :")
    lines += [f"    {f.entry.name} ({f.entry.describe_checks()})" for f in failed]
    lines.append(f"  then run `{fetch_command_line(outcome.name, data_dir)}` to verify them.")
    return "\n".join(lines)


def success_line(outcome: DatasetOutcome, data_dir: Path) -> str:
    fetched = sum(f.status == "fetched" for f in outcome.files)
    folders = sorted({str(raw_dir(Path(data_dir)) / f.entry.folder) for f in outcome.files})
    return (f"{outcome.name}: {len(outcome.files)} files verified in {', '.join(folders)} "
            f"({fetched} fetched, {len(outcome.files) - fetched} already present)")


def expand_names(names: Sequence[str], catalogue: Catalogue) -> list[str]:
    wanted = list(catalogue.dataset_names) if not names or "all" in names else list(names)
    for name in wanted:
        catalogue.dataset(name)  # raises a UserError for an unknown name
    return list(dict.fromkeys(wanted))


def fetch_command(names: list[str], data_dir: Path, mirrors: list[str], from_dir: Path | None,
                  *, catalogue: Catalogue | None = None, settings: FetchSettings | None = None,
                  session: requests.Session | None = None) -> int:
    """Fetch and verify the named datasets ('all' for every one); UserError if any failed."""
    data_dir = Path(data_dir)
    catalogue = catalogue or load_catalogue(data_dir)
    settings = settings or FetchSettings()
    check_mirrors(mirrors)
    if from_dir is not None and not Path(from_dir).is_dir():
        raise UserError(f"--from {from_dir}: no such folder")
    if catalogue.origin != "built-in":
        print(f"using the dataset catalogue {catalogue.origin}")
    outcomes = []
    try:
        with _session(session) as s:
            for name in expand_names(names, catalogue):
                outcome = fetch_dataset(name, data_dir, catalogue=catalogue, mirrors=mirrors,
                                        from_dir=from_dir, settings=settings, session=s)
                if outcome.ok:
                    print(success_line(outcome, data_dir), flush=True)
                outcomes.append(outcome)
    except OSError as err:
        if isinstance(err, NETWORK_ERRORS):
            raise
        raise UserError(f"cannot write under {data_dir}: {err}") from err
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return 0
    messages = [unavailable_message(o, data_dir) for o in failed]
    if len(outcomes) > 1:
        kept = ", ".join(o.name for o in outcomes if o.ok) or "none"
        messages.insert(0, f"{len(failed)} of {len(outcomes)} datasets could not be fetched "
                           f"({', '.join(o.name for o in failed)}); datasets complete: {kept}.")
    raise UserError("\n".join(messages))

