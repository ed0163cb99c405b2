"""The scalars of the paper's Figure 6, from fields on the evaluation grid (pure functions).

- a_x, a_y, a_z: mean acceleration over the shell r_min < |x_h| < r_max around the Sun, in
  heliocentric Galactic axes (x towards the Galactic centre), km/s/Myr.
- rho(R=R0): mean density over the shell points with |R - R_sun| < arc_dr and
  |z - z_sun| < arc_dz (Galactocentric cylindrical R and height), Msun/pc^3.
- rho_DM = rho(R=R0) - rho_baryons over the same points.
Omega_p comes from the potential member itself.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..constants import ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR
from .frames import SunFrame, helio_positions_to_galcen

#: Scalars reported by every potential member and the summary, with units.
SCALARS = {
    "a_x": "km/s/Myr",
    "a_y": "km/s/Myr",
    "a_z": "km/s/Myr",
    "omega_p": "km/s/kpc",
    "rho_R0": "Msun/pc^3",
    "rho_dm": "Msun/pc^3",
}


def evaluation_grid(spacing_kpc: float, r_max_kpc: float) -> torch.Tensor:
    """Regular Cartesian grid (spacing in kpc) clipped to the ball |x| <= r_max, heliocentric, (N, 3)."""
    n = int(math.floor(r_max_kpc / spacing_kpc + 1e-9))  # 0.9 / 0.05 is 17.999... in floating point
    ax = torch.arange(-n, n + 1, dtype=torch.float64) * spacing_kpc
    g = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    return g[torch.linalg.vector_norm(g, dim=-1) <= r_max_kpc]


def shell_mask(x_h: torch.Tensor, r_min_kpc: float, r_max_kpc: float) -> torch.Tensor:
    r = torch.linalg.vector_norm(x_h, dim=-1)
    return (r > r_min_kpc) & (r < r_max_kpc)


def arc_mask(x_h: torch.Tensor, sun: SunFrame, r_min_kpc: float, r_max_kpc: float, dr_kpc: float, dz_kpc: float):
    """Shell points within dr of the Sun's Galactocentric R and dz of the Sun's height."""
    x_gc = helio_positions_to_galcen(x_h, sun)
    _, x_sun, _ = sun.affine()
    R = torch.linalg.vector_norm(x_gc[:, :2], dim=-1)
    R_sun = float(np.hypot(x_sun[0], x_sun[1]))
    near = ((R - R_sun).abs() < dr_kpc) & ((x_gc[:, 2] - float(x_sun[2])).abs() < dz_kpc)
    return near & shell_mask(x_h, r_min_kpc, r_max_kpc)


def scalars_from_fields(
    x_h: torch.Tensor,
    accel_h: torch.Tensor,
    rho_msun_pc3: torch.Tensor,
    rho_baryon_msun_pc3: torch.Tensor | float,
    sun: SunFrame,
    summary,
) -> dict[str, float]:
    """a_x, a_y, a_z [km/s/Myr], rho_R0 and rho_dm [Msun/pc^3] from fields on grid points x_h.

    accel_h in (km/s)^2/kpc (heliocentric axes); ``summary`` is the config's summary section.
    rho_baryon is a number or a per-point tensor (Msun/pc^3).
    """
    shell = shell_mask(x_h, summary.shell_r_min_kpc, summary.shell_r_max_kpc)
    arc = arc_mask(x_h, sun, summary.shell_r_min_kpc, summary.shell_r_max_kpc, summary.arc_dr_kpc, summary.arc_dz_kpc)
    if int(arc.sum()) == 0:
        raise ValueError(
            "no evaluation-grid point lies in the rho(R=R0) arc: decrease summary.grid_spacing_kpc "
            "or widen summary.arc_dr_kpc / summary.arc_dz_kpc"
        )
    a = accel_h[shell].mean(0) * ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR
    rho = rho_msun_pc3[arc].mean().item()
    rb = rho_baryon_msun_pc3[arc].mean().item() if torch.is_tensor(rho_baryon_msun_pc3) else float(rho_baryon_msun_pc3)
    return {"a_x": a[0].item(), "a_y": a[1].item(), "a_z": a[2].item(), "rho_R0": rho, "rho_dm": rho - rb}
