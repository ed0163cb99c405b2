"""A potential in Galactocentric coordinates that turns with the pattern: the core shared by the gala
and galpy wrappers (torch, float64, exact derivatives by autograd; no orbit library needed).

Positions are astropy ``Galactocentric`` Cartesian (kpc; right-handed, Sun near x = -R0, the Galaxy
rotating clockwise seen from +z). The fitted map Phi0 is the potential at the present instant and is
stationary in the frame that rotates with angular velocity omega = -Omega_p z (Omega_p > 0: the sense
of Galactic rotation). In the inertial Galactocentric frame the potential is therefore

    Phi(x, t) = Phi0(R_z(Omega_p t) x),    R_z(a) = the anticlockwise rotation by a about +z,

so a feature at azimuth phi_b at t = 0 lies at phi_b - Omega_p t at time t (t in Myr, t = 0 now).
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable

import astropy.units as u
import numpy as np
import torch

from ..api import Potential
from ..config import CacheSection
from ..constants import LAPLACIAN_TO_RHO_MSUN_PC3, MSUN_PER_KPC3_TO_MSUN_PER_PC3
from ..ensemble.members import PotentialMember
from ..physics.derivatives import gradient_and_hessian
from ..physics.frames import SunFrame
from ..physics.mock import MockGalaxy

#: One km/s in kpc/Myr, and one km/s/kpc in rad/Myr (the same number; astropy's exact value).
KMS_TO_KPC_PER_MYR = float((1 * u.km / u.s).to_value(u.kpc / u.Myr))

#: Laplacian of Phi [(km/s)^2/kpc^2] -> density [Msun/kpc^3], with the project's G (as ``Potential.density``).
LAPLACIAN_TO_RHO_MSUN_KPC3 = LAPLACIAN_TO_RHO_MSUN_PC3 / MSUN_PER_KPC3_TO_MSUN_PER_PC3


class OutsideFitWarning(UserWarning):
    """Points lie outside the volume the potential was fitted in."""


@dataclass(frozen=True)
class FieldValues:
    """Phi (N,) in (km/s)^2, grad Phi (N, 3) in (km/s)^2/kpc and, if asked, the Hessian (N, 3, 3) in
    (km/s)^2/kpc^2, all in inertial Galactocentric axes, float64."""

    phi: np.ndarray
    grad: np.ndarray
    hessian: np.ndarray | None = None


def rotation_z(angle: np.ndarray) -> np.ndarray:
    """Anticlockwise rotation matrices about +z, shape (N, 3, 3), for angles (N,) in radians."""
    c, s = np.cos(angle), np.sin(angle)
    zero, one = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, zero], -1), np.stack([s, c, zero], -1), np.stack([zero, zero, one], -1)], -2)


class PatternField:
    """Phi(x, t) = Phi0(R_z(Omega_p t) x) at Galactocentric x (kpc) and t (Myr), in (km/s)^2.

    phi0: the present-day potential, a torch function of Galactocentric positions (N, 3) float64.
    omega_p_kms_kpc: pattern speed, > 0 in the sense of Galactic rotation; 0 makes the field static.
    sun: the Sun's frame that places the fitted volume (None: no volume check).
    fit_radius_kpc: Phi0 is trusted within this distance of the Sun (None: everywhere); the first
        evaluation with points beyond it warns (OutsideFitWarning), once per field.
    """

    def __init__(self, phi0: Callable[[torch.Tensor], torch.Tensor], omega_p_kms_kpc: float,
                 sun: SunFrame | None = None, fit_radius_kpc: float | None = None, name: str = "potential"):
        self.phi0 = phi0
        self.omega_p_kms_kpc = float(omega_p_kms_kpc)
        self.sun = sun
        self.fit_radius_kpc = fit_radius_kpc
        self.name = name
        self._warned = False

    @property
    def omega_p_per_myr(self) -> float:
        """Omega_p in rad/Myr."""
        return self.omega_p_kms_kpc * KMS_TO_KPC_PER_MYR

    def pattern_positions(self, x_gc: np.ndarray, t_myr) -> np.ndarray:
        """Positions (N, 3) in the pattern's frame (where Phi0 applies): R_z(Omega_p t) x."""
        x_gc = np.atleast_2d(np.asarray(x_gc, dtype=np.float64))
        angle = np.broadcast_to(np.asarray(t_myr, dtype=np.float64) * self.omega_p_per_myr, x_gc.shape[:1])
        return np.einsum("nij,nj->ni", rotation_z(angle), x_gc)

    def evaluate(self, x_gc: np.ndarray, t_myr=0.0, hessian: bool = False) -> FieldValues:
        """Phi, grad Phi (and the Hessian) at Galactocentric x (N, 3) kpc and times t (scalar or (N,)) Myr."""
        x_gc = np.atleast_2d(np.asarray(x_gc, dtype=np.float64))
        angle = np.broadcast_to(np.asarray(t_myr, dtype=np.float64) * self.omega_p_per_myr, x_gc.shape[:1])
        rot = rotation_z(angle)
        x0 = np.einsum("nij,nj->ni", rot, x_gc)
        self._check_volume(x0)
        pts = torch.from_numpy(np.ascontiguousarray(x0))
        if hessian:
            phi, g0, h0 = (a.numpy() for a in gradient_and_hessian(self.phi0, pts))
            hess = np.einsum("nki,nkl,nlj->nij", rot, h0, rot)  # R^T H0 R
        else:
            pts.requires_grad_(True)
            with torch.enable_grad():
                val = self.phi0(pts)
                (g,) = torch.autograd.grad(val.sum(), pts)
            phi, g0, hess = val.detach().numpy(), g.numpy(), None
        return FieldValues(phi, np.einsum("nki,nk->ni", rot, g0), hess)  # grad = R^T grad0

    def density(self, x_gc: np.ndarray, t_myr=0.0) -> np.ndarray:
        """rho = Laplacian Phi / (4 pi G) in Msun/kpc^3 (the project's G, as ``Potential.density``)."""
        hess = self.evaluate(x_gc, t_myr, hessian=True).hessian
        return np.trace(hess, axis1=-2, axis2=-1) * LAPLACIAN_TO_RHO_MSUN_KPC3

    def _check_volume(self, x0: np.ndarray) -> None:
        """Warn (once per field) if pattern-frame positions x0 (N, 3) lie beyond the fitted radius."""
        if self._warned or self.fit_radius_kpc is None or self.sun is None:
            return
        _, x_sun, _ = self.sun.affine()
        outside = int((np.linalg.norm(x0 - x_sun, axis=-1) > self.fit_radius_kpc).sum())
        if outside:
            self._warned = True
            warnings.warn(
                f"{self.name}: {outside} of {len(x0)} points lie outside the fitted volume (more than "
                f"{self.fit_radius_kpc} kpc from the Sun in the pattern's frame), where the potential is "
                "an extrapolation; this warning is shown once", OutsideFitWarning, stacklevel=2)


def _pick_members(pot: Potential, member: int | str | None) -> list[PotentialMember]:
    if member is None:
        return list(pot.members)
    if isinstance(member, int):
        return [pot.members[member]]
    found = [m for m in pot.members if m.id == member]
    if not found:
        raise KeyError(f"no member {member!r}; members: {', '.join(pot.ids)}")
    return found


def fitted_field(pot: Potential, member: int | str | None = None, fit_radius_kpc: float | None = None) -> PatternField:
    """The fitted potential as a PatternField, in the Galactocentric frame of the members' own Sun.

    member: None for the mean over the members of Phi_k - Phi_k(Sun) (a conservative field; the
        median of the members' accelerations, which ``Potential.acceleration`` reports, is not the
        gradient of any potential), turning at the members' mean Omega_p; or one member (index or id).
        The members must share one Sun (``Potential.sun``). Phi(Sun) = 0 at t = 0.
    fit_radius_kpc: the trusted radius around the Sun; default: the members' cache radius.
    """
    chosen = Potential(_pick_members(pot, member))
    sun = chosen.sun
    nets = [copy.deepcopy(m.net).double().eval().requires_grad_(False) for m in chosen.members]
    zero = torch.zeros(1, 3, dtype=torch.float64)
    offsets = [float(net(zero)) for net in nets]
    rot, x_sun, _ = sun.affine()
    rot_t, x_sun_t = torch.from_numpy(rot), torch.from_numpy(x_sun)

    def phi0(x_gc: torch.Tensor) -> torch.Tensor:
        x_h = (x_gc - x_sun_t) @ rot_t
        return sum(net(x_h) - c for net, c in zip(nets, offsets)) / len(nets)

    radii = [m.fit_radius_kpc for m in chosen.members if m.fit_radius_kpc is not None]
    radius = fit_radius_kpc if fit_radius_kpc is not None else (min(radii) if radii else CacheSection().r_max_kpc)
    omega = float(np.mean([m.omega_p_kms_kpc for m in chosen.members]))
    return PatternField(phi0, omega, sun, radius, name=f"fitted potential ({', '.join(chosen.ids)})")


def mock_field(mock: MockGalaxy) -> PatternField:
    """The mock's exact analytic potential (bar at its t = 0 phase) turning at the mock's Omega_p."""
    return PatternField(mock.galaxy.phi, mock.omega_p_kms_kpc, mock.sun, None, name="mock potential")


def as_field(obj: Potential | PatternField | MockGalaxy, member: int | str | None = None) -> PatternField:
    """A PatternField from a fitted Potential, a MockGalaxy (its exact potential) or a PatternField."""
    if isinstance(obj, PatternField):
        return obj
    if isinstance(obj, MockGalaxy):
        return mock_field(obj)
    if isinstance(obj, Potential):
        return fitted_field(obj, member)
    raise TypeError(f"expected a dpot_hpc Potential, a MockGalaxy or a PatternField, got {type(obj).__name__}")
