"""A lock per run directory, so that two sweeps never train the same run at the same time.

The lock is a file, `<run_dir>/.sweep.lock`, created atomically with O_CREAT | O_EXCL and holding
the owner's pid, hostname, start time and a random token. It is advisory: only sweeps look at it.

A lock whose owner is a dead process on this host is stale and is taken over, unless some process
still trains the run (it holds the run's training lock, benchmark.records.training_lock: a worker
of a sweep killed without a chance to stop it). A run that a process trains is never taken, lock
file or not. A lock held by a process on another host cannot be checked from here, so it is
always respected; if that host is gone for good, delete the file by hand (the message says where
it is).

Taking over a stale lock happens under a short-lived `filelock` on `<run_dir>/.sweep.lock.guard`,
so that two sweeps finding the same stale lock cannot both decide to take it over.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import filelock

from benchmark.records import TRAINING_LOCK_FILE, TrainingLock, is_being_trained

LOCK_FILE = ".sweep.lock"
GUARD_FILE = ".sweep.lock.guard"
# A lock file is created empty and written right after; one that stays unreadable for longer than
# this was left by a process that died in between.
UNREADABLE_GRACE_S = 60.0


@dataclass(frozen=True)
class LockInfo:
    pid: int
    hostname: str
    started: str
    token: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.hostname} since {self.started}"


def current_owner() -> LockInfo:
    return LockInfo(
        pid=os.getpid(),
        hostname=socket.gethostname(),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        token=secrets.token_hex(8),
    )


def read_lock(path: Path) -> LockInfo | None:
    """The owner written in a lock file, or None when it is missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return LockInfo(int(data["pid"]), str(data["hostname"]), str(data["started"]),
                        str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_is_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def lock_is_stale(path: Path, info: LockInfo | None) -> bool:
    """True when the lock's owner is known to be gone (a dead pid on this very host)."""
    if info is None:
        try:
            age = time.time() - Path(path).stat().st_mtime
        except FileNotFoundError:
            return True
        return age > UNREADABLE_GRACE_S
    return info.hostname == socket.gethostname() and not pid_is_alive(info.pid)


def create_lock_file(path: Path, owner: LockInfo) -> bool:
    """Create the lock file atomically; False when it already exists."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(asdict(owner), fh)
        fh.flush()
        os.fsync(fh.fileno())
    return True


class RunDirLock:
    """Exclusive right to train one run directory. Use `acquire()`; `holder` says who has it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.holder: LockInfo | None = None
        self.trainer_pid: int | None = None  # set when a process is found training the run
        self._owner: LockInfo | None = None

    @property
    def held(self) -> bool:
        return self._owner is not None

    def acquire(self) -> bool:
        """Take the lock (taking over a stale one); False when a live process holds it."""
        if self.held:
            return True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        owner = current_owner()
        if not (create_lock_file(self.path, owner) or self._take_over_if_stale(owner)):
            return False
        self._owner, self.holder = owner, owner
        trainer = TrainingLock(self.run_dir)
        if is_being_trained(self.run_dir):  # e.g. by `train --out` there, or an orphaned worker
            self.release()
            self.trainer_pid = trainer.holder_pid() or 0
            return False
        return True

    def _take_over_if_stale(self, owner: LockInfo) -> bool:
        with filelock.FileLock(str(self.run_dir / GUARD_FILE), timeout=30):
            # Read again under the guard: the lock may have been released or replaced meanwhile.
            info = read_lock(self.path)
            self.holder = info
            if self.path.exists() and not lock_is_stale(self.path, info):
                return False
            self.path.unlink(missing_ok=True)
            if create_lock_file(self.path, owner):
                return True
            # A sweep that never saw the stale lock created a fresh one in between.
            self.holder = read_lock(self.path)
            return False

    def release(self) -> None:
        """Remove the lock file, but only if it is still ours."""
        if self._owner is None:
            return
        info = read_lock(self.path)
        if info is not None and info.token == self._owner.token:
            self.path.unlink(missing_ok=True)
        self._owner = None

    def describe_holder(self) -> str:
        if self.trainer_pid is not None:
            who = f"process {self.trainer_pid}" if self.trainer_pid else "another process"
            return f"being trained by {who} ({self.run_dir / TRAINING_LOCK_FILE})"
        who = self.holder.describe() if self.holder else "an unknown process"
        return f"locked by {who} ({self.path})"

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
