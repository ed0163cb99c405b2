"""The three projections of the report's phase-space maps, and their bins (pure functions).

``xy``: heliocentric Galactic x, y [kpc]. ``vR_vphi``: Galactocentric cylindrical velocities [km/s],
v_R positive away from the Galactic centre and v_phi positive in the sense of Galactic rotation
(about +v_c at the Sun), in the frame of ``sun``. ``l_sinb``: Galactic longitude l [deg, 0..360)
and sin b, as seen from the Sun.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..physics.frames import SunFrame, helio_to_galcen


@dataclass(frozen=True)
class Projection:
    """Axis labels (with units) of one projection."""

    name: str
    xlabel: str
    ylabel: str


PROJECTIONS = {
    "xy": Projection("xy", "x [kpc]", "y [kpc]"),
    "vR_vphi": Projection("vR_vphi", "$v_R$ [km/s]", r"$v_\phi$ [km/s]"),
    "l_sinb": Projection("l_sinb", "l [deg]", "sin b"),
}


def project(w: np.ndarray, name: str, sun: SunFrame) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (a, b) of phase-space points w (N, 6) (heliocentric kpc, km/s relative to the
    Sun) in projection ``name``."""
    x = w[:, :3]
    if name == "xy":
        return x[:, 0], x[:, 1]
    if name == "l_sinb":
        r = np.linalg.norm(x, axis=1)
        sinb = np.divide(x[:, 2], r, out=np.zeros_like(r), where=r > 0)
        return np.degrees(np.arctan2(x[:, 1], x[:, 0])) % 360.0, sinb
    if name == "vR_vphi":
        xg, vg = (t.numpy() for t in helio_to_galcen(torch.from_numpy(x), torch.from_numpy(w[:, 3:]), sun))
        R = np.hypot(xg[:, 0], xg[:, 1])
        v_r = (xg[:, 0] * vg[:, 0] + xg[:, 1] * vg[:, 1]) / R
        v_phi = (xg[:, 1] * vg[:, 0] - xg[:, 0] * vg[:, 1]) / R  # Galactic rotation is clockwise seen from +z
        return v_r, v_phi
    raise KeyError(f"unknown projection {name!r} (known: {', '.join(PROJECTIONS)})")


def bins_per_axis(n_points: int) -> int:
    """Bins per axis for n_points: about 50 points per bin of a filled square, 10 to 60 bins."""
    return int(np.clip(np.sqrt(n_points / 50), 10, 60))


def edges(name: str, a: np.ndarray, b: np.ndarray, r_max_kpc: float, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges of projection ``name``: the ball's extent for xy, the whole sky for l_sinb, and
    the 0.5-99.5 percentile range of the reference coordinates (a, b) for the velocities."""
    if name == "xy":
        lo_a, hi_a, lo_b, hi_b = -r_max_kpc, r_max_kpc, -r_max_kpc, r_max_kpc
    elif name == "l_sinb":
        lo_a, hi_a, lo_b, hi_b = 0.0, 360.0, -1.0, 1.0
    else:
        (lo_a, hi_a), (lo_b, hi_b) = np.percentile(a, [0.5, 99.5]), np.percentile(b, [0.5, 99.5])
    return np.linspace(lo_a, hi_a, n_bins + 1), np.linspace(lo_b, hi_b, n_bins + 1)
