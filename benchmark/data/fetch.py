"""`python -m benchmark fetch`: download (or copy) the raw files and verify them.

For each file of a dataset, sources are tried in order: every --mirror (a base URL laid out like
datasets/raw/: mnist/, binarized_mnist/, omniglot/), the canonical URL, then the public mirrors;
or, with --from DIR, only the local folder DIR. A download streams into `<file>.part`, resumes
an interrupted .part with an HTTP Range request, retries transient failures with exponential
backoff, and becomes `<file>` by an atomic rename only after its size and every known digest
match the catalogue. A file that fails its check is deleted. A verified file is never fetched
again (see sources.py for how the verification is recorded and when the record is trusted).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests
from filelock import FileLock

from benchmark.data.sources import (
    Catalogue,
    Digests,
    RawFile,
    load_catalogue,
    part_path,
    raw_dir,
    verify_path,
    write_record,
)
from benchmark.data.transfer import (
    NETWORK_ERRORS,
    USER_AGENT,
    FetchSettings,
    SourceError,
    copy_local,
    fetch_url,
)
from benchmark.errors import UserError

LOCK_FILENAME = ".fetch.lock"


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
    # A folder laid out like datasets/raw/ (mnist/, binarized_mnist/, omniglot/), or another
    # data directory (with raw/).
    return [Path(from_dir) / entry.relpath, raw_dir(from_dir) / entry.relpath]


def check_mirrors(mirrors: Sequence[str]) -> None:
    for m in mirrors:
        if not m.startswith(("http://", "https://")):
            raise UserError(f"--mirror {m}: expected an http(s) base URL laid out like "
                            "datasets/raw/ (mnist/, binarized_mnist/, omniglot/); for a local "
                            "folder use --from DIR")


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
    from benchmark.data.splits import fetch_hint

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

