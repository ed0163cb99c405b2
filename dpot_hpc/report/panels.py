"""Small plotting helpers shared by the report's figures (matplotlib objects in, nothing written)."""

from __future__ import annotations

import numpy as np

#: Colour scale limit of significance maps (values beyond are drawn at the limit).
SIGNIFICANCE_LIMIT = 5.0


def finite(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float).ravel()
    return v[np.isfinite(v)]


def symmetric_limit(values: np.ndarray, percentile: float = 98.0, cap: float | None = None) -> float:
    """A symmetric colour limit: the given percentile of |values| (finite ones), at most ``cap``."""
    v = np.abs(finite(values))
    lim = float(np.percentile(v, percentile)) if v.size else 1.0
    lim = lim if lim > 0 else 1.0
    return min(lim, cap) if cap else lim


def robust_range(values: np.ndarray, lo: float = 2.0, hi: float = 98.0) -> tuple[float, float]:
    """The lo-hi percentile range of the finite values."""
    v = finite(values)
    if not v.size:
        return 0.0, 1.0
    a, b = np.percentile(v, [lo, hi])
    return (float(a), float(b)) if b > a else (float(a) - 0.5, float(a) + 0.5)


def mesh(ax, edges_a: np.ndarray, edges_b: np.ndarray, values: np.ndarray, **kw):
    """pcolormesh of values indexed [i_a, j_b] (first coordinate on the horizontal axis)."""
    return ax.pcolormesh(edges_a, edges_b, np.ma.masked_invalid(values).T, shading="flat", rasterized=True, **kw)


def colorbar(fig, mappable, ax, label: str):
    cb = fig.colorbar(mappable, ax=ax, shrink=0.9, pad=0.01)
    cb.set_label(label)
    return cb


def label_projection(axes, proj, equal_aspect: bool) -> None:
    """Axis labels of a projection (``projections.Projection``) on each of ``axes``, at most 5 x ticks;
    equal scales on both axes where ``equal_aspect`` (positions against positions)."""
    for ax in axes:
        ax.set_xlabel(proj.xlabel)
        ax.set_ylabel(proj.ylabel)
        ax.locator_params(axis="x", nbins=5)
        if equal_aspect:
            ax.set_aspect("equal")
