"""One file's transfer into its `.part`: over HTTP (streamed, resumed with a Range request,
retried with backoff when the failure is transient) or copied from a local folder; either way
verified against the catalogue's size and digests before the caller renames it into place."""

from __future__ import annotations

import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from tqdm import tqdm

from benchmark.data.sources import Digests, RawFile, compute_digests, mismatches

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
