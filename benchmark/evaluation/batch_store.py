"""The finished batches of a long evaluation, kept on disk so that an interrupted one resumes.

One folder per evaluation: settings.json says what the batches were computed with (model digest
included), and each finished batch is one .npz written atomically. A folder whose settings differ
from the evaluation now asked for holds nothing reusable and is emptied; a batch file that does not
load (a disk that filled up) is computed again.
"""

from __future__ import annotations

import io
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.records import atomic_write, atomic_write_json, read_json

SETTINGS_FILE = "settings.json"


class BatchStore:
    def __init__(self, folder: Path, settings: dict[str, Any]) -> None:
        self.folder = Path(folder)
        settings_path = self.folder / SETTINGS_FILE
        try:
            previous = read_json(settings_path)
        except (OSError, ValueError):
            previous = None
        if previous != settings:
            self.remove()
            atomic_write_json(settings_path, settings)

    def _path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        try:
            # allow_pickle=False: a batch file holds numbers; an object array would run code
            with np.load(self._path(key), allow_pickle=False) as data:
                return {name: data[name] for name in data.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write(self._path(key), lambda fh: fh.write(buffer.getvalue()))

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
