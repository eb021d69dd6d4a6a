"""The one exception type for mistakes a user can fix (bad flag, missing data, corrupt file), and
the one line said about a file system that refuses a write (full, read-only, not a folder)."""

from __future__ import annotations

import errno


class UserError(Exception):
    """Printed by the CLI as a single line on stderr (no traceback), exit status 2."""


_RERUN = "run the same command again: training resumes from its last checkpoint"
# What a user can do about each file-system error a command may meet while writing its results.
FILESYSTEM_ADVICE = {
    errno.ENOSPC: f"free some space there (or choose another --results / --out), then {_RERUN}",
    errno.EDQUOT: f"free some of your quota (or choose another --results / --out), then {_RERUN}",
    errno.EROFS: "that file system is read-only: choose a writable --results / --out",
    errno.EACCES: "no permission to write there: choose another --results / --out, or fix the "
                  "folder's permissions",
    errno.EPERM: "the operation is not permitted there: choose another --results / --out",
    errno.ENOTDIR: "a file stands where a folder is needed: move it away or choose another path",
    errno.EEXIST: "a file stands where a folder is needed: move it away or choose another path",
    errno.EISDIR: "a folder stands where a file is needed: move it away or choose another path",
    errno.EIO: f"the storage reported an I/O error: check the disk, then {_RERUN}",
}


def filesystem_error_line(err: OSError) -> str | None:
    """One line naming the path and the fix for a file-system error; None for other OSErrors
    (those are bugs, and keep their traceback)."""
    advice = FILESYSTEM_ADVICE.get(err.errno or 0)
    if advice is None:
        return None
    where = f": {err.filename}" if err.filename else ""
    return f"{err.strerror or err}{where}; {advice}"
