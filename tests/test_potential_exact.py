"""Potential stage alone, fed the mock's exact ln f gradients: it recovers the truth.

Omega_p within 0.5 km/s/kpc, rho(R=R0) within 10%, and the shell-mean accelerations close to the
analytic potential's.
"""

import shutil

import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.models.potential_training import (COMPILE_MIN_POINTS, build_potential, least_squares_start, loss_function,
                                                loss_terms, residual_weights, train_potential)
from dpot_hpc.physics.cbe import helio_frame_vectors
from dpot_hpc.ensemble.members import member_scalars
from dpot_hpc.physics.mock import log_df_gradients
from dpot_hpc.data.mockfile import truth_on_grid

SETTINGS = ["potential.steps=1500", "potential.batch_size=1024", "potential.penalty_points=256",
            "summary.grid_spacing_kpc=0.04"]


def fit_exact(mock, mock_sample, settings: list[str]) -> tuple[dict, dict]:
    """(scalars, truth) of a potential (seed 7) trained on the mock's exact gradients of ln f at the
    sample's stars inside the cache radius."""
    cfg = load_config(None, settings)
    keep = torch.linalg.vector_norm(mock_sample.x_h, dim=-1) < cfg.cache.r_max_kpc
    x, v = mock_sample.x_h[keep], mock_sample.v_h[keep]
    _, gx, gv = log_df_gradients(mock, mock_sample.log_c, x, v)
    cache = {"x": x, "v": v, "grad_x": gx, "grad_v": gv}
    phi, omega_p, _ = train_potential(cache, cfg.potential, cfg.frame.sun(), seed=7, length_scale_kpc=1.0)
    truth = truth_on_grid(mock, cfg)
    return member_scalars(phi, omega_p, cfg, truth["rho_baryons"], cfg.frame.sun()), truth["scalars"]


@pytest.fixture(scope="module")
def fitted(mock, mock_sample):
    return fit_exact(mock, mock_sample, SETTINGS)


def test_pattern_speed(fitted):
    got, truth = fitted
    assert abs(got["omega_p"] - truth["omega_p"]) < 0.5


def test_local_density(fitted):
    got, truth = fitted
    assert abs(got["rho_R0"] / truth["rho_R0"] - 1) < 0.10


def test_accelerations(fitted):
    got, truth = fitted
    assert abs(got["a_x"] / truth["a_x"] - 1) < 0.03
    for k in ("a_y", "a_z"):
        assert abs(got[k] - truth[k]) < 0.1  # km/s/Myr


def test_static_fit_is_worse_for_a_rotating_mock(mock, mock_sample):
    """Fixing Omega_p = 0 cannot make the rotating mock's residual vanish: the fitted loss is higher."""
    keep = torch.linalg.vector_norm(mock_sample.x_h, dim=-1) < 0.9
    x, v = mock_sample.x_h[keep][:20000], mock_sample.v_h[keep][:20000]
    _, gx, gv = log_df_gradients(mock, mock_sample.log_c, x, v)
    cache = {"x": x, "v": v, "grad_x": gx, "grad_v": gv}
    losses = {}
    for omega in (None, 0.0):
        c = load_config(None, ["potential.steps=300", "potential.batch_size=1024", "potential.penalty_points=64",
                               f"potential.fixed_omega_kms_kpc={'null' if omega is None else omega}",
                               f"potential.omega_init_kms_kpc={mock.omega_p_kms_kpc}"])
        _, _, state = train_potential(cache, c.potential, c.frame.sun(), seed=3, length_scale_kpc=1.0)
        losses[omega] = state.history[-1][1]
    assert losses[0.0] > losses[None] + 0.5


def test_compiled_loss_equals_eager(mock, mock_sample):
    """A long training's loss is compiled (torch.compile) and gives the eager loss and weight gradients
    to float32 round-off; without a C++ compiler it says so and falls back to the eager loss."""
    cfg = load_config(None, [f"potential.steps={COMPILE_MIN_POINTS // 1024 + 1}", "potential.batch_size=1024",
                             "potential.penalty_points=128"])
    pot = cfg.potential
    x, v = mock_sample.x_h[:1024], mock_sample.v_h[:1024]
    _, gx, gv = log_df_gradients(mock, mock_sample.log_c, x, v)
    batch = {k: t.to(torch.float32) for k, t in (("x", x), ("v", v), ("grad_x", gx), ("grad_v", gv))}
    frame = helio_frame_vectors(cfg.frame.sun(), torch.float32, "cpu")
    phi = build_potential(pot, 5, 1.0)
    omega = torch.nn.Parameter(torch.tensor(27.0, dtype=torch.float64))
    messages = []
    results = []
    for fn in (loss_terms, loss_function(pot, messages.append)):
        loss, r_abs, lap = fn(phi, omega, batch, frame, pot)
        grads = torch.autograd.grad(loss, [*phi.parameters(), omega], allow_unused=True)
        results.append((loss, r_abs, lap, grads))
    if shutil.which("c++") or shutil.which("g++"):
        assert messages == []
    else:
        assert messages and "training eagerly" in messages[0]
    (l0, r0, p0, g0), (l1, r1, p1, g1) = results
    assert torch.allclose(l0, l1, rtol=1e-5)
    assert torch.allclose(r0, r1, rtol=1e-4, atol=1e-3)
    assert torch.allclose(p0, p1, rtol=1e-4, atol=1e-2)
    for a, b in zip(g0, g1):
        if a is None or b is None:
            assert a is None and b is None
        else:
            assert torch.allclose(a, b, rtol=2e-3, atol=1e-6 * float(a.abs().max()))


def test_least_squares_start_solves_a_quadratic_potential():
    """A DF of the Jacobi energy E_J = v^2/2 + Phi - Omega.(x x v) (Galactocentric x, v) is stationary in
    the frame rotating at Omega_p for any Phi; with Phi = phi_scale (g.u + u.H.u/2) and the MLP's output
    layer zeroed, the CBE residual vanishes at one (g, H, Omega_p) and the least-squares start finds
    it from float32 cache data, to 1e-4 of each term's size."""
    cfg = load_config(None, [])
    pot, sun = cfg.potential, cfg.frame.sun()
    phi = build_potential(pot, 3, 1.0)
    with torch.no_grad():
        phi.mlp[-1].weight.zero_()
        phi.mlp[-1].bias.zero_()
    g_true = torch.tensor([0.65, -0.02, 0.03], dtype=torch.float64)
    q_true = torch.tensor([-0.25, 0.12, 0.55, 0.04, -0.01, 0.02], dtype=torch.float64)  # xx yy zz xy xz yz
    omega_true = 27.3
    H = torch.tensor([[q_true[0], q_true[3], q_true[4]], [q_true[3], q_true[1], q_true[5]],
                      [q_true[4], q_true[5], q_true[2]]], dtype=torch.float64)
    gc, v_sun, axis = helio_frame_vectors(sun, torch.float64, "cpu")
    gen = torch.Generator().manual_seed(0)
    x = ((torch.rand(8000, 3, generator=gen, dtype=torch.float64) - 0.5) * 1.6).requires_grad_(True)
    v = (torch.randn(8000, 3, generator=gen, dtype=torch.float64) * 30.0).requires_grad_(True)
    x_gc, v_gc = x - gc, v + v_sun
    e_j = (0.5 * (v_gc**2).sum(-1) + pot.phi_scale_kms2 * (x @ g_true + 0.5 * ((x @ H) * x).sum(-1))
           - (torch.linalg.cross(x_gc, v_gc) * (-omega_true * axis)).sum(-1))
    gx, gv = torch.autograd.grad((-e_j / 25.0**2).sum(), [x, v])
    data = {"x": x.detach().float(), "v": v.detach().float(), "grad_x": gx.float(), "grad_v": gv.float()}
    data["weight"] = residual_weights(data["grad_v"])
    omega = torch.nn.Parameter(torch.tensor(pot.omega_init_kms_kpc, dtype=torch.float64))
    least_squares_start(phi, omega, data, helio_frame_vectors(sun, torch.float32, "cpu"), pot, seed=1)
    assert torch.allclose(phi.linear.double(), g_true, atol=1e-4 * float(g_true.abs().max()))
    assert torch.allclose(phi.quadratic.double(), q_true, atol=1e-4 * float(q_true.abs().max()))
    assert abs(omega.item() - omega_true) < 1e-4 * omega_true


def test_least_squares_start_keeps_half_the_budget_accurate(mock, mock_sample):
    """Started at the least-squares solution, the potential needs no long fit to reach a disc's density:
    at half the default learning rate rho(R=R0) on exact gradients stays within 2.5% (measured -1.0%;
    started at zero the same fit leaves it 5.4% low, docs/recovery.md 'What limits the accuracy')."""
    got, truth = fit_exact(mock, mock_sample, [*SETTINGS, "potential.learning_rate=0.003"])
    assert abs(got["rho_R0"] / truth["rho_R0"] - 1) < 0.025
    assert abs(got["omega_p"] - truth["omega_p"]) < 0.1
