"""The potential as a galpy ``Potential``, in galpy's natural units and Galactocentric frame, made to
turn with the pattern by galpy's own ``SolidBodyRotationWrapperPotential``.

galpy's frame is astropy's Galactocentric with x reversed: (x, y, z)_galpy = (-x, y, z)_astropy (the
Sun at x ~ +R0, the Galaxy rotating anticlockwise seen from +z, L_z > 0), for galpy's ro equal to the
Sun's in-plane distance sqrt(R0^2 - z_sun^2) and zo = z_sun (then ``Orbit(SkyCoord)`` agrees with
astropy; astropy's ``roll`` must be 0). The pattern therefore turns at +Omega_p in galpy's frame.
"""

from __future__ import annotations

from functools import cache
from typing import NamedTuple

import numpy as np

from ..api import Potential
from ..physics.mock import MockGalaxy
from .field import KMS_TO_KPC_PER_MYR, PatternField, as_field
from .optional import require

#: (x, y, z)_galpy = FLIP (x, y, z)_astropy, and the same for velocities and gradients.
FLIP = np.array([-1.0, 1.0, 1.0])

#: galpy's default velocity unit, km/s.
DEFAULT_VO_KMS = 220.0


def galcen_to_galpy(vec) -> np.ndarray:
    """Galactocentric (astropy axes) vectors (..., 3) -> galpy's frame (x reversed); its own inverse."""
    return np.asarray(vec, dtype=np.float64) * FLIP


def galpy_ro_kpc(field: PatternField) -> float:
    """galpy's ro for the field's Sun: its in-plane distance from the centre, sqrt(R0^2 - z_sun^2) kpc."""
    if field.sun is None:
        raise ValueError("the field has no Sun: pass ro")
    return float(np.sqrt(field.sun.r0_kpc**2 - field.sun.z_sun_kpc**2))


class _Cylindrical(NamedTuple):
    """Fields at galpy cylindrical points, flattened: natural units, galpy's Cartesian axes."""

    shape: tuple
    R: np.ndarray  # (N,)
    cos: np.ndarray
    sin: np.ndarray
    phi: np.ndarray  # potential (N,)
    grad: np.ndarray  # (N, 3)
    hessian: np.ndarray | None  # (N, 3, 3)


@cache
def _galpy_class() -> type:
    """The galpy Potential subclass (built on first use, so importing this module needs no galpy)."""
    gpot = require("galpy.potential", "galpy")

    class DeepPotentialGalpy(gpot.Potential):
        """A PatternField's present-day Phi0 as a static galpy potential (natural units, galpy's frame).

        Forces, density and all second derivatives are exact (autograd, float64); t is ignored (wrap it
        in SolidBodyRotationWrapperPotential, as ``to_galpy`` does, to make it turn).
        """

        def __init__(self, field: PatternField, ro: float, vo: float):
            super().__init__(amp=1.0, ro=ro, vo=vo)
            self.field = field
            self.isNonAxi = True
            self.hasC = False
            self.hasC_dxdv = False
            self._kpc, self._kms2 = float(ro), float(vo) ** 2
            self._last: tuple | None = None  # (key, result) of the last gradient evaluation

        def _cyl(self, R, z, phi, hessian: bool = False) -> _Cylindrical:
            """The field at galpy's (R, z, phi) (natural units; the last gradient evaluation is reused,
            as galpy asks for R, z and phi forces at one point in turn)."""
            R, z, phi = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (R, z, phi)))
            key = (R.tobytes(), z.tobytes(), phi.tobytes(), R.shape)
            if not hessian and self._last is not None and self._last[0] == key:
                return self._last[1]
            r, c, s = R.ravel(), np.cos(phi.ravel()), np.sin(phi.ravel())
            xg = np.stack([r * c, r * s, z.ravel()], -1)
            vals = self.field.evaluate(galcen_to_galpy(xg) * self._kpc, 0.0, hessian=hessian)
            grad = galcen_to_galpy(vals.grad) * self._kpc / self._kms2
            hess = None if vals.hessian is None else vals.hessian * np.outer(FLIP, FLIP) * self._kpc**2 / self._kms2
            out = _Cylindrical(R.shape, r, c, s, vals.phi / self._kms2, grad, hess)
            if not hessian:
                self._last = (key, out)
            return out

        def _evaluate(self, R, z, phi=0.0, t=0.0):
            f = self._cyl(R, z, phi)
            return f.phi.reshape(f.shape)

        def _Rforce(self, R, z, phi=0.0, t=0.0):
            f = self._cyl(R, z, phi)
            return -(f.grad[:, 0] * f.cos + f.grad[:, 1] * f.sin).reshape(f.shape)

        def _zforce(self, R, z, phi=0.0, t=0.0):
            f = self._cyl(R, z, phi)
            return -f.grad[:, 2].reshape(f.shape)

        def _phitorque(self, R, z, phi=0.0, t=0.0):
            f = self._cyl(R, z, phi)
            return -(f.R * (-f.grad[:, 0] * f.sin + f.grad[:, 1] * f.cos)).reshape(f.shape)

        def _second(self, R, z, phi, which: str):
            f = self._cyl(R, z, phi, hessian=True)
            r, g, h = f.R, f.grad, f.hessian
            zero = np.zeros_like(r)
            e_r, e_p = np.stack([f.cos, f.sin, zero], -1), np.stack([-f.sin, f.cos, zero], -1)
            e_z = np.stack([zero, zero, zero + 1.0], -1)

            def hh(a, b):
                return np.einsum("ni,nij,nj->n", a, h, b)

            out = {
                "RR": lambda: hh(e_r, e_r),
                "zz": lambda: hh(e_z, e_z),
                "Rz": lambda: hh(e_r, e_z),
                "pp": lambda: r**2 * hh(e_p, e_p) - r * (g * e_r).sum(-1),
                "Rp": lambda: r * hh(e_r, e_p) + (g * e_p).sum(-1),
                "pz": lambda: r * hh(e_p, e_z),
                "lap": lambda: np.trace(h, axis1=-2, axis2=-1),
            }[which]()
            return out.reshape(f.shape)

        def _R2deriv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "RR")

        def _z2deriv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "zz")

        def _Rzderiv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "Rz")

        def _phi2deriv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "pp")

        def _Rphideriv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "Rp")

        def _phizderiv(self, R, z, phi=0.0, t=0.0):
            return self._second(R, z, phi, "pz")

        def _dens(self, R, z, phi=0.0, t=0.0):
            """Laplacian / (4 pi) in natural units (galpy's Poisson equation, G = 1)."""
            return self._second(R, z, phi, "lap") / (4 * np.pi)

    return DeepPotentialGalpy


def to_galpy(pot: Potential | MockGalaxy | PatternField, member: int | str | None = None, ro: float | None = None,
             vo: float = DEFAULT_VO_KMS, static: bool = False):
    """A galpy potential in galpy's frame and natural units (ro kpc, vo km/s) that turns with the
    pattern: ``SolidBodyRotationWrapperPotential`` at omega = +Omega_p ro/vo (anticlockwise in
    galpy's frame = the sense of Galactic rotation), position angle 0 at t = 0 (now).

    pot: as for ``to_gala``. ro: default the Sun's in-plane distance sqrt(R0^2 - z_sun^2) (kpc), so
    that galpy's ``Orbit(SkyCoord)`` with ro and zo = z_sun puts stars where astropy does. vo: km/s.
    static: return the present-day map alone (no rotation).
    """
    field = as_field(pot, member)
    ro = galpy_ro_kpc(field) if ro is None else float(ro)
    base = _galpy_class()(field, ro=ro, vo=vo)
    if static:
        return base
    wrapper = require("galpy.potential", "galpy").SolidBodyRotationWrapperPotential
    return wrapper(pot=base, omega=field.omega_p_kms_kpc * ro / vo, pa=0.0, ro=ro, vo=vo)


def galpy_time_myr(t_natural, ro: float, vo: float = DEFAULT_VO_KMS):
    """galpy natural time -> Myr (the unit is ro/vo kpc/(km/s))."""
    return np.asarray(t_natural) * ro / vo / KMS_TO_KPC_PER_MYR
