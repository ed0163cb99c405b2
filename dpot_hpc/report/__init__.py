"""The report of a run: PNG figures and an offline index.html (``dpot-hpc report``; needs the
optional ``plots`` extra, matplotlib)."""

from .build import write_report
from .mpl import NOTICE, PlotsUnavailable, available

__all__ = ["NOTICE", "PlotsUnavailable", "available", "write_report"]
