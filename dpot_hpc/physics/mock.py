"""Exactly stationary mock galaxies: DF components g(E_J) in a barred potential.

Each component's DF is c_k g_k(E_J), a function of the Jacobi integral
E_J = |v|^2/2 + Phi(x) - omega.(x cross v) only, hence exactly stationary in the frame rotating
with the bar at omega = -Omega_p z. With u = v - omega x x (the velocity seen in the rotating frame)
E_J = |u|^2/2 + Phi_eff(x), Phi_eff = Phi - |omega x x|^2/2, so at each x the velocities are
isotropic around omega x x and the star density depends on Phi_eff(x) alone:

    n_k(x) = c_k (2 pi sigma_k^2)^{3/2} exp(S_k(Phi_eff(x)))     [stars / kpc^3]

with S_k the component's log density shape. Three kinds of component share one sampler:

- ``Component``: rotating isothermal, g = exp(-E_J/sigma^2); S = -Phi_eff/sigma^2; u Gaussian.
- ``LoweredIsothermal`` (King/Woolley): g = exp(-(E_J - E_t)/sigma^2) - 1 for E_J < E_t, else 0;
  velocities are bounded, |u| < sqrt(2 (E_t - Phi_eff)), and ln f = -inf beyond that edge.
- ``Polytrope``: g = ((E_t - E_J)/sigma^2)^n for E_J < E_t; bounded like the lowered isothermal, but
  f falls to 0 at the edge as the n-th power of the distance to it.

Stars are drawn inside a sphere of radius r_max around the Sun (``sample``), and for noisy mocks
also in a shell beyond it (``sample_shell``). Named parameter sets live in
``MOCK_FAMILIES`` (see ``family``). Everything here is a pure function of its arguments; I/O lives
in ``data.mockfile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from .derivatives import gradient_and_laplacian
from .frames import SunFrame, galcen_to_helio, helio_positions_to_galcen, helio_to_galcen
from .galaxy import GalaxyModel


class DFComponent(Protocol):
    """What the sampler and ln f need from a component: energies in (km/s)^2, speeds in km/s."""

    sigma_kms: float  # velocity scale; sigma^2 also sets the safety margin of the position bound
    fraction: float  # share of the stars in the selection sphere

    def log_g(self, e_j: torch.Tensor) -> torch.Tensor:
        """ln g(E_J), the unnormalised DF (-inf where g = 0)."""
        ...

    def log_density_shape(self, phi_eff: torch.Tensor) -> torch.Tensor:
        """S(Phi_eff) = ln[ integral of g(|u|^2/2 + Phi_eff) d^3u / (2 pi sigma^2)^{3/2} ]."""
        ...

    def log_density_ratio(self, phi_eff: torch.Tensor, phi_ref: float) -> torch.Tensor:
        """S(Phi_eff) - S(phi_ref); S decreases with Phi_eff, so this is <= 0 for Phi_eff >= phi_ref."""
        ...

    def draw_u(self, phi_eff: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Velocities u (km/s, shape (N, 3)) in the rotating frame at points with these Phi_eff."""
        ...


@dataclass(frozen=True)
class Component:
    """One rotating isothermal component g = exp(-E_J/sigma^2): dispersion (km/s), fraction of stars."""

    sigma_kms: float
    fraction: float

    def log_g(self, e_j: torch.Tensor) -> torch.Tensor:
        return -e_j / self.sigma_kms**2

    def log_density_shape(self, phi_eff: torch.Tensor) -> torch.Tensor:
        return -phi_eff / self.sigma_kms**2

    def log_density_ratio(self, phi_eff: torch.Tensor, phi_ref: float) -> torch.Tensor:
        return -(phi_eff - phi_ref) / self.sigma_kms**2

    def draw_u(self, phi_eff: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return self.sigma_kms * torch.randn(phi_eff.shape[0], 3, generator=gen, dtype=torch.float64)


#: Above this psi = (E_t - Phi_eff)/sigma^2 the lowered component's speeds are proposed from a
#: Gaussian, below it uniformly in the velocity ball; 1.2 is where both proposals accept equally
#: often (about 30 %, the worst case of the pair).
_PSI_GAUSSIAN_PROPOSAL = 1.2
#: Below this psi the King density shape is summed as a series (no cancellation).
_PSI_SERIES = 2.0


def log_king_density(psi: torch.Tensor) -> torch.Tensor:
    """ln K(psi), K = e^psi erf(sqrt psi) - sqrt(4 psi/pi) (1 + 2 psi/3) for psi > 0, -inf otherwise.

    K(psi) (2 pi sigma^2)^{3/2} is the velocity integral of exp(psi - |u|^2/(2 sigma^2)) - 1 over
    |u| < sigma sqrt(2 psi) (King 1966). Small psi uses the series
    K = (2/sqrt pi) sum_{n>=2} 2^n psi^{n+1/2} / (2n+1)!!, which avoids the cancellation
    (K ~ 8/15 psi^{5/2}/sqrt(pi) at psi -> 0).
    """
    pos = psi > 0
    small = psi < _PSI_SERIES
    p_s = torch.where(pos & small, psi, torch.ones_like(psi))
    term = 4.0 * p_s**2.5 / 15.0
    total = term
    for n in range(2, 40):  # ratio of terms 2 psi/(2n+3) < 4/(2n+3): 38 terms reach round-off
        term = term * (2.0 * p_s / (2 * n + 3))
        total = total + term
    log_series = torch.log(2.0 / math.sqrt(math.pi) * total)
    p_l = torch.where(small, torch.full_like(psi, _PSI_SERIES), psi)
    log_direct = p_l + torch.log(
        torch.special.erf(torch.sqrt(p_l)) - torch.exp(-p_l) * torch.sqrt(4.0 * p_l / math.pi) * (1.0 + 2.0 * p_l / 3.0)
    )
    out = torch.where(small, log_series, log_direct)
    return torch.where(pos, out, torch.full_like(psi, -math.inf))


@dataclass(frozen=True)
class _Truncated:
    """What the components with a truncation energy share: sigma_kms, the velocity scale (km/s);
    fraction, the share of the stars; e_t_kms2, the truncation energy E_t ((km/s)^2), above which
    g = 0. At a point with Phi_eff the speeds |u| in the rotating frame are bounded by sigma sqrt(2 psi),
    psi = (E_t - Phi_eff)/sigma^2; there are no stars where psi <= 0."""

    sigma_kms: float
    fraction: float
    e_t_kms2: float

    def psi(self, phi_eff: torch.Tensor) -> torch.Tensor:
        """Dimensionless depth (E_t - Phi_eff)/sigma^2 below the truncation energy."""
        return (self.e_t_kms2 - phi_eff) / self.sigma_kms**2

    def _inside(self, depth: torch.Tensor, log_value: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """log_value(depth) where depth > 0, -inf elsewhere, with finite gradients on both sides."""
        inside = depth > 0
        safe = torch.where(inside, depth, torch.ones_like(depth))
        return torch.where(inside, log_value(safe), torch.full_like(depth, -math.inf))

    def log_density_ratio(self, phi_eff: torch.Tensor, phi_ref: float) -> torch.Tensor:
        ref = self.log_density_shape(torch.tensor(phi_ref, dtype=phi_eff.dtype)).item()
        return self.log_density_shape(phi_eff) - ref


@dataclass(frozen=True)
class LoweredIsothermal(_Truncated):
    """Lowered isothermal (King/Woolley) component g = exp(-(E_J - E_t)/sigma^2) - 1 for E_J < E_t
    (fields and bounds: ``_Truncated``)."""

    def log_g(self, e_j: torch.Tensor) -> torch.Tensor:
        # ln(e^y - 1) without overflow
        return self._inside(self.psi(e_j), lambda y: y + torch.log(-torch.expm1(-y)))

    def log_density_shape(self, phi_eff: torch.Tensor) -> torch.Tensor:
        return log_king_density(self.psi(phi_eff))

    def speed_cdf(self, u_kms: torch.Tensor, phi_eff: torch.Tensor) -> torch.Tensor:
        """P(|u| < u_kms) at points with Phi_eff: the speed density is prop. to u^2 g(u^2/2 + Phi_eff)."""
        psi = self.psi(phi_eff)
        q = torch.minimum(u_kms / self.sigma_kms, torch.sqrt(2.0 * psi))
        # e^-psi times the integral of q'^2 (e^{psi - q'^2/2} - 1) from 0 to q
        part = math.sqrt(math.pi / 2) * torch.special.erf(q / math.sqrt(2.0)) - q * torch.exp(-0.5 * q**2)
        part = part - torch.exp(-psi) * q**3 / 3.0
        whole = math.sqrt(math.pi / 2) * torch.exp(log_king_density(psi) - psi)
        return part / whole

    def draw_u(self, phi_eff: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Exact rejection sampling of u: Gaussian proposal for psi > 1.2, uniform ball below."""
        psi = self.psi(phi_eff)
        if not bool((psi > 0).all()):
            raise ValueError("draw_u: points outside the component's support (E_t <= Phi_eff)")
        out = torch.empty(psi.shape[0], 3, dtype=torch.float64)
        todo = torch.arange(psi.shape[0])
        while todo.numel():
            p = psi[todo]
            m = p.numel()
            d = torch.randn(m, 3, generator=gen, dtype=torch.float64)
            r_ball = torch.sqrt(2.0 * p) * torch.rand(m, generator=gen, dtype=torch.float64) ** (1.0 / 3.0)
            ball = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True) * r_ball[:, None]
            gaussian = p > _PSI_GAUSSIAN_PROPOSAL
            q = torch.where(gaussian[:, None], d, ball)
            half_q2 = 0.5 * (q**2).sum(-1)
            # target / proposal, scaled to a maximum of 1 at q = 0:
            # Gaussian (e^psi - e^{q^2/2})/(e^psi - 1); ball e^{-q^2/2} times that
            acc = torch.expm1(half_q2 - p) / torch.expm1(-p)
            acc = torch.where(gaussian, acc, acc * torch.exp(-half_q2))
            acc = torch.where(half_q2 < p, acc, torch.zeros_like(acc))
            keep = torch.rand(m, generator=gen, dtype=torch.float64) < acc
            out[todo[keep]] = self.sigma_kms * q[keep]
            todo = todo[~keep]
        return out


@dataclass(frozen=True)
class Polytrope(_Truncated):
    """Polytropic component g = ((E_t - E_J)/sigma^2)^n for E_J < E_t, else 0 (n > 0; other fields:
    ``_Truncated``). Bounded like the lowered isothermal, but f falls to 0 at the velocity edge as a
    power n of the distance to it (the lowered isothermal falls linearly); the velocity integral is
    closed-form, S = ln[4 pi sqrt(2) B(3/2, n + 1) / (2 pi)^{3/2}] + (n + 3/2) ln psi, and
    u^2 / (2 sigma^2 psi) follows a Beta(3/2, n + 1) distribution.
    """

    n: float

    def _log_beta(self) -> float:
        return math.lgamma(1.5) + math.lgamma(self.n + 1.0) - math.lgamma(self.n + 2.5)

    def log_g(self, e_j: torch.Tensor) -> torch.Tensor:
        return self._inside(self.psi(e_j), lambda y: self.n * torch.log(y))

    def log_density_shape(self, phi_eff: torch.Tensor) -> torch.Tensor:
        const = math.log(4.0 * math.pi * math.sqrt(2.0)) + self._log_beta() - 1.5 * math.log(2.0 * math.pi)
        return self._inside(self.psi(phi_eff), lambda psi: const + (self.n + 1.5) * torch.log(psi))

    def speed_cdf(self, u_kms: torch.Tensor, phi_eff: torch.Tensor) -> torch.Tensor:
        """P(|u| < u_kms) at points with Phi_eff: the regularised incomplete beta function
        I_t(3/2, n + 1) at t = u^2 / (2 sigma^2 psi), by Gauss-Legendre quadrature of its integrand."""
        t = (u_kms**2 / (2.0 * self.sigma_kms**2 * self.psi(phi_eff))).clamp(0.0, 1.0)
        nodes, weights = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(200))
        # substitute s = sqrt(t') (removes the t'^{1/2} endpoint behaviour): dt' = 2 s ds
        s = 0.5 * torch.sqrt(t)[:, None] * (nodes + 1.0)
        integrand = 2.0 * s**2 * (1.0 - s**2).clamp(min=0.0) ** self.n
        part = (integrand * weights).sum(-1) * 0.5 * torch.sqrt(t)
        return part / math.exp(self._log_beta())

    def draw_u(self, phi_eff: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Exact draws: u^2/(2 sigma^2 psi) ~ Beta(3/2, n + 1), directions uniform (numpy's Beta, seeded
        from ``gen``)."""
        psi = self.psi(phi_eff)
        if not bool((psi > 0).all()):
            raise ValueError("draw_u: points outside the component's support (E_t <= Phi_eff)")
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        t = torch.from_numpy(rng.beta(1.5, self.n + 1.0, psi.shape[0]))
        d = torch.randn(psi.shape[0], 3, generator=gen, dtype=torch.float64)
        d = d / torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        return d * (self.sigma_kms * torch.sqrt(2.0 * psi * t))[:, None]


@dataclass(frozen=True)
class MockGalaxy:
    """The mock's truth: potential, pattern speed (km/s/kpc), components, Sun and volume."""

    galaxy: GalaxyModel
    omega_p_kms_kpc: float
    components: tuple[DFComponent, ...]
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


def _pilot_phi(mock: MockGalaxy, r_in_kpc: float, r_out_kpc: float, gen: torch.Generator) -> torch.Tensor:
    """Phi_eff at 1e6 uniform pilot points of the ball r < r_out_kpc, those with r >= r_in_kpc kept."""
    pilot = _uniform_ball(1_000_000, r_out_kpc, gen)
    if r_in_kpc > 0.0:
        pilot = pilot[torch.linalg.vector_norm(pilot, dim=-1) >= r_in_kpc]
    return mock.phi_eff(helio_positions_to_galcen(pilot, mock.sun))


def _log_integral(comp: DFComponent, pilot_phi: torch.Tensor, phi_min: float, volume_kpc3: float) -> float:
    """log of the integral of exp(S(Phi_eff)) over the pilot's region (Monte Carlo), kpc^3."""
    shape_min = comp.log_density_shape(torch.tensor(phi_min, dtype=torch.float64)).item()
    return math.log(volume_kpc3) + _log_mean_exp(comp.log_density_ratio(pilot_phi, phi_min)) + shape_min


def _draw_component(mock: MockGalaxy, comp: DFComponent, n_k: int, r_in_kpc: float, r_out_kpc: float,
                    bound: float, gen: torch.Generator, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n_k stars of one component in the shell r_in_kpc <= r < r_out_kpc by rejection: uniform proposals
    accepted with n_k(x)/n_k(bound); heliocentric positions (kpc) and velocities (km/s)."""
    if n_k == 0:
        return torch.zeros(0, 3, dtype=torch.float64), torch.zeros(0, 3, dtype=torch.float64)
    got, got_phi, have = [], [], 0
    while have < n_k:
        prop = _uniform_ball(chunk, r_out_kpc, gen)
        x_gc = helio_positions_to_galcen(prop, mock.sun)
        phi = mock.phi_eff(x_gc)
        ratio = torch.exp(comp.log_density_ratio(phi, bound))
        if ratio.max() > 1.0:  # the bound failed: never happens for a smooth Phi_eff
            raise RuntimeError("mock rejection sampling bound violated; increase the pilot size")
        keep = torch.rand(chunk, generator=gen, dtype=torch.float64) < ratio
        if r_in_kpc > 0.0:
            keep &= torch.linalg.vector_norm(prop, dim=-1) >= r_in_kpc
        got.append(x_gc[keep])
        got_phi.append(phi[keep])
        have += int(keep.sum())
    x_gc = torch.cat(got)[:n_k]
    om = mock.omega_vector(x_gc).expand_as(x_gc)
    v_gc = torch.linalg.cross(om, x_gc) + comp.draw_u(torch.cat(got_phi)[:n_k], gen)
    return galcen_to_helio(x_gc, v_gc, mock.sun)


def _draw_stars(mock: MockGalaxy, counts: list[int], r_in_kpc: float, r_out_kpc: float, phi_min: float,
                gen: torch.Generator, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """counts[k] stars of each component k in the shell r_in_kpc <= r < r_out_kpc (``_draw_component``),
    shuffled: heliocentric positions (kpc), velocities (km/s) and component indices. phi_min: the
    pilot's lowest Phi_eff there; the pilot minimum can miss the true one by the pilot spacing, so
    each component's bound lies sigma^2/4 below it."""
    xs, vs, comps = [], [], []
    for k, (comp, n_k) in enumerate(zip(mock.components, counts)):
        xh, vh = _draw_component(mock, comp, n_k, r_in_kpc, r_out_kpc, phi_min - 0.25 * comp.sigma_kms**2, gen, chunk)
        xs.append(xh)
        vs.append(vh)
        comps.append(torch.full((n_k,), k, dtype=torch.int64))
    perm = torch.randperm(sum(counts), generator=gen)
    return torch.cat(xs)[perm], torch.cat(vs)[perm], torch.cat(comps)[perm]


def sample(mock: MockGalaxy, n_stars: int, seed: int, chunk: int = 200_000) -> MockSample:
    """Draw n_stars from the mock inside the selection sphere (exact rejection sampling).

    Positions: uniform proposals in the sphere, accepted with n_k(x)/n_k(bound), where the bound
    lies sigma^2/4 below the smallest Phi_eff of a 1e6-point pilot (n_k falls with Phi_eff).
    Velocities: omega x x plus the component's u. The DF normalisation c_k is set so that f
    integrates to the expected number of stars of each component in the sphere (Monte Carlo
    volume integral over the pilot); stationarity does not depend on it.
    """
    gen = torch.Generator().manual_seed(int(seed))
    pilot_phi = _pilot_phi(mock, 0.0, mock.r_max_kpc, gen)
    phi_min = pilot_phi.min().item()
    volume = 4.0 / 3.0 * math.pi * mock.r_max_kpc**3
    log_c = []
    fractions = np.array([c.fraction for c in mock.components])
    counts = np.floor(fractions / fractions.sum() * n_stars).astype(int)
    counts[0] += n_stars - counts.sum()
    for k, (comp, n_k) in enumerate(zip(mock.components, counts)):
        if not math.isfinite(comp.log_density_shape(torch.tensor(phi_min, dtype=torch.float64)).item()):
            raise ValueError(f"mock component {k} has no stars at the lowest Phi_eff in the sphere")
        log_c.append(math.log(n_k) - 1.5 * math.log(2 * math.pi * comp.sigma_kms**2)
                     - _log_integral(comp, pilot_phi, phi_min, volume))
    x, v, comp = _draw_stars(mock, [int(n) for n in counts], 0.0, mock.r_max_kpc, phi_min, gen, chunk)
    return MockSample(x, v, comp, torch.tensor(log_c, dtype=torch.float64))


def sample_shell(mock: MockGalaxy, log_c: torch.Tensor, r_out_kpc: float, seed: int,
                 chunk: int = 200_000) -> MockSample:
    """The stars of the same galaxy between the selection sphere (mock.r_max_kpc) and r_out_kpc: per
    component a Poisson number with the mean that the DF normalisation log_c (``sample``'s, for the
    sphere) puts in the shell, drawn like ``sample``'s. With noisy distances, stars of this shell scatter
    into the sphere as sphere stars scatter out of it."""
    if not r_out_kpc > mock.r_max_kpc:
        raise ValueError(f"the shell's outer radius {r_out_kpc} kpc must exceed the sphere's {mock.r_max_kpc} kpc")
    gen = torch.Generator().manual_seed(int(seed))
    rng = np.random.default_rng(int(seed))
    pilot_phi = _pilot_phi(mock, mock.r_max_kpc, r_out_kpc, gen)
    phi_min = pilot_phi.min().item()
    volume = 4.0 / 3.0 * math.pi * (r_out_kpc**3 - mock.r_max_kpc**3)
    counts = []
    for k, comp in enumerate(mock.components):
        log_mean = (log_c[k].item() + 1.5 * math.log(2 * math.pi * comp.sigma_kms**2)
                    + _log_integral(comp, pilot_phi, phi_min, volume))
        counts.append(int(rng.poisson(math.exp(log_mean))) if math.isfinite(log_mean) else 0)
    x, v, comp = _draw_stars(mock, counts, mock.r_max_kpc, r_out_kpc, phi_min, gen, chunk)
    return MockSample(x, v, comp, log_c)


def log_df(mock: MockGalaxy, log_c: torch.Tensor, x_h: torch.Tensor, v_h: torch.Tensor) -> torch.Tensor:
    """ln f of the mock at heliocentric phase-space points (stars per kpc^3 per (km/s)^3).

    -inf where every component vanishes (beyond a lowered component's velocity edge); the stars
    of ``sample`` always lie where f > 0.
    """
    x_gc, v_gc = helio_to_galcen(x_h, v_h, mock.sun)
    ej = mock.jacobi_energy(x_gc, v_gc)
    log_g = torch.stack([c.log_g(ej) for c in mock.components], dim=-1)
    return torch.logsumexp(log_c.to(x_h) + log_g, dim=-1)


def log_number_density(mock: MockGalaxy, log_c: torch.Tensor, x_h: torch.Tensor) -> torch.Tensor:
    """ln n_k(x) per component (stars per kpc^3), shape (N, K): the closed-form velocity integral of f_k."""
    phi = mock.phi_eff(helio_positions_to_galcen(x_h, mock.sun))
    cols = [
        lc + 1.5 * math.log(2 * math.pi * c.sigma_kms**2) + c.log_density_shape(phi)
        for lc, c in zip(log_c.tolist(), mock.components)
    ]
    return torch.stack(cols, dim=-1)


def log_df_gradients(mock: MockGalaxy, log_c: torch.Tensor, x_h: torch.Tensor, v_h: torch.Tensor):
    """(ln f, grad_x ln f [1/kpc], grad_v ln f [s/km]) of the mock, exact by autograd.

    Where f = 0 (ln f = -inf, beyond every component's velocity edge) the gradients are set to 0:
    f vanishes on a neighbourhood there, so it is trivially stationary.
    """
    x = x_h.detach().clone().requires_grad_(True)
    v = v_h.detach().clone().requires_grad_(True)
    lf = log_df(mock, log_c, x, v)
    gx, gv = torch.autograd.grad(lf.sum(), (x, v))
    empty = torch.isneginf(lf.detach())[..., None]
    if bool(empty.any()):
        gx = torch.where(empty, torch.zeros_like(gx), gx)
        gv = torch.where(empty, torch.zeros_like(gv), gv)
    return lf.detach(), gx, gv


def galaxy_fields(galaxy: GalaxyModel, sun: SunFrame, x_h: torch.Tensor):
    """Phi ((km/s)^2), a = -grad Phi in heliocentric axes ((km/s)^2/kpc) and Laplacian Phi
    ((km/s)^2/kpc^2) of an analytic galaxy at heliocentric points x_h (kpc) seen from ``sun``."""
    phi, grad, lap = gradient_and_laplacian(lambda x: galaxy.phi(helio_positions_to_galcen(x, sun)), x_h)
    return phi, -grad, lap


def truth_fields(mock: MockGalaxy, x_h: torch.Tensor):
    """Phi ((km/s)^2), a = -grad Phi in heliocentric axes ((km/s)^2/kpc), Laplacian Phi ((km/s)^2/kpc^2)."""
    return galaxy_fields(mock.galaxy, mock.sun, x_h)


# --- named families ----------------------------------------------------------------------------

#: Pattern speed of both families (km/s/kpc), the value of Kalda & Green (2025). Corotation then
#: lies near R0 (v_c/Omega_p ~ 8.1-8.2 kpc), so the mean rotation omega x x ~ v_c at the Sun.
OMEGA_P_KMS_KPC = 28.2

#: Thin + thick Miyamoto-Nagai discs, Hernquist bulge, NFW halo, the default Dehnen bar.
#: Tuned by hand (approximately, not a fit) to: rho(Sun) ~ 0.097 Msun/pc^3 (McKee et al. 2015
#: baryons 0.084 + dark matter); v_c(R0) ~ 231 km/s (McMillan 2017: 233; Eilers et al. 2019: 229);
#: disc heights b = 0.28 / 0.9 kpc (McMillan 2017 and Bland-Hawthorn & Gerhard 2016: thin ~0.3,
#: thick ~0.9 kpc); bulge mass 9.2e9 Msun and halo r_s = 19.6 kpc from McMillan (2017), halo mass
#: parameter lowered to 7e11 Msun so that rho_DM(Sun) ~ 0.009 Msun/pc^3 (Bovy & Rix 2013: 0.008).
#: The MN disc masses exceed the exponential-disc stellar masses of McMillan (2017) because they
#: stand in for stars + gas and a MN disc puts much of its mass at large R.
THIN_THICK_GALAXY = dict(
    disc_mass_msun=5.6e10, disc_a_kpc=3.5, disc_b_kpc=0.28,
    thick_disc_mass_msun=1.8e10, thick_disc_a_kpc=3.0, thick_disc_b_kpc=0.9,
    bulge_mass_msun=9.2e9, bulge_a_kpc=0.6, halo_mass_msun=7.0e11, halo_rs_kpc=19.6,
)
#: (sigma km/s, fraction, W): thin and thick lowered isothermals with E_t = Phi_eff(Sun) + W sigma^2,
#: so the velocity edge at the Sun is |u| = sqrt(2 W) sigma (44 and 98 km/s), inside the sample.
THIN_THICK_COMPONENTS = ((18.0, 0.7, 3.0), (40.0, 0.3, 3.0))


def _barred_isothermal(sun: SunFrame) -> tuple[GalaxyModel, float, tuple[DFComponent, ...]]:
    """The default mock: one MN disc, two rotating isothermals (the config's default values)."""
    return GalaxyModel(r0_kpc=sun.r0_kpc), OMEGA_P_KMS_KPC, (Component(20.0, 0.6), Component(35.0, 0.4))


def _thin_thick_lowered(sun: SunFrame) -> tuple[GalaxyModel, float, tuple[DFComponent, ...]]:
    """Thin + thick discs in the potential, two lowered isothermals (bounded velocities) as the DF."""
    galaxy = GalaxyModel(**THIN_THICK_GALAXY, r0_kpc=sun.r0_kpc)
    zero = torch.zeros(1, 3, dtype=torch.float64)
    x_sun = helio_positions_to_galcen(zero, sun)
    phi_eff_sun = (galaxy.phi(x_sun) - 0.5 * OMEGA_P_KMS_KPC**2 * (x_sun[:, :2] ** 2).sum(-1)).item()
    comps = tuple(LoweredIsothermal(s, f, phi_eff_sun + w * s**2) for s, f, w in THIN_THICK_COMPONENTS)
    return galaxy, OMEGA_P_KMS_KPC, comps


#: A heavier, thinner disc, a denser bulge, a lighter halo and a stronger bar than the other families
#: (v_c(R0) ~ 241 km/s, rho(Sun) ~ 0.12 Msun/pc^3), with a pattern speed of its own (corotation at
#: 7.9 kpc, just inside the Sun).
HEAVY_DISC_GALAXY = dict(
    disc_mass_msun=6.8e10, disc_a_kpc=2.8, disc_b_kpc=0.22, bulge_mass_msun=1.0e10, bulge_a_kpc=0.5,
    halo_mass_msun=5.5e11, halo_rs_kpc=15.0, bar_strength=0.02, bar_radius_kpc=3.8, bar_angle_deg=35.0,
)
HEAVY_DISC_OMEGA_P_KMS_KPC = 30.5
#: (sigma km/s, fraction, W, n): polytropes with E_t = Phi_eff(Sun) + W sigma^2, so the velocity edge at
#: the Sun is |u| = sqrt(2 W) sigma (34 and 84 km/s), the Gaussian width of the core near u = 0
#: sigma sqrt(W / n) (17 and 34 km/s) and the 1-D dispersion sigma sqrt(W / (n + 5/2)) (11 and 25 km/s).
HEAVY_DISC_COMPONENTS = ((14.0, 0.65, 3.0, 2.0), (28.0, 0.35, 4.5, 3.0))


def _heavy_disc_polytropic(sun: SunFrame) -> tuple[GalaxyModel, float, tuple[DFComponent, ...]]:
    """A held-out family (docs/method.md): another potential and pattern speed, polytropic DFs."""
    galaxy = GalaxyModel(**HEAVY_DISC_GALAXY, r0_kpc=sun.r0_kpc)
    omega = HEAVY_DISC_OMEGA_P_KMS_KPC
    x_sun = helio_positions_to_galcen(torch.zeros(1, 3, dtype=torch.float64), sun)
    phi_eff_sun = (galaxy.phi(x_sun) - 0.5 * omega**2 * (x_sun[:, :2] ** 2).sum(-1)).item()
    comps = tuple(Polytrope(s, f, phi_eff_sun + w * s**2, n) for s, f, w, n in HEAVY_DISC_COMPONENTS)
    return galaxy, omega, comps


#: name -> builder(sun) -> (GalaxyModel, Omega_p [km/s/kpc], components)
MOCK_FAMILIES: dict[str, Callable[[SunFrame], tuple[GalaxyModel, float, tuple[DFComponent, ...]]]] = {
    "barred_isothermal": _barred_isothermal,
    "thin_thick_lowered": _thin_thick_lowered,
    "heavy_disc_polytropic": _heavy_disc_polytropic,
}


def mock_family(name: str, sun: SunFrame, r_max_kpc: float) -> MockGalaxy:
    """The MockGalaxy of a named family with the Sun at ``sun`` and stars within r_max_kpc of it."""
    if name not in MOCK_FAMILIES:
        raise KeyError(f"unknown mock family {name!r}; known: {', '.join(MOCK_FAMILIES)}")
    galaxy, omega_p, comps = MOCK_FAMILIES[name](sun)
    return MockGalaxy(galaxy, omega_p, comps, sun, r_max_kpc)
