"""Potential stage alone, fed the mock's exact ln f gradients: it recovers the truth.

Omega_p within 0.5 km/s/kpc, rho(R=R0) within 10%, and the shell-mean accelerations close to the
analytic potential's.
"""

import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.models.potential_training import train_potential
from dpot_hpc.ensemble.members import member_scalars
from dpot_hpc.physics.mock import log_df_gradients
from dpot_hpc.data.mockfile import truth_on_grid

SETTINGS = ["potential.steps=1500", "potential.batch_size=1024", "potential.penalty_points=256",
            "summary.grid_spacing_kpc=0.04"]


@pytest.fixture(scope="module")
def fitted(mock, mock_sample):
    cfg = load_config(None, SETTINGS)
    keep = torch.linalg.vector_norm(mock_sample.x_h, dim=-1) < cfg.cache.r_max_kpc
    x, v = mock_sample.x_h[keep], mock_sample.v_h[keep]
    _, gx, gv = log_df_gradients(mock, mock_sample.log_c, x, v)
    cache = {"x": x, "v": v, "grad_x": gx, "grad_v": gv}
    phi, omega_p, _ = train_potential(cache, cfg.potential, cfg.frame.sun(), seed=7, length_scale_kpc=1.0)
    truth = truth_on_grid(mock, cfg)
    scalars = member_scalars(phi, omega_p, cfg, truth["rho_baryons"], cfg.frame.sun())
    return scalars, truth["scalars"]


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
