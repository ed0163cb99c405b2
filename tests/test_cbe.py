"""The CBE residual of the mock's exact DF vanishes at the true pattern speed, and only there."""

import pytest
import torch

from dpot_hpc.physics.cbe import residual_galactocentric, residual_heliocentric
from dpot_hpc.physics.mock import log_df_gradients, truth_fields


@pytest.fixture(scope="module")
def exact(mock, mock_sample):
    x, v = mock_sample.x_h[:3000], mock_sample.v_h[:3000]
    _, gx, gv = log_df_gradients(mock, mock_sample.log_c, x, v)
    _, accel, _ = truth_fields(mock, x)
    # size of the individual terms, to state the tolerance relative to them
    scale = ((v * gx).sum(-1).abs() + (accel * gv).sum(-1).abs()).mean()
    return x, v, gx, gv, accel, scale


@pytest.mark.parametrize("path", [residual_heliocentric, residual_galactocentric])
def test_residual_vanishes_at_true_pattern_speed(mock, exact, path):
    x, v, gx, gv, accel, scale = exact
    omega = torch.tensor(mock.omega_p_kms_kpc, dtype=torch.float64)
    r = path(x, v, gx, gv, accel, omega, mock.sun)
    assert scale > 10.0  # the terms themselves are large (km/s/kpc)
    assert (r.abs().max() / scale).item() < 1e-10


@pytest.mark.parametrize("path", [residual_heliocentric, residual_galactocentric])
@pytest.mark.parametrize("delta", [-3.0, 3.0])
def test_residual_nonzero_off_the_pattern_speed(mock, exact, path, delta):
    x, v, gx, gv, accel, scale = exact
    omega = torch.tensor(mock.omega_p_kms_kpc + delta, dtype=torch.float64)
    r = path(x, v, gx, gv, accel, omega, mock.sun)
    assert (r.abs().mean() / scale).item() > 1e-3


def test_static_potential_gives_nonzero_residual_for_rotating_mock(mock, exact):
    x, v, gx, gv, accel, scale = exact
    r = residual_heliocentric(x, v, gx, gv, accel, torch.tensor(0.0, dtype=torch.float64), mock.sun)
    assert (r.abs().mean() / scale).item() > 1e-2


def test_two_code_paths_agree_for_any_omega(mock, exact):
    x, v, gx, gv, accel, scale = exact
    for om in (0.0, 17.0, 40.0):
        o = torch.tensor(om, dtype=torch.float64)
        a = residual_heliocentric(x, v, gx, gv, accel, o, mock.sun)
        b = residual_galactocentric(x, v, gx, gv, accel, o, mock.sun)
        assert ((a - b).abs().max() / scale).item() < 1e-12
