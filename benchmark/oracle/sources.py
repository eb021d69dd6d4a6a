"""Where the authors' code comes from: their nine files at commit 78a6075, fetched like a
dataset (benchmark.data.fetch: canonical URL, then mirrors, or --from a local folder), checked
against sha256, size and git blob id, into a git-ignored cache. Never vendored: the repository
github:yburda/iwae carries no licence."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from benchmark.data import Catalogue, RawFile, fetch_dataset, raw_dir
from benchmark.errors import UserError

COMMIT = "78a6075484bd7dd6f47a4bb9880d2295bc7a5220"
CANONICAL_BASE = f"https://raw.githubusercontent.com/yburda/iwae/{COMMIT}/"
MIRROR_BASES = (f"https://github.com/yburda/iwae/raw/{COMMIT}/",)
DATASET = "authors-code"
DEFAULT_CACHE = Path("datasets") / "authors-code"
SHARED_MIRROR = Path("..") / "shared" / "reference" / "authors-code" / "files"

# (file, size in bytes, sha256, git blob id): the mirror's SHA256SUMS and README at that commit.
FILES = (
    ("config.py", 55, "c2f21c0f2d5dac1364a3b356bd92f5645defdb1a78bd998b0cfab8aa99237d56",
     "5d40353ac2646249f1aa1aeaaf0c563368b139b2"),
    ("datasets.py", 4863, "a3426b853fa7245421625a71d4fe464c86ad68de9d020380c5b1f84f14e4886b",
     "1d8eee4bc439f5b4fa8d3a848d9548e5014cf049"),
    ("experiments.py", 8749, "d8935ecca43108995de63547e3d1f723f424683d0fd18b6325203cf12729257e",
     "2f212d6fccb25a345cc3a227bb4cd144735cfe03"),
    ("iwae.py", 12970, "ba5e09c02f92b0495aea527b6942d00ffc0ef91296b2f60004006011079f07f2",
     "ccb56aba238db5fc0d377c2769023dd27fe742de"),
    ("nnet.py", 2768, "c9549456db18e1f47f6fa27c41ebf0e8ff56d86c3f1cec629a44b5104ebeb958",
     "9714e796a1d173a52acbb47204f04460950878d5"),
    ("optimizers.py", 2084, "87425caa5d2511dd529b6341603bc1111b243b51549d972d50143735046df519",
     "c8b8ac4e644508781220ab17b7fa490c69f360ae"),
    ("train.py", 892, "0a6c02610b54d2f0e52e3c756ca54643b4c3715290138e87875fde5563b6d19f",
     "a384554d093adff594eaaeae922ff7ee471afe2e"),
    ("utils.py", 2088, "0ef062cd9f640278223e8fe0db115f00561beb4119cc91d75101328d93ae1ab3",
     "cd445fd5f98e28522287390c3e576d896a533eaa"),
)

CATALOGUE = Catalogue(files=tuple(
    RawFile(DATASET, name, CANONICAL_BASE + name, tuple(m + name for m in MIRROR_BASES),
            size, sha256, git_blob=blob)
    for name, size, sha256, blob in FILES), origin="built-in (authors' code)")


def default_from_dir() -> Path | None:
    """$IWAE_ORACLE_FROM, else the shared mirror beside this checkout when there is one."""
    if value := os.environ.get("IWAE_ORACLE_FROM"):
        return Path(value)
    return SHARED_MIRROR.resolve() if SHARED_MIRROR.is_dir() else None


def default_cache() -> Path:
    return Path(os.environ.get("IWAE_ORACLE_CACHE", DEFAULT_CACHE))


def fetch_authors_code(cache: Path, from_dir: Path | None = None,
                       mirrors: Sequence[str] = ()) -> Path:
    """The folder holding their verified modules (fetched into cache/raw/ unless present)."""
    outcome = fetch_dataset(DATASET, cache, catalogue=CATALOGUE, mirrors=mirrors,
                            from_dir=from_dir)
    if not outcome.ok:
        failed = outcome.failed[0]
        reason = (f"{failed.entry.name}: {failed.attempts[-1].source}: "
                  f"{failed.attempts[-1].reason}" if failed.attempts else failed.entry.name)
        raise UserError(f"the authors' code could not be fetched ({len(outcome.failed)} of "
                        f"{len(outcome.files)} files; {reason}); pass --from DIR or set "
                        "IWAE_ORACLE_FROM to a folder holding their files (github:yburda/iwae "
                        f"at {COMMIT[:7]})")
    return raw_dir(cache)
