"""An analytic Milky-Way-like potential with a rotating bar (the truth behind the mock).

Pure torch functions of Galactocentric positions (kpc, astropy axes), float64 recommended.
Potential in (km/s)^2. Components: Miyamoto-Nagai disc, an optional second (thick)
Miyamoto-Nagai disc (mass 0 by default: absent), Hernquist bulge, NFW halo and a Dehnen (2000)
quadrupole bar in the 3-D form of Monari et al. (2016), which is harmonic outside its radius R_b
(it adds no density there). The bar is shown at t = 0; it rotates rigidly with angular velocity
omega = -Omega_p z (Galactic rotation is clockwise seen from +z).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from ..constants import G_KPC_KMS2_PER_MSUN as G


@dataclass(frozen=True)
class GalaxyModel:
    """Parameters of the analytic potential (masses in Msun, lengths in kpc, angles in degrees).

    The thick disc (thick_disc_*) is a second Miyamoto-Nagai disc; with its default mass 0 it is
    left out entirely, so the one-disc model is unchanged.
    bar_strength is Dehnen's alpha: the bar's quadrupole potential at R0 in units of v_c(R0)^2/3.
    bar_angle_deg is the angle between the Sun-centre line and the bar's near-side major axis,
    positive towards Galactic longitude l > 0.
    """

    disc_mass_msun: float = 6.0e10
    disc_a_kpc: float = 3.0
    disc_b_kpc: float = 0.28
    thick_disc_mass_msun: float = 0.0
    thick_disc_a_kpc: float = 3.0
    thick_disc_b_kpc: float = 0.9
    bulge_mass_msun: float = 5.0e9
    bulge_a_kpc: float = 0.6
    halo_mass_msun: float = 6.5e11
    halo_rs_kpc: float = 16.0
    bar_strength: float = 0.01
    bar_radius_kpc: float = 3.5
    bar_angle_deg: float = 27.0
    r0_kpc: float = 8.122

    def to_dict(self) -> dict:
        return asdict(self)

    # --- axisymmetric parts -------------------------------------------------
    def phi_disc(self, x: torch.Tensor) -> torch.Tensor:
        r"""Miyamoto & Nagai (1975, PASJ 27, 533) disc, (km/s)^2.

        .. math:: \Phi = -\frac{G M}{\sqrt{R^2 + (a + \sqrt{z^2 + b^2})^2}}

        with M = ``disc_mass_msun``, a = ``disc_a_kpc`` (scale length), b = ``disc_b_kpc`` (scale height).

        Arguments:
            x: Galactocentric positions (..., 3), kpc.
        """
        return _phi_miyamoto_nagai(x, self.disc_mass_msun, self.disc_a_kpc, self.disc_b_kpc)

    def phi_thick_disc(self, x: torch.Tensor) -> torch.Tensor:
        """The second (thick) Miyamoto-Nagai disc, (km/s)^2 (``thick_disc_*`` parameters)."""
        return _phi_miyamoto_nagai(x, self.thick_disc_mass_msun, self.thick_disc_a_kpc, self.thick_disc_b_kpc)

    def phi_bulge(self, x: torch.Tensor) -> torch.Tensor:
        r"""Hernquist (1990, ApJ 356, 359) bulge, :math:`\Phi = -G M / (r + a)`, (km/s)^2.

        Arguments:
            x: Galactocentric positions (..., 3), kpc; M = ``bulge_mass_msun``, a = ``bulge_a_kpc``.
        """
        r = torch.linalg.vector_norm(x, dim=-1)
        return -G * self.bulge_mass_msun / (r + self.bulge_a_kpc)

    def phi_halo(self, x: torch.Tensor) -> torch.Tensor:
        r"""Navarro, Frenk & White (1996, ApJ 462, 563) halo, (km/s)^2.

        .. math:: \Phi = -\frac{G M_s}{r} \ln(1 + r / r_s), \quad M_s = 4 \pi \rho_s r_s^3

        Arguments:
            x: Galactocentric positions (..., 3), kpc; M_s = ``halo_mass_msun``, r_s = ``halo_rs_kpc``.
        """
        r = torch.linalg.vector_norm(x, dim=-1)
        return -G * self.halo_mass_msun * torch.log1p(r / self.halo_rs_kpc) / r

    def phi_axisymmetric(self, x: torch.Tensor) -> torch.Tensor:
        discs = self.phi_disc(x)
        if self.thick_disc_mass_msun != 0.0:  # absent by default (keeps the one-disc model bit for bit)
            discs = discs + self.phi_thick_disc(x)
        return discs + self.phi_bulge(x) + self.phi_halo(x)

    # --- bar ----------------------------------------------------------------
    def bar_amplitude(self) -> float:
        """A in Phi_b = A cos(2(phi - phi_b)) (R/r)^2 U(r), in (km/s)^2."""
        vc2 = self.circular_speed_axisymmetric(self.r0_kpc) ** 2
        return self.bar_strength * vc2 / 3.0 * (self.r0_kpc / self.bar_radius_kpc) ** 3

    def bar_phase_rad(self) -> float:
        """Azimuth of the bar's near-side major axis in astropy's Galactocentric frame at t = 0."""
        return math.pi - math.radians(self.bar_angle_deg)

    def phi_bar(self, x: torch.Tensor) -> torch.Tensor:
        r"""Dehnen (2000, AJ 119, 800) quadrupole bar in the 3-D form of Monari et al. (2016, MNRAS 461,
        3835), at t = 0, (km/s)^2.

        .. math:: \Phi_b = A \cos(2(\phi - \phi_b)) \frac{R^2}{r^2} U(r), \quad
                  U = -(R_b / r)^3 \; (r \ge R_b), \quad U = (r / R_b)^3 - 2 \; (r < R_b)

        with A from ``bar_amplitude`` and phi_b from ``bar_phase_rad``. It is harmonic (adds no
        density) outside R_b = ``bar_radius_kpc``.

        Arguments:
            x: Galactocentric positions (..., 3), kpc.
        """
        xx, yy, zz = x[..., 0], x[..., 1], x[..., 2]
        r2 = xx**2 + yy**2 + zz**2
        r = torch.sqrt(r2)
        p = self.bar_phase_rad()
        quad = (xx**2 - yy**2) * math.cos(2 * p) + 2 * xx * yy * math.sin(2 * p)  # R^2 cos 2(phi-p)
        rb = self.bar_radius_kpc
        u_out = -((rb / r) ** 3)
        u_in = (r / rb) ** 3 - 2.0
        return self.bar_amplitude() * quad / r2 * torch.where(r >= rb, u_out, u_in)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """Total potential at Galactocentric positions x (kpc), (km/s)^2."""
        return self.phi_axisymmetric(x) + self.phi_bar(x)

    # --- closed-form densities (Msun/kpc^3), for checks -----------------------
    def rho_disc(self, x: torch.Tensor) -> torch.Tensor:
        return _rho_miyamoto_nagai(x, self.disc_mass_msun, self.disc_a_kpc, self.disc_b_kpc)

    def rho_thick_disc(self, x: torch.Tensor) -> torch.Tensor:
        return _rho_miyamoto_nagai(x, self.thick_disc_mass_msun, self.thick_disc_a_kpc, self.thick_disc_b_kpc)

    def rho_bulge(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.vector_norm(x, dim=-1)
        a = self.bulge_a_kpc
        return self.bulge_mass_msun * a / (2 * math.pi * r * (r + a) ** 3)

    def rho_halo(self, x: torch.Tensor) -> torch.Tensor:
        r = torch.linalg.vector_norm(x, dim=-1)
        rs = self.halo_rs_kpc
        s = r / rs
        return self.halo_mass_msun / (4 * math.pi * rs**3) / (s * (1 + s) ** 2)

    def rho_baryons(self, x: torch.Tensor) -> torch.Tensor:
        discs = self.rho_disc(x)
        if self.thick_disc_mass_msun != 0.0:
            discs = discs + self.rho_thick_disc(x)
        return discs + self.rho_bulge(x)

    def circular_speed_axisymmetric(self, R_kpc: float) -> float:
        """v_c in the plane of the axisymmetric part at radius R (km/s)."""
        x = torch.tensor([[R_kpc, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(self.phi_axisymmetric(x).sum(), x)
        return math.sqrt(R_kpc * g[0, 0].item())


def _phi_miyamoto_nagai(x: torch.Tensor, mass_msun: float, a_kpc: float, b_kpc: float) -> torch.Tensor:
    """Miyamoto & Nagai (1975) disc potential at Galactocentric x (kpc), (km/s)^2."""
    R2 = x[..., 0] ** 2 + x[..., 1] ** 2
    zb = torch.sqrt(x[..., 2] ** 2 + b_kpc**2)
    return -G * mass_msun / torch.sqrt(R2 + (a_kpc + zb) ** 2)


def _rho_miyamoto_nagai(x: torch.Tensor, mass_msun: float, a_kpc: float, b_kpc: float) -> torch.Tensor:
    """Closed-form density of the Miyamoto-Nagai disc (Msun/kpc^3)."""
    a, b, M = a_kpc, b_kpc, mass_msun
    R2 = x[..., 0] ** 2 + x[..., 1] ** 2
    zb = torch.sqrt(x[..., 2] ** 2 + b**2)
    num = a * R2 + (a + 3 * zb) * (a + zb) ** 2
    den = (R2 + (a + zb) ** 2) ** 2.5 * zb**3
    return b**2 * M / (4 * math.pi) * num / den
