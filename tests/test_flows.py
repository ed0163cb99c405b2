"""Velocities turned to the Sun's azimuth (df.rotate_velocities): the turn keeps each star's Galactocentric
cylindrical velocity components, has determinant 1 and inverts exactly; an axisymmetric DF written in the
turned velocities is constant around the Galactic axis; a flow that turns velocities is the same
density as a plain flow evaluated at the turned velocities, and samples accordingly."""

import pytest
import torch

from dpot_hpc.config import DFSection
from dpot_hpc.models.df_training import build_flow
from dpot_hpc.physics.cbe import helio_frame_vectors
from dpot_hpc.physics.frames import SunFrame, helio_to_galcen, velocities_at_sun_azimuth

SUN = SunFrame()
FRAME = helio_frame_vectors(SUN, torch.float64, "cpu")


def _cylindrical(x_gc: torch.Tensor, v_gc: torch.Tensor) -> torch.Tensor:
    """(R, z, v_R, v_phi, v_z) from Galactocentric Cartesian positions and velocities."""
    r = torch.linalg.vector_norm(x_gc[:, :2], dim=-1)
    v_r = (x_gc[:, 0] * v_gc[:, 0] + x_gc[:, 1] * v_gc[:, 1]) / r
    v_phi = (x_gc[:, 0] * v_gc[:, 1] - x_gc[:, 1] * v_gc[:, 0]) / r
    return torch.stack([r, x_gc[:, 2], v_r, v_phi, v_gc[:, 2]], -1)


def _sun_galcen() -> torch.Tensor:
    """The Sun's Galactocentric position (3,), kpc."""
    zero = torch.zeros(1, 3, dtype=torch.float64)
    return helio_to_galcen(zero, zero, SUN)[0][0]


def _stars(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64),
            40.0 * torch.randn(n, 3, generator=g, dtype=torch.float64))


def test_turned_velocities_are_the_stars_cylindrical_velocities_at_the_suns_azimuth():
    x, v = _stars(500, 0)
    turned = velocities_at_sun_azimuth(x, v, FRAME)
    assert torch.allclose(velocities_at_sun_azimuth(x, turned, FRAME, inverse=True), v, atol=1e-10)
    # the same star moved along its circle about the Galactic axis to the Sun's azimuth, with the turned
    # velocity, has the same R, z, v_R, v_phi, v_z
    x_gc, v_gc = helio_to_galcen(x, v, SUN)
    sun_gc = _sun_galcen()
    phi_sun = torch.atan2(sun_gc[1], sun_gc[0])
    cyl = _cylindrical(x_gc, v_gc)
    moved = torch.stack([cyl[:, 0] * torch.cos(phi_sun), cyl[:, 0] * torch.sin(phi_sun), x_gc[:, 2]], -1)
    _, v_turned_gc = helio_to_galcen(x, turned, SUN)  # velocities: the frame's rotation and v_sun only
    assert torch.allclose(_cylindrical(moved, v_turned_gc), cyl, rtol=0, atol=1e-9)
    # at the Sun's own azimuth nothing turns; everywhere the Jacobian in v is a rotation
    centre = FRAME[0] / torch.linalg.vector_norm(FRAME[0])
    on_line = torch.stack([0.7 * centre, -0.4 * centre + 0.3 * FRAME[2]])
    assert torch.allclose(velocities_at_sun_azimuth(on_line, v[:2], FRAME), v[:2], atol=1e-10)
    jac = torch.func.jacrev(lambda vv: velocities_at_sun_azimuth(x[3], vv, FRAME))(v[3])
    assert torch.allclose(jac.T @ jac, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(jac).item() == pytest.approx(1.0, abs=1e-12)


def test_an_axisymmetric_df_in_turned_velocities_is_constant_around_the_galactic_axis():
    """f(R, z, v_R, v_phi, v_z) at fixed turned velocity, along a circle of constant R and z about the
    Galactic axis through the Sun: constant (it varies by O(1) along the same circle at fixed v_h)."""
    def f(x_h: torch.Tensor, v_h: torch.Tensor) -> torch.Tensor:
        c = _cylindrical(*helio_to_galcen(x_h, v_h, SUN))
        return -(c[:, 2] / 35) ** 2 - ((c[:, 3] - 220) / 25) ** 2 - (c[:, 4] / 20) ** 2 - (c[:, 1] / 0.3) ** 2

    sun_gc = _sun_galcen()
    r, phi0 = torch.linalg.vector_norm(sun_gc[:2]), torch.atan2(sun_gc[1], sun_gc[0])
    phi = phi0 + torch.linspace(-0.08, 0.08, 9, dtype=torch.float64)  # +-0.65 kpc along the circle
    circle_gc = torch.stack([r * torch.cos(phi), r * torch.sin(phi), torch.full_like(phi, 0.1)], -1)
    rot, x_sun, _ = SUN.affine()
    circle_h = (circle_gc - torch.as_tensor(x_sun)) @ torch.as_tensor(rot)  # x_h = R^T (x_gc - x_sun)
    v_turned = torch.tensor([[-20.0, 15.0, 8.0]], dtype=torch.float64).expand(9, 3)
    v_h = velocities_at_sun_azimuth(circle_h, v_turned, FRAME, inverse=True)
    values = f(circle_h, v_h)
    assert (values - values[4]).abs().max().item() < 1e-9
    assert (f(circle_h, v_turned) - values[4]).abs().max().item() > 1.0


def test_a_flow_on_turned_velocities_is_the_plain_flow_at_the_turned_velocities():
    plain = build_flow(DFSection(transforms=2, hidden=[16, 16]), 3, 1.0).double()
    turning = build_flow(DFSection(transforms=2, hidden=[16, 16], rotate_velocities=True), 3, 1.0, SUN).double()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))
    turning.load_state_dict({**plain.state_dict(), "sun_frame": turning.sun_frame})
    for f in (plain, turning):
        f.set_standardisation(torch.zeros(6, dtype=torch.float64),
                              torch.tensor([0.5, 0.5, 0.5, 40.0, 40.0, 40.0], dtype=torch.float64), 1000)
    x, v = _stars(300, 1)
    x = x.clamp(-0.55, 0.55)
    w = torch.cat([x, v], -1)
    turned = torch.cat([x, velocities_at_sun_azimuth(x, v, FRAME)], -1)
    assert torch.allclose(turning.log_prob(w), plain.log_prob(turned), atol=1e-10)
    a = turning.sample(200, torch.Generator().manual_seed(5))
    b = plain.sample(200, torch.Generator().manual_seed(5))
    assert torch.allclose(a[:, :3], b[:, :3]) and not torch.allclose(a[:, 3:], b[:, 3:], atol=1e-3)
    assert torch.allclose(velocities_at_sun_azimuth(a[:, :3], a[:, 3:], FRAME), b[:, 3:], atol=1e-9)
    with pytest.raises(ValueError, match="rotate_velocities"):
        build_flow(DFSection(rotate_velocities=True), 3, 1.0)


@pytest.mark.parametrize("n_in, n_out", [(6, 128), (128, 12), (6, 12), (3, 128), (128, 3)])
def test_a_padded_narrow_layer_is_a_linear_layer_on_any_number_of_threads(n_in, n_out):
    """models.layers.linear pads a narrow side with zeros: in float64 its output equals the linear layer's to
    round-off and its first and second derivatives pass torch.autograd.gradcheck; in float32 the output
    and the gradients of a training-sized batch (2048) are the same bits on 1 and 2 threads (the driver
    lends idle ranks' threads to busy ones; a member must not depend on that)."""
    from dpot_hpc.models.layers import linear as padded_linear

    g = torch.Generator().manual_seed(n_in + n_out)
    x, w, b = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in ((9, n_in), (n_out, n_in), (n_out,)))
    assert torch.allclose(padded_linear(x, w, b), torch.nn.functional.linear(x, w, b), rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(padded_linear, (x, w, b))
    assert torch.autograd.gradgradcheck(padded_linear, (x, w, b))
    x, w, b = (torch.randn(*s, generator=g, requires_grad=True) for s in ((2048, n_in), (n_out, n_in), (n_out,)))
    before, out = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            y = padded_linear(x, w, b)
            out.append((y, *torch.autograd.grad((y * y).sum(), (x, w, b))))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(p, q) for p, q in zip(*out))


def test_a_flow_with_narrow_products_is_the_flow_with_linear_layers(monkeypatch):
    """ln p of a default-size flow (6 transforms, 2 tanh steps, random weights) and its gradients with
    respect to the weights and the points: the same with ``torch.nn.functional.linear`` in place of
    ``models.layers.linear`` to float32 round-off (1e-5 of each gradient's largest component)."""
    from dpot_hpc.models import flows

    flow = build_flow(DFSection(), 3, 1.0)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    z = torch.randn(3000, 6, generator=torch.Generator().manual_seed(1), requires_grad=True)
    params = [*flow.parameters(), z]
    out = []
    for linear in (flows.linear, torch.nn.functional.linear):
        monkeypatch.setattr(flows, "linear", linear)
        lp = flow.log_prob_standard(z)
        out.append((lp.detach(), torch.autograd.grad(lp.mean(), params)))
    (lp_a, g_a), (lp_b, g_b) = out
    assert torch.allclose(lp_a, lp_b, rtol=0, atol=1e-4)
    for a, b in zip(g_a, g_b):
        assert torch.allclose(a, b, rtol=0, atol=1e-5 * b.abs().max().item() + 1e-12)
