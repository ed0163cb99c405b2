"""The DF check (the paper's Figure 9): stars against samples of the best-fit flow ensemble, binned
in the three projections, with the Poisson significance of their difference (pure functions)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..physics.frames import SunFrame
from .binned import counts, poisson_significance
from .projections import PROJECTIONS, bins_per_axis, edges, project


@dataclass(frozen=True)
class BinnedComparison:
    """One projection: bin edges, star counts, flow counts renormalised to the stars' number, and
    the significance (``binned.poisson_significance``); arrays indexed [i_a, j_b]."""

    edges_a: np.ndarray
    edges_b: np.ndarray
    n_data: np.ndarray
    n_flow: np.ndarray
    significance: np.ndarray


def inside(w: np.ndarray, r_max_kpc: float) -> np.ndarray:
    """The points of w (N, 6) with |x| < r_max_kpc."""
    return w[np.linalg.norm(w[:, :3], axis=1) < r_max_kpc]


def compare(data: np.ndarray, model: np.ndarray, sun: SunFrame, r_max_kpc: float,
            n_bins: int | None = None) -> dict[str, BinnedComparison]:
    """Stars ``data`` (N, 6) against model samples ``model`` (M, 6), both heliocentric (kpc, km/s),
    over the ball |x| < r_max_kpc, in every projection. The model counts are scaled by N / M (the
    numbers inside the ball); bins per axis from ``bins_per_axis(N)`` unless given."""
    data, model = inside(data, r_max_kpc), inside(model, r_max_kpc)
    if len(data) == 0 or len(model) == 0:
        raise ValueError(f"the DF check needs stars and flow samples within {r_max_kpc} kpc "
                         f"(got {len(data)} stars, {len(model)} samples)")
    scale = len(data) / len(model)
    n_bins = n_bins or bins_per_axis(len(data))
    out = {}
    for name in PROJECTIONS:
        da, db = project(data, name, sun)
        ma, mb = project(model, name, sun)
        ea, eb = edges(name, da, db, r_max_kpc, n_bins)
        nd, nm = counts(da, db, ea, eb), counts(ma, mb, ea, eb)
        out[name] = BinnedComparison(ea, eb, nd, scale * nm, poisson_significance(nd, nm, scale))
    return out
