"""The CBE residual of the best-estimate potential over the gradient cache ("where the fitted
potential fails to make f stationary"), binned in the three projections.

r = d ln f / dt along orbits in the frame rotating at Omega_p (``physics.cbe``), km/s/kpc, with the
cache's mean gradients of ln f, the median acceleration over the best-estimate members and their
median Omega_p. Per bin: the mean residual and its significance, mean / (standard deviation /
sqrt(count)), i.e. how far the mean residual of the bin's cache points is from zero in units of its
own standard error (``binned.binned_mean_significance``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..ensemble.members import PotentialMember
from ..models.potential import acceleration
from ..physics.cbe import residual_heliocentric
from ..physics.frames import SunFrame
from .binned import binned_mean_significance
from .projections import PROJECTIONS, bins_per_axis, edges, project

#: Fewest cache points for a bin's mean residual to be shown.
MIN_POINTS_PER_BIN = 10


@dataclass(frozen=True)
class ResidualMap:
    """One projection: bin edges, mean residual [km/s/kpc], its significance and the point count."""

    edges_a: np.ndarray
    edges_b: np.ndarray
    mean: np.ndarray
    significance: np.ndarray
    count: np.ndarray


def best_residual(cache: dict[str, torch.Tensor], members: list[PotentialMember]) -> np.ndarray:
    """The residual (km/s/kpc) at every cache point of the median potential of ``members`` (median
    acceleration, median Omega_p, the first member's Sun: the best-estimate members share it)."""
    x = cache["x"].to(torch.float64)
    accel = torch.from_numpy(np.median(np.stack([acceleration(m.net, x).numpy() for m in members]), axis=0))
    omega = torch.tensor(float(np.median([m.omega_p_kms_kpc for m in members])), dtype=torch.float64)
    r = residual_heliocentric(x, cache["v"].to(x), cache["grad_x"].to(x), cache["grad_v"].to(x), accel, omega,
                              members[0].sun)
    return r.numpy()


def residual_maps(w: np.ndarray, r: np.ndarray, sun: SunFrame, r_max_kpc: float) -> dict[str, ResidualMap]:
    """Binned mean and significance of residuals r (N,) at phase-space points w (N, 6) in every projection."""
    n_bins = bins_per_axis(len(w))
    out = {}
    for name in PROJECTIONS:
        a, b = project(w, name, sun)
        ea, eb = edges(name, a, b, r_max_kpc, n_bins)
        mean, sig, n = binned_mean_significance(a, b, r, ea, eb, MIN_POINTS_PER_BIN)
        out[name] = ResidualMap(ea, eb, mean, sig, n)
    return out
