"""matplotlib when it is installed (the optional ``plots`` extra): figures without pyplot (no global
backend: the Agg canvas), plain text rendering (no LaTeX, no style files), atomic PNG writes.
matplotlib is imported by the first figure, not with this module, so that the CLI, which imports the
report package, starts without it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .availability import NOTICE, PlotsUnavailable

if TYPE_CHECKING:
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

#: rcParams of every report figure (whatever the user's matplotlibrc says).
RC = {"text.usetex": False, "font.family": "DejaVu Sans", "font.size": 8, "axes.titlesize": 8.5,
      "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7, "ytick.labelsize": 7,
      "image.cmap": "viridis", "axes.grid": False, "savefig.dpi": 100, "figure.dpi": 100}
#: Resolution of the written PNGs, dots per inch.
DPI = 90


def _matplotlib():
    """The matplotlib module; PlotsUnavailable when it cannot be imported."""
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable(NOTICE) from None
    return matplotlib


def style():
    """Context manager: the report's rcParams."""
    return _matplotlib().rc_context(RC)


def new_figure(width_in: float, height_in: float) -> Figure:
    """A figure of that size (inches) on an Agg canvas."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def log_norm(vmin: float, vmax: float) -> LogNorm:
    """A logarithmic colour scale from vmin to vmax."""
    _matplotlib()
    from matplotlib.colors import LogNorm

    return LogNorm(vmin=vmin, vmax=vmax)


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
