"""The lock a process holds on a run directory for as long as it trains it.

It is an OS lock (flock) on `<run_dir>/.training.lock`, so it ends with the process that holds
it, however that process ends (SIGKILL included): no process can judge it stale while its holder
lives, and none needs to clear it after a crash. The file also holds the holder's pid, for the
message of whoever finds it taken.

The sweep's own lock (benchmark.sweeps.locks) says which sweep owns a run; this one says that
some process is training it right now, which is what the sweep asks before it takes over a lock
whose sweep has died (its workers may still be training).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

TRAINING_LOCK_FILE = ".training.lock"
# is_being_trained takes the lock shared for an instant; a trainer starting at that very moment
# waits this long for it rather than report the run as busy.
ACQUIRE_PATIENCE_S = 1.0


class TrainingLock:
    """Held while training `run_dir`; `acquire()` is False when another process holds it."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / TRAINING_LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + ACQUIRE_PATIENCE_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.05)
            except BaseException:
                os.close(fd)
                raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        """Unlock (the file stays: removing it would race with a process opening it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder_pid(self) -> int | None:
        """The pid written by the process that holds (or last held) the lock."""
        try:
            return int(self.path.read_text(encoding="ascii").strip() or 0) or None
        except (OSError, ValueError):
            return None

    def __enter__(self) -> TrainingLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_being_trained(run_dir: Path) -> bool:
    """True when a live process holds run_dir's training lock (tried without waiting)."""
    path = Path(run_dir) / TRAINING_LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock taken for the test, if any
    return False
