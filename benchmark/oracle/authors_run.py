"""Running the Python 2 driver (py2/driver.py) on a job of tasks, and reading its progress."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.oracle.environment import DRIVER, theano_flags
from benchmark.records import atomic_write_json

Progress = Callable[[str, dict[str, Any]], None]  # (job label, event)


@dataclass(frozen=True)
class Job:
    label: str  # e.g. "float32"
    float_type: str  # Theano floatX
    tasks: list[dict[str, Any]]  # each with "task" and "folder"
    folder: Path  # the job file, its log and the authors' scratch results go here


class DriverFailed(RuntimeError):
    pass


def run_jobs(python: Path, env: Path, code_dir: Path, datasets_dir: Path, jobs: Sequence[Job],
             on_event: Progress) -> None:
    """Runs the jobs side by side (one process each: Theano's floatX is per process) and
    waits for all; a task that fails is reported in its folder's result.json."""
    processes = []
    for job in jobs:
        job.folder.mkdir(parents=True, exist_ok=True)
        (job.folder / "authors-results").mkdir(exist_ok=True)
        path = job.folder / "job.json"
        atomic_write_json(path, {"code_dir": str(code_dir.resolve()),
                                 "datasets_dir": str(datasets_dir.resolve()),
                                 "results_dir": str((job.folder / "authors-results").resolve()),
                                 "tasks": [dict(t, folder=str(Path(t["folder"]).resolve()))
                                           for t in job.tasks]})
        log = open(job.folder / "driver.log", "w")  # noqa: SIM115 - closed after wait
        environment = dict(os.environ, THEANO_FLAGS=theano_flags(env, job.float_type))
        process = subprocess.Popen([str(python), str(DRIVER), str(path)], stdout=subprocess.PIPE,
                                   stderr=log, text=True, env=environment)
        reader = threading.Thread(target=_read_events, args=(process, job, on_event),
                                  daemon=True)
        reader.start()
        processes.append((process, reader, log, job))
    for process, reader, log, job in processes:
        process.wait()
        reader.join()
        log.close()
        if process.returncode not in (0, 1):  # 1: some task failed, and said so
            raise DriverFailed(f"the authors' code ({job.label}) stopped with status "
                               f"{process.returncode}; see {job.folder / 'driver.log'}")


def _read_events(process: subprocess.Popen, job: Job, on_event: Progress) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        try:
            on_event(job.label, json.loads(line))
        except json.JSONDecodeError:
            continue
