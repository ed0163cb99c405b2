"""The collisionless Boltzmann equation (CBE) in a frame rotating at the pattern speed.

Pure functions over tensors. With the angular-velocity vector omega (km/s/kpc) and the DF's
log-gradients, a DF stationary in the rotating frame has zero residual

    r = -(omega x x).grad_x ln f - (omega x v).grad_v ln f + v.grad_x ln f + a.grad_v ln f

where x, v are inertial (Galactocentric-origin) positions and velocities and a = -grad Phi.
Units: x kpc, v km/s, a (km/s)^2/kpc, grad_x ln f 1/kpc, grad_v ln f s/km; r in km/s/kpc
(i.e. per kpc/(km/s) of time). Reported pattern speeds Omega_p > 0 mean rotation in the sense of
Galactic rotation, i.e. omega = -Omega_p z_gc (astropy's Galactocentric frame, see docs/method.md).
"""

from __future__ import annotations

import torch

from .frames import SunFrame, as_tensor_like, galactic_centre_helio, helio_to_galcen, helio_vectors_to_galcen, omega_axis_helio


def residual(
    x: torch.Tensor,
    v: torch.Tensor,
    grad_x: torch.Tensor,
    grad_v: torch.Tensor,
    accel: torch.Tensor,
    omega: torch.Tensor,
) -> torch.Tensor:
    """CBE residual d ln f/dt along orbits (km/s/kpc), all vectors in one set of axes.

    x: positions relative to a point on the rotation axis (kpc), shape (N, 3).
    v: inertial velocities (km/s), (N, 3). grad_x, grad_v: gradients of ln f, (N, 3).
    accel: -grad Phi at x ((km/s)^2/kpc), (N, 3). omega: angular velocity vector (km/s/kpc), (3,).
    """
    om = omega.expand_as(x)
    dfdt_pattern = -(torch.linalg.cross(om, x) * grad_x).sum(-1) - (torch.linalg.cross(om, v) * grad_v).sum(-1)
    return dfdt_pattern + (v * grad_x).sum(-1) + (accel * grad_v).sum(-1)


def omega_vector_galcen(omega_p: torch.Tensor) -> torch.Tensor:
    """Angular velocity vector in Galactocentric axes for a pattern speed Omega_p (km/s/kpc)."""
    zero = torch.zeros_like(omega_p)
    return torch.stack([zero, zero, -omega_p])


_FRAME_VECTORS: dict = {}


def helio_frame_vectors(sun: SunFrame, dtype, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Galactic centre [kpc], Sun's Galactocentric velocity [km/s], Galactocentric z axis), all in
    heliocentric axes, as tensors; computed once per frame, dtype and device."""
    key = (sun, dtype, str(device))
    if key not in _FRAME_VECTORS:
        rot, _, v_sun = sun.affine()
        like = torch.empty(0, dtype=dtype, device=device)
        _FRAME_VECTORS[key] = (as_tensor_like(galactic_centre_helio(sun), like), as_tensor_like(rot.T @ v_sun, like),
                               as_tensor_like(omega_axis_helio(sun), like))
    return _FRAME_VECTORS[key]


def residual_heliocentric(x_h: torch.Tensor, v_h: torch.Tensor, grad_x: torch.Tensor, grad_v: torch.Tensor, accel_h: torch.Tensor,
        omega_p: torch.Tensor, sun: SunFrame) -> torch.Tensor:
    """CBE residual with everything in heliocentric Galactic axes (the DF and potential frame).

    x_h in kpc from the Sun, v_h in km/s relative to the Sun, gradients of ln f with respect to
    those, accel_h = -grad Phi in heliocentric axes; omega_p the pattern speed in km/s/kpc.
    The Sun's Galactocentric position enters through the rotation axis (the pattern term) and its
    velocity through the inertial velocity v = v_h + v_sun (the moving heliocentric frame's own
    time derivative); the DF's gradients and Phi do not depend on either.
    """
    return residual_in_frame(x_h, v_h, grad_x, grad_v, accel_h, omega_p, helio_frame_vectors(sun, x_h.dtype, x_h.device))


def residual_in_frame(x_h: torch.Tensor, v_h: torch.Tensor, grad_x: torch.Tensor, grad_v: torch.Tensor,
                      accel_h: torch.Tensor, omega_p: torch.Tensor,
                      frame: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``residual_heliocentric`` with the frame given as its ``helio_frame_vectors``: tensor operations
    only, so that torch.compile can trace it (training computes the vectors once)."""
    gc, v_sun_h, axis = frame
    return residual(x_h - gc, v_h + v_sun_h, grad_x, grad_v, accel_h, -omega_p * axis)


def residual_galactocentric(x_h: torch.Tensor, v_h: torch.Tensor, grad_x: torch.Tensor, grad_v: torch.Tensor, accel_h: torch.Tensor,
        omega_p: torch.Tensor, sun: SunFrame) -> torch.Tensor:
    """The same residual, computed after transforming every vector to Galactocentric axes."""
    x_gc, v_gc = helio_to_galcen(x_h, v_h, sun)
    to_gc = [helio_vectors_to_galcen(vec, sun) for vec in (grad_x, grad_v, accel_h)]
    return residual(x_gc, v_gc, *to_gc, omega_vector_galcen(omega_p))
