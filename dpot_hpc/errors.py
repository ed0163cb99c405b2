"""The errors a user can act on. Each is reported as one line naming the file, key or column, the
cause and what to do, without a traceback; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import errno
from pathlib import Path


class DpotError(Exception):
    """A problem the user can fix: bad input, an incompatible or corrupt file, a full or read-only disk."""


class DpotWarning(UserWarning):
    """Something valid but probably not what was meant (shown once, on rank 0, as one line)."""


class InputError(DpotError, ValueError):
    """A command-line argument or input file (other than the catalogue and the config) is unusable."""


class OutputError(DpotError, OSError):
    """A file could not be written (no space left, read-only file system, permission denied)."""


_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_failure(path: str | Path, exc: BaseException) -> OutputError:
    """An OutputError for a failed write of ``path``, naming the cause (also when HDF5 reports the
    errno only inside its message) and what to do."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code not in _CAUSES:
        code = next((c for c in _CAUSES if f"errno = {c}," in text or f"[Errno {c}]" in text), code)
    if code not in _CAUSES and "No space left" in text:
        code = errno.ENOSPC
    cause = _CAUSES.get(code, text.strip().splitlines()[0] if text.strip() else type(exc).__name__)
    hint = ("free some space (or move the run folder) and run the same command again: finished work is kept"
            if code in (errno.ENOSPC, errno.EDQUOT) else "make the folder writable or choose another run.dir")
    err = OutputError(f"cannot write {path}: {cause}; {hint}")
    err.errno = code
    return err
