"""The mock's truth: autograd density equals the closed-form density; the bar is harmonic outside R_b."""

import math

import pytest
import torch

from dpot_hpc.constants import LAPLACIAN_TO_RHO_MSUN_PC3, MSUN_PER_KPC3_TO_MSUN_PER_PC3
from dpot_hpc.physics.frames import helio_to_galcen
from dpot_hpc.physics.derivatives import gradient_and_laplacian
from dpot_hpc.physics.galaxy import GalaxyModel

POINTS_GC = torch.tensor(
    [[-8.122, 0.0, 0.0208], [-7.5, 0.6, 0.3], [-8.9, -0.4, -0.5], [-8.0, 0.2, 0.9], [2.0, 1.0, 0.1], [0.3, -0.2, 0.4]],
    dtype=torch.float64,
)


def test_autograd_density_matches_closed_form_without_bar():
    g = GalaxyModel(bar_strength=0.0)
    _, _, lap = gradient_and_laplacian(g.phi, POINTS_GC)
    rho_ad = lap * LAPLACIAN_TO_RHO_MSUN_PC3
    rho_cf = (g.rho_disc(POINTS_GC) + g.rho_bulge(POINTS_GC) + g.rho_halo(POINTS_GC)) * MSUN_PER_KPC3_TO_MSUN_PER_PC3
    assert torch.allclose(rho_ad, rho_cf, rtol=1e-9, atol=0)


def test_bar_adds_no_density_outside_its_radius():
    g = GalaxyModel(bar_strength=0.05)
    outside = POINTS_GC[torch.linalg.vector_norm(POINTS_GC, dim=-1) > g.bar_radius_kpc]
    _, a_bar, lap_bar = gradient_and_laplacian(g.phi_bar, outside)
    assert a_bar.abs().max() > 1.0  # the bar does pull, (km/s)^2/kpc
    assert (lap_bar.abs().max() * LAPLACIAN_TO_RHO_MSUN_PC3).item() < 1e-12
    # ... and it does add density inside its radius
    inside = POINTS_GC[torch.linalg.vector_norm(POINTS_GC, dim=-1) < g.bar_radius_kpc]
    _, _, lap_in = gradient_and_laplacian(g.phi_bar, inside)
    assert (lap_in.abs().min() * LAPLACIAN_TO_RHO_MSUN_PC3).item() > 1e-3


def test_local_density_and_circular_speed_are_milky_way_like(mock):
    x_sun = helio_to_galcen(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64), mock.sun)[0]
    _, _, lap = gradient_and_laplacian(mock.galaxy.phi, x_sun)
    rho = (lap * LAPLACIAN_TO_RHO_MSUN_PC3).item()
    assert 0.05 < rho < 0.15
    assert 200 < mock.galaxy.circular_speed_axisymmetric(mock.sun.r0_kpc) < 260


def test_bar_quadrupole_at_sun_has_dehnen_amplitude():
    g = GalaxyModel()
    vc = g.circular_speed_axisymmetric(g.r0_kpc)
    # in the plane at R0, Phi_b = -alpha vc^2 / 3 cos(2 (phi - phi_b))
    phi_b = g.bar_phase_rad()
    x = torch.tensor([[g.r0_kpc * math.cos(phi_b), g.r0_kpc * math.sin(phi_b), 0.0]], dtype=torch.float64)
    assert math.isclose(g.phi_bar(x).item(), -g.bar_strength * vc**2 / 3, rel_tol=1e-12)


def _random_potential():
    """A float64 potential network with non-zero linear and quadratic terms, and 40 points (kpc)."""
    from dpot_hpc.models.potential import PotentialNet

    torch.manual_seed(0)
    phi = PotentialNet([32, 32, 32], length_scale_kpc=0.9, phi_scale_kms2=1e4).double()
    with torch.no_grad():
        phi.linear.normal_()
        phi.quadratic.normal_()
    return phi, torch.randn(40, 3, dtype=torch.float64)


def test_potential_fields_forward_laplacian_matches_autograd():
    """The one-pass (value, Jacobian, Laplacian) propagation equals nested autograd."""
    from dpot_hpc.models.potential import fields

    phi, x = _random_potential()
    p, g, lap = fields(phi, x)
    _, g_ad, lap_ad = gradient_and_laplacian(phi, x)
    assert torch.allclose(p, phi(x), rtol=1e-12, atol=1e-8)
    assert torch.allclose(g, g_ad, rtol=1e-10, atol=1e-8)
    assert torch.allclose(lap, lap_ad, rtol=1e-10, atol=1e-8)


def test_potential_gradient_reverse_pass_matches_autograd():
    """The explicit reverse pass (training's gradient) equals autograd's gradient, and so do its
    derivatives with respect to the weights (what training differentiates)."""
    from dpot_hpc.models.potential import gradient

    phi, x = _random_potential()
    g = gradient(phi, x)
    _, g_ad, _ = gradient_and_laplacian(phi, x, create_graph=True)
    assert torch.allclose(g, g_ad, rtol=1e-10, atol=1e-8)
    w = torch.randn(40, 3, dtype=torch.float64)
    d = torch.autograd.grad((g * w).sum(), list(phi.parameters()), allow_unused=True)
    d_ad = torch.autograd.grad((g_ad * w).sum(), list(phi.parameters()), allow_unused=True)
    for a, b in zip(d, d_ad):
        assert (a is None) == (b is None) or torch.count_nonzero(a if a is not None else b) == 0
        if a is not None and b is not None:
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_explicit_terms_gradient_basis_is_autograds_gradient_of_each_term():
    """grad Phi = the MLP's gradient + sum_k c_k basis_k over the 9 explicit coefficients (the
    least-squares start's columns): autograd's gradient of a potential with random explicit terms,
    minus that of the same MLP with them at zero, equals the basis summed with those coefficients."""
    from dpot_hpc.models.potential import explicit_gradient_basis

    phi, x = _random_potential()
    _, g_full, _ = gradient_and_laplacian(phi, x)
    coefficients = torch.cat([phi.linear.detach(), phi.quadratic.detach()])
    assert coefficients.abs().min() > 0.01  # every term takes part
    with torch.no_grad():
        phi.linear.zero_()
        phi.quadratic.zero_()
    _, g_mlp, _ = gradient_and_laplacian(phi, x)
    basis = explicit_gradient_basis(phi, x)
    assert basis.shape == (9, x.shape[0], 3)
    assert torch.allclose(g_mlp + (coefficients[:, None, None] * basis).sum(0), g_full, rtol=1e-10, atol=1e-8)


@pytest.mark.parametrize("components", [0, 3])
def test_flow_sampling_inverts_the_density_map(components):
    """from_base inverts to_base (affine and monotone-step transforms), to_base's ln|det| is that of
    its Jacobian, and samples land inside the selection ball."""
    from dpot_hpc.models.flows import Flow

    torch.manual_seed(1)
    flow = Flow(3, [16, 16], order_seed=4, r_max_kpc=1.0, components=components).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn_like(p))
    u = torch.randn(200, 6, dtype=torch.float64)
    z = flow.from_base(u)
    back, logdet = flow.to_base(z)
    assert torch.allclose(back, u, atol=1e-9)
    jac = torch.autograd.functional.jacobian(lambda p: flow.to_base(p[None])[0][0], z[0])
    assert torch.logdet(jac).item() == pytest.approx(logdet[0].item(), rel=1e-10, abs=1e-10)
    w = flow.sample(300, torch.Generator().manual_seed(0))
    assert (torch.linalg.vector_norm(w[:, :3], dim=-1) < 1.0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_monotone_steps_are_inverted_to_round_off_where_gentle_and_where_steep(dtype):
    """The safeguarded Newton inversion of the tanh steps: for heights from ~0 to ~20 and widths down to
    the bound exp(-W_LOG_BOUND) (steep steps, where plain Newton overshoots and oscillates), the steps of
    the returned y give back u to within 8 eps of the terms' scale (1 + |u| + sum a), in float32 and
    float64."""
    from dpot_hpc.models.flows import W_LOG_BOUND, invert_monotone_steps, monotone_steps

    gen = torch.Generator().manual_seed(3)
    n, k = 30_000, 3
    heights = torch.nn.functional.softplus(4 * torch.randn(n, k, 1, generator=gen, dtype=torch.float64))
    centres = 2 * torch.randn(n, k, 1, generator=gen, dtype=torch.float64)
    widths = torch.exp(W_LOG_BOUND * (2 * torch.rand(n, k, 1, generator=gen, dtype=torch.float64) - 1))
    u = 3 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    heights, centres, widths, u = (t.to(dtype) for t in (heights, centres, widths, u))
    y = invert_monotone_steps(u, heights, centres, widths)
    residual = (monotone_steps(y, heights, centres, widths)[0] - u).abs() / (1 + u.abs() + heights.sum(-2))
    assert residual.max().item() <= 8 * torch.finfo(dtype).eps
