"""A run folder from elsewhere is read, never trusted: every path taken from a record, or found in
the folder, must stay inside the folder once links are followed, and the folders below a results
folder are searched without following links.

A folder someone else made can hold `samples.npy -> /home/you/.ssh/id_rsa` or a record naming
`../../elsewhere`; reading either would show the report's reader a file that is not the run's.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath


class RecordError(ValueError):
    """A file of a run folder that is refused; the message is one line saying why."""


def relative_name_problem(name: object) -> str | None:
    """Why `name`, as recorded, is not a path inside a run folder (None when it is one): it must
    be a relative path without '..' (on any platform's separators)."""
    if not isinstance(name, str) or not name:
        return "not a file name"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and parts[0].endswith(":")) or ".." in parts:
        return f"{name[:80]!r} leads outside the run folder"
    return None


def inside(run_dir: Path, name: str) -> Path:
    """run_dir / name, when it names a file inside run_dir once every link is followed;
    RecordError otherwise (a recorded '..', an absolute path, a link leading out)."""
    problem = relative_name_problem(name)
    if problem:
        raise RecordError(problem)
    path = Path(run_dir) / name
    root, real = Path(run_dir).resolve(), path.resolve()
    if real != root and root not in real.parents:
        raise RecordError(f"a link leading outside the run folder (to {real}); not followed")
    return path


def links_leading_out(run_dir: Path) -> list[str]:
    """'name -> target' of every link in the run folder, at any depth, that leads outside it."""
    root = Path(run_dir).resolve()
    found = []
    for folder, dirs, files in os.walk(run_dir, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if path.is_symlink():
                real = path.resolve()
                if real != root and root not in real.parents:
                    found.append(f"{path.relative_to(run_dir)} -> {real}")
    return found


def find_files(results_dir: Path, filename: str) -> list[Path]:
    """Every file called `filename` below results_dir, in a stable order; linked folders are not
    entered (a link in a copied results folder could lead anywhere on this machine)."""
    found = []
    for folder, dirs, files in os.walk(results_dir, followlinks=False):
        dirs.sort()
        if filename in files:
            found.append(Path(folder) / filename)
    return sorted(found)
