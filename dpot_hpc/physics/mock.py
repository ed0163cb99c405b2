"""An exactly stationary mock galaxy: rotating isothermal components g(E_J) in a barred potential.

Each component has DF g_k(E_J) = c_k exp(-E_J / sigma_k^2) with the Jacobi integral
E_J = |v|^2/2 + Phi(x) - omega.(x cross v), which is exactly stationary in the frame rotating
with the bar at omega = -Omega_p z. Completing the square, positions follow
exp(-Phi_eff / sigma^2) with Phi_eff = Phi - |omega x x|^2 / 2 and velocities are Gaussian with
dispersion sigma around omega x x. Stars are drawn inside a sphere of radius r_max around the Sun.
Everything here is a pure function of its arguments; I/O lives in ``data.mockfile``.
The built-in families (``MOCK_FAMILIES``) are named presets of potential, pattern speed and components.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .derivatives import gradient_and_laplacian
from .frames import SunFrame, galcen_to_helio, helio_positions_to_galcen, helio_to_galcen
from .galaxy import GalaxyModel


@dataclass(frozen=True)
class Component:
    """One isothermal component: velocity dispersion (km/s) and fraction of the stars."""

    sigma_kms: float
    fraction: float


@dataclass(frozen=True)
class MockGalaxy:
    """The mock's truth: potential, pattern speed (km/s/kpc), components, Sun and volume."""

    galaxy: GalaxyModel
    omega_p_kms_kpc: float
    components: tuple[Component, ...]
    sun: SunFrame
    r_max_kpc: float

    def omega_vector(self, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, 0.0, -self.omega_p_kms_kpc], dtype=like.dtype, device=like.device)

    def phi_eff(self, x_gc: torch.Tensor) -> torch.Tensor:
        """Effective potential Phi - |omega x x|^2/2 in the rotating frame, (km/s)^2."""
        R2 = x_gc[..., 0] ** 2 + x_gc[..., 1] ** 2
        return self.galaxy.phi(x_gc) - 0.5 * self.omega_p_kms_kpc**2 * R2

    def jacobi_energy(self, x_gc: torch.Tensor, v_gc: torch.Tensor) -> torch.Tensor:
        """E_J = |v|^2/2 + Phi - omega.(x cross v), (km/s)^2."""
        om = self.omega_vector(x_gc).expand_as(x_gc)
        return 0.5 * (v_gc**2).sum(-1) + self.galaxy.phi(x_gc) - (om * torch.linalg.cross(x_gc, v_gc)).sum(-1)


def _uniform_ball(n: int, r_max: float, gen: torch.Generator) -> torch.Tensor:
    d = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
    r = r_max * torch.rand(n, generator=gen, dtype=torch.float64) ** (1.0 / 3.0)
    return d * r[:, None]


def _log_mean_exp(a: torch.Tensor) -> float:
    return (torch.logsumexp(a, 0) - math.log(a.numel())).item()


@dataclass(frozen=True)
class MockSample:
    """Heliocentric Galactic Cartesian stars (kpc, km/s relative to the Sun) and their component."""

    x_h: torch.Tensor
    v_h: torch.Tensor
    component: torch.Tensor
    log_c: torch.Tensor  # per-component log normalisation of the DF, matching this sample


def sample(mock: MockGalaxy, n_stars: int, seed: int, chunk: int = 200_000) -> MockSample:
    """Draw n_stars from the mock inside the selection sphere (exact rejection sampling).

    The DF normalisation c_k is set so that f integrates to the expected number of stars of
    each component in the sphere (Monte Carlo volume integral, 1e6 points); stationarity does
    not depend on it.
    """
    gen = torch.Generator().manual_seed(int(seed))
    pilot = _uniform_ball(1_000_000, mock.r_max_kpc, gen)
    pilot_phi = mock.phi_eff(helio_positions_to_galcen(pilot, mock.sun))
    phi_min = pilot_phi.min().item()
    volume = 4.0 / 3.0 * math.pi * mock.r_max_kpc**3
    xs, vs, comps, log_c = [], [], [], []
    fractions = np.array([c.fraction for c in mock.components])
    counts = np.floor(fractions / fractions.sum() * n_stars).astype(int)
    counts[0] += n_stars - counts.sum()
    for k, (comp, n_k) in enumerate(zip(mock.components, counts)):
        s2 = comp.sigma_kms**2
        # log of the spatial integral of exp(-Phi_eff/s2) over the sphere
        log_int = math.log(volume) + _log_mean_exp(-(pilot_phi - phi_min) / s2) - phi_min / s2
        # the pilot minimum can miss the true one by the pilot spacing: lower the bound by sigma^2/4
        bound = phi_min - 0.25 * s2
        log_c.append(math.log(n_k) - 1.5 * math.log(2 * math.pi * s2) - log_int)
        got, have = [], 0
        while have < n_k:
            prop = _uniform_ball(chunk, mock.r_max_kpc, gen)
            x_gc = helio_positions_to_galcen(prop, mock.sun)
            ratio = torch.exp(-(mock.phi_eff(x_gc) - bound) / s2)
            if ratio.max() > 1.0:  # the bound failed: never happens for a smooth Phi_eff
                raise RuntimeError("mock rejection sampling bound violated; increase the pilot size")
            keep = torch.rand(chunk, generator=gen, dtype=torch.float64) < ratio
            got.append(x_gc[keep])
            have += int(keep.sum())
        x_gc = torch.cat(got)[:n_k]
        om = mock.omega_vector(x_gc).expand_as(x_gc)
        v_gc = torch.linalg.cross(om, x_gc) + comp.sigma_kms * torch.randn(n_k, 3, generator=gen, dtype=torch.float64)
        xh, vh = galcen_to_helio(x_gc, v_gc, mock.sun)
        xs.append(xh)
        vs.append(vh)
        comps.append(torch.full((n_k,), k, dtype=torch.int64))
    perm = torch.randperm(n_stars, generator=gen)
    return MockSample(
        torch.cat(xs)[perm], torch.cat(vs)[perm], torch.cat(comps)[perm], torch.tensor(log_c, dtype=torch.float64)
    )


def log_df(mock: MockGalaxy, log_c: torch.Tensor, x_h: torch.Tensor, v_h: torch.Tensor) -> torch.Tensor:
    """ln f of the mock at heliocentric phase-space points (stars per kpc^3 per (km/s)^3)."""
    x_gc, v_gc = helio_to_galcen(x_h, v_h, mock.sun)
    ej = mock.jacobi_energy(x_gc, v_gc)
    s2 = torch.tensor([c.sigma_kms**2 for c in mock.components], dtype=x_h.dtype, device=x_h.device)
    return torch.logsumexp(log_c.to(x_h) - ej[..., None] / s2, dim=-1)


def log_df_gradients(mock: MockGalaxy, log_c: torch.Tensor, x_h: torch.Tensor, v_h: torch.Tensor):
    """(ln f, grad_x ln f [1/kpc], grad_v ln f [s/km]) of the mock, exact by autograd."""
    x = x_h.detach().clone().requires_grad_(True)
    v = v_h.detach().clone().requires_grad_(True)
    lf = log_df(mock, log_c, x, v)
    gx, gv = torch.autograd.grad(lf.sum(), (x, v))
    return lf.detach(), gx, gv


def truth_fields(mock: MockGalaxy, x_h: torch.Tensor):
    """Phi ((km/s)^2), a = -grad Phi in heliocentric axes ((km/s)^2/kpc), Laplacian Phi ((km/s)^2/kpc^2)."""
    phi, grad, lap = gradient_and_laplacian(lambda x: mock.galaxy.phi(helio_positions_to_galcen(x, mock.sun)), x_h)
    return phi, -grad, lap


def barred_isothermal(sun: SunFrame, r_max_kpc: float) -> MockGalaxy:
    """The default family: Miyamoto-Nagai disc + Hernquist bulge + NFW halo + Dehnen bar (GalaxyModel's
    defaults) rotating at 28.2 km/s/kpc, two isothermal components (sigma 20 and 35 km/s, 60/40%)."""
    return MockGalaxy(GalaxyModel(r0_kpc=sun.r0_kpc), 28.2, (Component(20.0, 0.6), Component(35.0, 0.4)), sun, r_max_kpc)


#: The built-in mock families by name (config key ``mock.family``).
MOCK_FAMILIES = {"barred_isothermal": barred_isothermal}


def mock_family(name: str, sun: SunFrame, r_max_kpc: float) -> MockGalaxy:
    """The named built-in mock with the Sun at ``sun`` and stars inside r_max_kpc of it."""
    return MOCK_FAMILIES[name](sun, r_max_kpc)
