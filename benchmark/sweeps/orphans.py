"""Worker processes that end with the sweep that started them.

A sweep killed with SIGKILL has no chance to stop its pool; its workers would go on training as
orphans, and the next sweep, finding the dead sweep's locks, would train the same runs beside
them. So each worker process, as it starts, asks the kernel for SIGKILL when its parent dies
(Linux prctl PR_SET_PDEATHSIG), and a watchdog thread also ends it once its parent pid is no
longer its parent (other systems; and the instant before the prctl took effect). A run killed so
resumes from its last checkpoint, as after any kill. What still protects a run when this fails
(a worker on another host, a process started by hand) is its training lock
(benchmark.records.training_lock), which the next sweep respects.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1  # linux/prctl.h
WATCHDOG_EVERY_S = 1.0


def die_with_parent(parent_pid: int) -> None:
    """Process initializer: end this process when `parent_pid` (its parent) dies."""
    if sys.platform.startswith("linux"):
        request_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)
    threading.Thread(target=watch_parent, args=(parent_pid,), name="parent-watchdog",
                     daemon=True).start()


def request_death_signal() -> bool:
    """Ask Linux to SIGKILL this process when the thread that created it ends; False when the
    C library cannot be reached (the watchdog still works)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCHDOG_EVERY_S)
    os._exit(1)  # no cleanup: like the kill it stands in for; checkpoints are atomic
