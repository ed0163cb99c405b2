"""Heliocentric Galactic Cartesian <-> Galactocentric frames.

The map between the two is affine: x_gc = R @ x_h + x_sun and v_gc = R @ v_h + v_sun, with R a
rotation. R, x_sun and v_sun are read off astropy's own transform (no hand-written rotation
matrices), so this module agrees with astropy to round-off for any R0, z_sun, v_sun and roll.
The heliocentric frame is astropy's ``Galactic`` in Cartesian form (x towards l=0, y towards
l=90 deg, z towards the north Galactic pole; velocities relative to the Sun).
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.coordinates as coord
import astropy.units as u
import numpy as np
import torch

from .. import constants as C


@dataclass(frozen=True)
class SunFrame:
    """The Sun's place in the Galaxy; fixes the Galactocentric frame.

    r0_kpc: distance Sun - Galactic centre (astropy ``galcen_distance``), kpc.
    z_sun_kpc: height of the Sun above the mid-plane, kpc.
    v_sun_kms: the Sun's Galactocentric velocity (U, V, W-like), km/s.
    roll_deg: roll of the Galactocentric frame about its x axis, degrees.
    """

    r0_kpc: float = C.R0_KPC
    z_sun_kpc: float = C.Z_SUN_KPC
    v_sun_kms: tuple[float, float, float] = C.V_SUN_KMS
    roll_deg: float = 0.0

    def astropy_frame(self):
        """The matching ``astropy.coordinates.Galactocentric`` frame."""
        return coord.Galactocentric(
            galcen_distance=self.r0_kpc * u.kpc,
            z_sun=self.z_sun_kpc * u.kpc,
            galcen_v_sun=coord.CartesianDifferential(list(self.v_sun_kms) * (u.km / u.s)),
            roll=self.roll_deg * u.deg,
        )

    def affine(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(R, x_sun_kpc, v_sun_kms) with x_gc = R x_h + x_sun and v_gc = R v_h + v_sun (float64)."""
        return _affine_cached(self.r0_kpc, self.z_sun_kpc, tuple(self.v_sun_kms), self.roll_deg)


_AFFINE_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _affine_cached(r0, z_sun, v_sun, roll):
    key = (float(r0), float(z_sun), tuple(float(v) for v in v_sun), float(roll))
    if key not in _AFFINE_CACHE:
        frame = SunFrame(*key).astropy_frame()
        pts = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
        rep = coord.CartesianRepresentation(
            pts * u.kpc, differentials=coord.CartesianDifferential(np.zeros((3, 4)) * u.km / u.s)
        )
        gc = coord.Galactic(rep).transform_to(frame)
        xyz = gc.cartesian.xyz.to_value(u.kpc)
        x_sun = xyz[:, 0].copy()
        rot = xyz[:, 1:] - x_sun[:, None]
        v_sun = gc.velocity.d_xyz.to_value(u.km / u.s)[:, 0].copy()
        _AFFINE_CACHE[key] = (rot, x_sun, v_sun)
    rot, x_sun, v_sun = _AFFINE_CACHE[key]
    return rot.copy(), x_sun.copy(), v_sun.copy()


def as_tensor_like(t: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """``t`` as a tensor with the dtype and device of ``like``."""
    return torch.as_tensor(t, dtype=like.dtype, device=like.device)


def helio_to_galcen(x_h: torch.Tensor, v_h: torch.Tensor, sun: SunFrame):
    """Heliocentric Galactic Cartesian (kpc, km/s rel. Sun) -> Galactocentric (kpc, km/s)."""
    rot, _, v_sun = sun.affine()
    return helio_positions_to_galcen(x_h, sun), v_h @ as_tensor_like(rot, v_h).T + as_tensor_like(v_sun, v_h)


def helio_positions_to_galcen(x_h: torch.Tensor, sun: SunFrame) -> torch.Tensor:
    """Heliocentric Galactic Cartesian positions (kpc) -> Galactocentric positions (kpc)."""
    rot, x_sun, _ = sun.affine()
    return x_h @ as_tensor_like(rot, x_h).T + as_tensor_like(x_sun, x_h)


def galcen_to_helio(x_gc: torch.Tensor, v_gc: torch.Tensor, sun: SunFrame):
    """Galactocentric (kpc, km/s) -> heliocentric Galactic Cartesian (kpc, km/s rel. Sun)."""
    rot, x_sun, v_sun = sun.affine()
    R = as_tensor_like(rot, x_gc)
    return (x_gc - as_tensor_like(x_sun, x_gc)) @ R, (v_gc - as_tensor_like(v_sun, v_gc)) @ R


def helio_vectors_to_galcen(vec_h: torch.Tensor, sun: SunFrame) -> torch.Tensor:
    """Rotate free vectors (gradients, accelerations) from heliocentric to Galactocentric axes."""
    rot, _, _ = sun.affine()
    return vec_h @ as_tensor_like(rot, vec_h).T


def galactic_centre_helio(sun: SunFrame) -> np.ndarray:
    """Position of the Galactic centre in heliocentric Galactic Cartesian coordinates, kpc."""
    rot, x_sun, _ = sun.affine()
    return -rot.T @ x_sun


def omega_axis_helio(sun: SunFrame) -> np.ndarray:
    """The Galactocentric +z axis in heliocentric axes (unit vector)."""
    rot, _, _ = sun.affine()
    return rot.T @ np.array([0.0, 0.0, 1.0])


def azimuth_to_sun(x_h: torch.Tensor, centre_h: torch.Tensor, axis_h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the angle about the Galactic axis (unit ``axis_h``, through the Galactic centre at
    ``centre_h`` kpc; heliocentric axes) that turns each position x_h (..., 3) [kpc] to the Sun's
    Galactocentric azimuth: positive in the right-handed sense about the axis. Shapes (...)."""
    p = x_h - centre_h
    p = p - (p @ axis_h)[..., None] * axis_h
    p0 = -centre_h - (-centre_h @ axis_h) * axis_h
    norm = torch.linalg.vector_norm(p, dim=-1) * torch.linalg.vector_norm(p0)
    sin = (torch.linalg.cross(p, p0.expand_as(p), dim=-1) @ axis_h) / norm
    return (p @ p0) / norm, sin


def rotate_about(vec: torch.Tensor, axis: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Vectors (..., 3) rotated about the unit ``axis`` by the angles whose cos and sin (...) are given
    (Rodrigues' formula)."""
    along = (vec @ axis)[..., None] * axis
    return (vec * cos[..., None] + torch.linalg.cross(axis.expand_as(vec), vec, dim=-1) * sin[..., None]
            + along * (1.0 - cos[..., None]))


def velocities_at_sun_azimuth(x_h: torch.Tensor, v_h: torch.Tensor, frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                              inverse: bool = False) -> torch.Tensor:
    """Heliocentric velocities v_h (..., 3) [km/s] of stars at x_h [kpc], their Galactocentric (inertial)
    velocities turned about the Galactic axis by each star's azimuth to the Sun's, back relative to the
    Sun: v' = Rot(x_h) (v_h + v_sun) - v_sun. A star on a circular orbit then has the Sun's own circular
    velocity direction wherever it is, so an axisymmetric DF's independence of azimuth is the
    independence of y at fixed (x, z, v'). Identity at the Sun's azimuth; for every x_h a rotation of v_h
    (Jacobian determinant 1), so densities in (x, v) and (x, v') are equal. ``frame``: (Galactic centre,
    Sun's Galactocentric velocity, Galactic axis) in heliocentric axes (``cbe.helio_frame_vectors``);
    ``inverse``: the map back from v' to v_h."""
    centre, v_sun, axis = frame
    cos, sin = azimuth_to_sun(x_h, centre, axis)
    return rotate_about(v_h + v_sun, axis, cos, -sin if inverse else sin) - v_sun
