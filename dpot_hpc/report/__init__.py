"""The report of a run: PNG figures and an offline index.html (``dpot-hpc report``; needs the
optional ``plots`` extra, matplotlib, which the first figure imports)."""

from .availability import NOTICE, PlotsUnavailable, available
from .build import write_report

__all__ = ["NOTICE", "PlotsUnavailable", "available", "write_report"]
