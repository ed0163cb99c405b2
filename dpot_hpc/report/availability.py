"""Whether the report can be drawn: matplotlib (the optional ``plots`` extra) is looked up, not
imported, so that importing the CLI stays cheap."""

from __future__ import annotations

from importlib.util import find_spec

#: The one line printed when the report is skipped.
NOTICE = "report skipped: matplotlib is not installed (pip install 'dpot-hpc[plots]')"


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def available() -> bool:
    """Whether matplotlib is installed (and not blocked by a None entry in sys.modules)."""
    return find_spec("matplotlib") is not None
