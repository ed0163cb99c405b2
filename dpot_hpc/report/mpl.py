"""matplotlib when it is installed (the optional ``plots`` extra): figures without pyplot (no global
backend: the Agg canvas), plain text rendering (no LaTeX, no style files), atomic PNG writes."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

try:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
except ImportError:  # the plots extra is not installed
    matplotlib = LogNorm = None

#: The one line printed when the report is skipped.
NOTICE = "report skipped: matplotlib is not installed (pip install 'dpot-hpc[plots]')"

#: rcParams of every report figure (whatever the user's matplotlibrc says).
RC = {"text.usetex": False, "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5,
      "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "image.cmap": "viridis", "axes.grid": False, "savefig.dpi": 100, "figure.dpi": 100}
#: Resolution of the written PNGs, dots per inch.
DPI = 90


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed."""


def available() -> bool:
    """Whether matplotlib can be imported."""
    return matplotlib is not None


def style():
    """Context manager: the report's rcParams."""
    if matplotlib is None:
        raise PlotsUnavailable(NOTICE)
    return matplotlib.rc_context(RC)


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure of that size (inches) on an Agg canvas."""
    if matplotlib is None:
        raise PlotsUnavailable(NOTICE)
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write fig as PNG to path atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path
