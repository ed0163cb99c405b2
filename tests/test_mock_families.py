"""The named mock families: the thin + thick lowered-isothermal mock is exactly stationary, its
closed-form density and bounded velocities are right, and its potential is Milky-Way-like."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from dpot_hpc.physics.cbe import residual_galactocentric, residual_heliocentric
from dpot_hpc.config import load_config
from dpot_hpc.constants import LAPLACIAN_TO_RHO_MSUN_PC3, MSUN_PER_KPC3_TO_MSUN_PER_PC3
from dpot_hpc.physics.frames import galcen_to_helio, helio_to_galcen
from dpot_hpc.physics.derivatives import gradient_and_laplacian
from dpot_hpc.physics.galaxy import GalaxyModel
from dpot_hpc.physics.mock import (
    LoweredIsothermal,
    _uniform_ball,
    mock_family,
    log_df,
    log_df_gradients,
    log_king_density,
    log_number_density,
    sample,
    sample_shell,
    truth_fields,
)
from dpot_hpc.data.mockfile import truth_on_grid


@pytest.fixture(scope="module")
def lowered(default_config):
    return mock_family("thin_thick_lowered", default_config.frame.sun(), default_config.catalogue.r_max_kpc)


@pytest.fixture(scope="module")
def lowered_sample(lowered):
    return sample(lowered, 60_000, seed=5)


@pytest.fixture(scope="module")
def galcen(lowered, lowered_sample):
    """Galactocentric x, v, E_J and Phi_eff of the sample's stars."""
    x_gc, v_gc = helio_to_galcen(lowered_sample.x_h, lowered_sample.v_h, lowered.sun)
    return x_gc, v_gc, lowered.jacobi_energy(x_gc, v_gc), lowered.phi_eff(x_gc)


def _sun_gc(sun):
    zero = torch.zeros(1, 3, dtype=torch.float64)
    return helio_to_galcen(zero, zero, sun)[0]


def _gauss_legendre(lo: float, hi: float, n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    t, w = np.polynomial.legendre.leggauss(n)
    return (torch.tensor(0.5 * (hi - lo) * t + 0.5 * (hi + lo)), torch.tensor(0.5 * (hi - lo) * w))


def test_barred_isothermal_family_is_the_default_config_mock(default_config, mock):
    assert mock_family("barred_isothermal", default_config.frame.sun(), default_config.catalogue.r_max_kpc) == mock


# --- potential ------------------------------------------------------------------------------


def test_thick_disc_density_closed_form_matches_laplacian(lowered):
    g = replace(lowered.galaxy, bar_strength=0.0)
    pts = torch.tensor([[-8.122, 0.0, 0.0208], [-7.5, 0.6, 0.8], [-8.9, -0.4, -1.5], [2.0, 1.0, 0.1]],
                       dtype=torch.float64)
    _, _, lap = gradient_and_laplacian(g.phi, pts)
    rho_cf = g.rho_disc(pts) + g.rho_thick_disc(pts) + g.rho_bulge(pts) + g.rho_halo(pts)
    assert g.rho_thick_disc(pts).min() > 0.05 * g.rho_disc(pts).min()  # the thick disc is there
    assert torch.allclose(lap * LAPLACIAN_TO_RHO_MSUN_PC3, rho_cf * MSUN_PER_KPC3_TO_MSUN_PER_PC3, rtol=1e-9, atol=0)


def test_default_galaxy_has_no_thick_disc():
    x = torch.tensor([[-8.0, 0.3, 0.5]], dtype=torch.float64)
    g = GalaxyModel()
    assert torch.equal(g.rho_baryons(x), g.rho_disc(x) + g.rho_bulge(x))


def test_lowered_family_is_milky_way_like(lowered):
    x_sun = _sun_gc(lowered.sun)
    _, _, lap = gradient_and_laplacian(lowered.galaxy.phi, x_sun)
    rho = (lap * LAPLACIAN_TO_RHO_MSUN_PC3).item()
    assert 0.08 < rho < 0.12  # Msun/pc^3
    vc = lowered.galaxy.circular_speed_axisymmetric(lowered.sun.r0_kpc)
    assert 215 < vc < 245  # km/s
    assert abs(vc / lowered.omega_p_kms_kpc - lowered.sun.r0_kpc) < 0.5  # corotation near the Sun
    # mean exponential scale height of each disc's density between z = 0 and 1 kpc at R0
    z = torch.tensor([[-lowered.sun.r0_kpc, 0.0, 0.0], [-lowered.sun.r0_kpc, 0.0, 1.0]], dtype=torch.float64)
    h_thin = 1.0 / math.log(lowered.galaxy.rho_disc(z)[0] / lowered.galaxy.rho_disc(z)[1])
    h_thick = 1.0 / math.log(lowered.galaxy.rho_thick_disc(z)[0] / lowered.galaxy.rho_thick_disc(z)[1])
    assert 0.2 < h_thin < 0.35 and 0.7 < h_thick < 1.0  # kpc


def test_truth_scalars_of_lowered_family(lowered, default_config):
    cfg = load_config(None, ["summary.grid_spacing_kpc=0.05"])
    s = truth_on_grid(lowered, cfg)["scalars"]
    assert all(math.isfinite(v) for v in s.values())
    assert s["omega_p"] == lowered.omega_p_kms_kpc
    assert 0.08 < s["rho_R0"] < 0.12
    # outside the bar's radius the only non-baryonic mass is the NFW halo
    rho_halo = (lowered.galaxy.rho_halo(_sun_gc(lowered.sun)) * MSUN_PER_KPC3_TO_MSUN_PER_PC3).item()
    assert abs(s["rho_dm"] - rho_halo) < 2e-4
    assert s["a_x"] > 0  # pulled towards the Galactic centre (km/s/Myr)


# --- stationarity -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def exact(lowered, lowered_sample):
    x, v = lowered_sample.x_h[:3000], lowered_sample.v_h[:3000]
    lf, gx, gv = log_df_gradients(lowered, lowered_sample.log_c, x, v)
    _, accel, _ = truth_fields(lowered, x)
    scale = ((v * gx).sum(-1).abs() + (accel * gv).sum(-1).abs()).mean()
    return lf, x, v, gx, gv, accel, scale


@pytest.mark.parametrize("path", [residual_heliocentric, residual_galactocentric])
def test_lowered_residual_vanishes_only_at_true_pattern_speed(lowered, exact, path):
    lf, x, v, gx, gv, accel, scale = exact
    assert torch.isfinite(lf).all() and scale > 10.0

    def rel(omega_p: float, reduce) -> float:
        r = path(x, v, gx, gv, accel, torch.tensor(omega_p, dtype=torch.float64), lowered.sun)
        return (reduce(r.abs()) / scale).item()

    assert rel(lowered.omega_p_kms_kpc, torch.max) < 1e-10
    for delta in (-3.0, 3.0):
        assert rel(lowered.omega_p_kms_kpc + delta, torch.mean) > 1e-3


# --- closed-form density, normalisation, positions ------------------------------------------------


@pytest.mark.parametrize("psi", [1e-3, 0.05, 0.5, 1.5, 1.999, 2.001, 3.0, 6.0, 12.0, 30.0])
def test_king_density_matches_quadrature(psi):
    # K (2 pi)^{3/2} = 4 pi int_0^{sqrt(2 psi)} q^2 (exp(psi - q^2/2) - 1) dq  (sigma = 1)
    q, w = _gauss_legendre(0.0, math.sqrt(2 * psi))
    quad = 4 * math.pi * (w * q**2 * torch.expm1(psi - 0.5 * q**2)).sum().item()
    closed = math.exp(log_king_density(torch.tensor(psi, dtype=torch.float64)).item()) * (2 * math.pi) ** 1.5
    assert closed == pytest.approx(quad, rel=1e-10)


def test_number_density_is_the_velocity_integral_of_f(lowered, lowered_sample):
    """n(x) from the closed form equals 4 pi int u^2 f du along two directions of u (f is isotropic in u)."""
    log_c = lowered_sample.log_c
    thin, thick = lowered.components
    x_gc = torch.tensor([[-8.122, 0.0, 0.0208], [-7.4, 0.5, 0.3], [-8.3, -0.2, -0.75], [-8.1, 0.1, 0.86]],
                        dtype=torch.float64)
    phi = lowered.phi_eff(x_gc)
    assert (thin.psi(phi)[-1] < 0) and (thin.psi(phi)[-2] > 0)  # last point lies beyond the thin disc's edge
    x_h = galcen_to_helio(x_gc, torch.zeros_like(x_gc), lowered.sun)[0]
    n_closed = log_number_density(lowered, log_c, x_h).exp().sum(-1)
    rot = torch.linalg.cross(lowered.omega_vector(x_gc).expand_as(x_gc), x_gc)
    for direction in ([0.6, 0.0, 0.8], [-0.36, 0.48, 0.8]):
        e = torch.tensor(direction, dtype=torch.float64)
        for i in range(len(x_gc)):
            edges = sorted(float(torch.sqrt(2 * c.psi(phi[i]))) * c.sigma_kms for c in lowered.components
                           if c.psi(phi[i]) > 0)
            n_quad, lo = 0.0, 0.0
            for hi in edges:  # integrate piecewise: the integrand has a kink at each component's edge
                u, w = _gauss_legendre(lo, hi)
                v_gc = rot[i] + u[:, None] * e
                xh, vh = galcen_to_helio(x_gc[i].expand_as(v_gc), v_gc, lowered.sun)
                n_quad += 4 * math.pi * (w * u**2 * log_df(lowered, log_c, xh, vh).exp()).sum().item()
                lo = hi
            assert n_closed[i].item() == pytest.approx(n_quad, rel=1e-8)


def test_density_integrates_to_the_star_counts(lowered, lowered_sample):
    pts = _uniform_ball(400_000, lowered.r_max_kpc, torch.Generator().manual_seed(123))
    n = log_number_density(lowered, lowered_sample.log_c, pts).exp()
    volume = 4.0 / 3.0 * math.pi * lowered.r_max_kpc**3
    expected = torch.bincount(lowered_sample.component).double()
    assert torch.allclose(n.mean(0) * volume, expected, rtol=0.02)


def test_shell_stars_continue_the_sphere_s_density(lowered, lowered_sample):
    """The stars drawn beyond the sphere (for noisy mocks) lie in the shell, and each component's count
    is the closed-form number density, normalised by the sphere's sample, integrated over the shell."""
    r_out = 1.3 * lowered.r_max_kpc
    shell = sample_shell(lowered, lowered_sample.log_c, r_out, seed=9)
    r = torch.linalg.vector_norm(shell.x_h, dim=-1)
    assert r.min() >= lowered.r_max_kpc and r.max() < r_out
    pts = _uniform_ball(800_000, r_out, torch.Generator().manual_seed(321))
    pts = pts[torch.linalg.vector_norm(pts, dim=-1) >= lowered.r_max_kpc]
    volume = 4.0 / 3.0 * math.pi * (r_out**3 - lowered.r_max_kpc**3)
    expected = log_number_density(lowered, lowered_sample.log_c, pts).exp().mean(0) * volume
    got = torch.bincount(shell.component, minlength=len(lowered.components)).double()
    assert expected.min() > 10_000  # Poisson scatter < 1%, Monte Carlo integral ~0.5%
    assert torch.allclose(got, expected, rtol=0.03)


def test_positions_follow_the_closed_form_density(lowered, lowered_sample, galcen):
    """Binned chi-square of Phi_eff of each component's stars against the weighted uniform sphere."""
    _, _, _, phi_star = galcen
    pts = _uniform_ball(1_000_000, lowered.r_max_kpc, torch.Generator().manual_seed(321))
    phi_ref = lowered.phi_eff(helio_to_galcen(pts, torch.zeros_like(pts), lowered.sun)[0])
    for k, comp in enumerate(lowered.components):
        mine = phi_star[lowered_sample.component == k]
        w = torch.exp(comp.log_density_ratio(phi_ref, phi_ref.min().item()))
        edges = torch.quantile(mine[:20_000], torch.linspace(0, 1, 11, dtype=torch.float64))
        edges[0], edges[-1] = min(mine.min(), phi_ref.min()) - 1.0, max(mine.max(), phi_ref.max()) + 1.0
        obs = torch.histogram(mine, bins=edges).hist
        expct = torch.histogram(phi_ref, bins=edges, weight=w).hist / w.sum() * len(mine)
        chi2 = (((obs - expct) ** 2) / expct).sum().item()
        assert chi2 < 30.0  # 10 bins, 9 degrees of freedom: P(chi2 > 30) ~ 4e-4


# --- bounded velocities ---------------------------------------------------------------------------


def test_every_star_lies_below_its_components_truncation_energy(lowered, lowered_sample, galcen):
    _, _, e_j, _ = galcen
    for k, comp in enumerate(lowered.components):
        sel = lowered_sample.component == k
        depth = (comp.e_t_kms2 - e_j[sel]) / comp.sigma_kms**2
        assert depth.min() > 0
        assert depth.min() < 0.05  # ... and the sample does reach the edge


def test_speeds_follow_the_lowered_isothermal_distribution(lowered, lowered_sample, galcen):
    """KS test of the probability-integral transform F(|u| | Phi_eff), uniform if the speeds are right."""
    _, _, e_j, phi = galcen
    speed = torch.sqrt(2 * (e_j - phi))  # |u|, the speed in the rotating frame
    for k, comp in enumerate(lowered.components):
        sel = lowered_sample.component == k
        n = int(sel.sum())
        crit = 1.63 / math.sqrt(n)  # 1 % level of the Kolmogorov-Smirnov statistic

        def ks(cdf: torch.Tensor) -> float:
            p = torch.sort(cdf).values
            i = torch.arange(1, n + 1, dtype=torch.float64)
            return max((i / n - p).max().item(), (p - (i - 1) / n).max().item())

        assert ks(comp.speed_cdf(speed[sel], phi[sel])) < crit
        # the test has power: Maxwellian speeds of the same sigma are rejected
        q = speed[sel] / comp.sigma_kms
        maxwell = torch.special.erf(q / math.sqrt(2)) - math.sqrt(2 / math.pi) * q * torch.exp(-0.5 * q**2)
        assert ks(maxwell) > 5 * crit


def test_f_vanishes_beyond_the_velocity_edge(lowered, lowered_sample, galcen):
    x_gc, v_gc, e_j, phi = galcen
    x_gc, phi = x_gc[:500], phi[:500]
    rot = torch.linalg.cross(lowered.omega_vector(x_gc).expand_as(x_gc), x_gc)
    e = torch.nn.functional.normalize(v_gc[:500] - rot, dim=-1)
    u_edge = torch.sqrt(2 * (max(c.e_t_kms2 for c in lowered.components) - phi))  # the outermost edge
    for factor, finite in ((0.999, True), (1.001, False)):
        xh, vh = galcen_to_helio(x_gc, rot + factor * u_edge[:, None] * e, lowered.sun)
        lf, gx, gv = log_df_gradients(lowered, lowered_sample.log_c, xh, vh)
        assert bool(torch.isfinite(lf).all()) is finite
        assert torch.isfinite(gx).all() and torch.isfinite(gv).all()
    assert (lf == -math.inf).all() and (gx == 0).all() and (gv == 0).all()


def test_lowered_component_has_no_stars_beyond_truncation():
    comp = LoweredIsothermal(sigma_kms=30.0, fraction=1.0, e_t_kms2=-1000.0)
    e = torch.tensor([-1200.0, -1000.0, -900.0], dtype=torch.float64)
    g = comp.log_g(e)
    assert math.isclose(g[0].item(), math.log(math.expm1(200.0 / 900.0)), rel_tol=1e-14)
    assert g[1] == -math.inf and g[2] == -math.inf


# --- the held-out polytropic family -------------------------------------------------------------


@pytest.fixture(scope="module")
def polytropic(default_config):
    return mock_family("heavy_disc_polytropic", default_config.frame.sun(), default_config.catalogue.r_max_kpc)


@pytest.fixture(scope="module")
def polytropic_sample(polytropic):
    return sample(polytropic, 40_000, seed=6)


def test_polytropic_residual_vanishes_only_at_its_own_pattern_speed(polytropic, polytropic_sample):
    x, v = polytropic_sample.x_h[:3000], polytropic_sample.v_h[:3000]
    lf, gx, gv = log_df_gradients(polytropic, polytropic_sample.log_c, x, v)
    _, accel, _ = truth_fields(polytropic, x)
    assert torch.isfinite(lf).all()
    scale = ((v * gx).sum(-1).abs() + (accel * gv).sum(-1).abs()).mean()

    def rel(omega_p: float, reduce) -> float:
        r = residual_heliocentric(x, v, gx, gv, accel, torch.tensor(omega_p, dtype=torch.float64), polytropic.sun)
        return (reduce(r.abs()) / scale).item()

    assert polytropic.omega_p_kms_kpc != 28.2  # a pattern speed of its own
    assert rel(polytropic.omega_p_kms_kpc, torch.max) < 1e-10
    for delta in (-3.0, 3.0):
        assert rel(polytropic.omega_p_kms_kpc + delta, torch.mean) > 1e-3


@pytest.mark.parametrize("psi", [0.01, 0.7, 3.0, 9.0])
def test_polytrope_density_shape_is_the_velocity_integral(polytropic, psi):
    """exp(S) (2 pi sigma^2)^{3/2} = 4 pi int u^2 g du, by quadrature (sigma = 1 units)."""
    for comp in polytropic.components:
        phi = torch.tensor(comp.e_t_kms2 - psi * comp.sigma_kms**2, dtype=torch.float64)
        q, w = _gauss_legendre(0.0, math.sqrt(2 * psi))
        quad = 4 * math.pi * (w * q**2 * (psi - 0.5 * q**2).clamp(min=0) ** comp.n).sum().item()
        closed = math.exp(comp.log_density_shape(phi).item()) * (2 * math.pi) ** 1.5
        assert closed == pytest.approx(quad, rel=1e-8)


def test_polytropic_speeds_follow_their_distribution_and_stop_at_the_edge(polytropic, polytropic_sample):
    x_gc, v_gc = helio_to_galcen(polytropic_sample.x_h, polytropic_sample.v_h, polytropic.sun)
    e_j, phi = polytropic.jacobi_energy(x_gc, v_gc), polytropic.phi_eff(x_gc)
    speed = torch.sqrt(2 * (e_j - phi))
    for k, comp in enumerate(polytropic.components):
        sel = polytropic_sample.component == k
        n = int(sel.sum())
        depth = (comp.e_t_kms2 - e_j[sel]) / comp.sigma_kms**2
        assert 0 < depth.min() < 0.2 * depth.median()  # below the truncation energy, and near it (f ~ depth^n)
        p = torch.sort(comp.speed_cdf(speed[sel], phi[sel])).values
        i = torch.arange(1, n + 1, dtype=torch.float64)
        ks = max((i / n - p).max().item(), (p - (i - 1) / n).max().item())
        assert ks < 1.63 / math.sqrt(n)  # Kolmogorov-Smirnov at the 1 % level
