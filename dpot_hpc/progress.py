"""Per-member log files and progress lines (no global logging state)."""

from __future__ import annotations

import enum
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path


class Verbosity(enum.IntEnum):
    """How much goes to the terminal: QUIET (warnings, errors, results), NORMAL (run and stage progress,
    and the training lines of the members on MPI rank 0), VERBOSE (training lines from every rank).
    Member log files are written whatever the verbosity."""

    QUIET = 0
    NORMAL = 1
    VERBOSE = 2


def format_duration(seconds: float) -> str:
    """A duration as progress lines show it: '42 s' below 90 s, else minutes ('1.5 min')."""
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def emit(line: str) -> None:
    """Write one progress line to stderr in a single write, so that lines from MPI ranks sharing a
    stream never interleave mid-line (print() writes text and newline separately when Python's
    output is unbuffered, as PYTHONUNBUFFERED=1 in the container makes it)."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


#: What run-level progress lines start with.
PREFIX = "dpot-hpc: "


def say(msg: str) -> None:
    """A run-level progress line, prefixed with the program's name."""
    emit(PREFIX + msg)


def progress_log(verbosity: Verbosity, prefix: str = PREFIX) -> Callable[[str], None]:
    """The function progress lines go through: stderr with the prefix, or nowhere when QUIET."""
    if verbosity == Verbosity.QUIET:
        return lambda msg: None
    return lambda msg: emit(prefix + msg)


class MemberLog:
    """Writes timestamped lines to a member's log file and, optionally, to stderr."""

    def __init__(self, path: str | Path | None, name: str, echo: bool = True):
        self.name = name
        self.echo = echo
        self.t0 = time.monotonic()
        self.logger = logging.getLogger(f"dpot_hpc.member.{name}.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self._handler = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._handler = logging.FileHandler(path)
            self._handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
            self.logger.addHandler(self._handler)

    def __call__(self, msg: str) -> None:
        self.logger.info(msg)
        if self.echo:
            emit(f"[{self.name} {time.monotonic() - self.t0:7.1f}s] {msg}")

    def close(self) -> None:
        if self._handler is not None:
            self.logger.removeHandler(self._handler)
            self._handler.close()
            self._handler = None

