"""The potential as a gala ``PotentialBase``: Phi(x, t) in the inertial Galactocentric frame, turning
with the pattern (see ``field``), so that gala's ordinary (static-frame) integrators follow orbits
correctly; ``pattern_frame`` then shows an orbit in the frame where the fit is stationary.

Why not ``Hamiltonian(pot, ConstantRotatingFrame(...))`` with the static map: gala 1.11 integrates a
Python-defined potential as if that frame were static (a test orbit's Jacobi energy drifted by 18% in
100 Myr), while an explicitly time-dependent potential in the inertial frame is exact.
"""

from __future__ import annotations

from functools import cache

import astropy.units as u
import numpy as np

from ..api import Potential
from ..physics.mock import MockGalaxy
from .field import LAPLACIAN_TO_RHO_MSUN_KPC3, PatternField, as_field
from .optional import require


@cache
def _gala_class() -> type:
    """The PotentialBase subclass (built on first use, so importing this module needs no gala)."""
    gp = require("gala.potential", "gala")

    class DeepPotential(gp.PotentialBase):
        """A dpot_hpc PatternField as a gala potential: Galactocentric positions, any gala unit system.

        Energy, gradient, density and Hessian are exact (autograd, float64); time t = 0 is the present.
        """

        omega_p = gp.PotentialParameter("omega_p", physical_type="frequency")

        def __init__(self, field: PatternField, units=None):
            self.field = field
            units = units if units is not None else require("gala.units", "gala").galactic
            super().__init__(omega_p=field.omega_p_kms_kpc * u.km / u.s / u.kpc, units=units)
            us = self.units
            self._kpc = float((1 * us["length"]).to_value(u.kpc))
            self._myr = float((1 * us["time"]).to_value(u.Myr))
            kms2 = (u.km / u.s) ** 2
            self._e = float((1 * kms2).decompose(us).value)
            self._g = float((1 * kms2 / u.kpc).decompose(us).value)
            self._h = float((1 * kms2 / u.kpc**2).decompose(us).value)
            self._rho = float((LAPLACIAN_TO_RHO_MSUN_KPC3 * u.Msun / u.kpc**3).decompose(us).value)

        def _values(self, q: np.ndarray, t, hessian: bool = False):
            return self.field.evaluate(q * self._kpc, np.asarray(t) * self._myr, hessian=hessian)

        def _energy(self, q, t=0.0):  # q (N, 3)
            return self._values(q, t).phi * self._e

        def _gradient(self, q, t=0.0):  # q (3, N), as gala passes it
            return self._values(q.T, t).grad.T * self._g

        def _hessian(self, q, t=0.0):  # q (N, 3) -> (N, 3, 3), as gala's C potentials return it
            return self._values(q, t, hessian=True).hessian * self._h

        def _density(self, q, t=0.0):  # q (N, 3)
            hess = self._values(q, t, hessian=True).hessian
            return np.trace(hess, axis1=-2, axis2=-1) * self._rho

        def __eq__(self, other):
            return isinstance(other, DeepPotential) and other.field is self.field and other.units == self.units

        def __hash__(self):
            return id(self.field)

        def __repr__(self):
            return f"<DeepPotential: {self.field.name}, Omega_p = {self.field.omega_p_kms_kpc:.3f} km/s/kpc ({self.units})>"

    return DeepPotential


def to_gala(pot: Potential | MockGalaxy | PatternField, member: int | str | None = None, units=None):
    """A gala potential of Galactocentric positions (astropy axes; the members' own Sun, ``pot.sun``)
    that turns with the pattern: Phi(x, t) = Phi0(R_z(Omega_p t) x), t = 0 now, Omega_p > 0 clockwise
    seen from the north Galactic pole. Integrate orbits with it in gala's default (static, inertial)
    frame; see ``pattern_frame`` to view them in the pattern's frame.

    pot: a fitted Potential (the mean over its members, or ``member``), a MockGalaxy (its exact
        potential) or a PatternField (e.g. ``field.PatternField(phi0, 0.0)`` for a static map).
    units: a gala UnitSystem; default ``gala.units.galactic`` (kpc, Myr, Msun, radian).
    """
    return _gala_class()(as_field(pot, member), units=units)


def pattern_frame(potential):
    """gala's ``ConstantRotatingFrame`` of the pattern (Omega = -Omega_p z), for ``orbit.to_frame``.

    potential: a gala potential from ``to_gala``. In that frame the positions are those where Phi0 applies;
    gala's velocities there are the inertial velocities in rotating axes (subtract Omega x x for the
    velocity relative to the pattern).
    """
    gp = require("gala.potential", "gala")
    omega = potential.field.omega_p_kms_kpc * u.km / u.s / u.kpc
    return gp.ConstantRotatingFrame(Omega=u.Quantity([0 * omega, 0 * omega, -omega]), units=potential.units)


def jacobi_energy(potential, orbit) -> u.Quantity:
    """E_J = |v|^2/2 + Phi(x, t) - Omega . (x cross v) along an inertial-frame gala orbit (or
    PhaseSpacePosition with t = 0), in the potential's energy unit; constant in a pattern-turning potential."""
    us = potential.units
    x = orbit.xyz.decompose(us).value  # (3, ...)
    v = orbit.v_xyz.decompose(us).value
    shape = x.shape[1:]
    t = np.zeros(shape[:1]) if getattr(orbit, "t", None) is None else orbit.t.decompose(us).value
    t = np.broadcast_to(t.reshape(t.shape + (1,) * (len(shape) - t.ndim)), shape).ravel()
    x2, v2 = x.reshape(3, -1), v.reshape(3, -1)
    phi = potential._energy(np.ascontiguousarray(x2.T), t)
    omega = np.array([0.0, 0.0, -potential.parameters["omega_p"].decompose(us).value])
    lz_term = omega @ np.cross(x2.T, v2.T).T
    e_j = 0.5 * (v2**2).sum(0) + phi - lz_term
    return (e_j.reshape(shape) * us["energy"] / us["mass"]).decompose(us)
