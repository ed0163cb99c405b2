"""Flows fitted through the stars' quoted velocity errors (``df.deconvolve``, issue 15): each star's
velocity noise, the deconvolving likelihood, its training (recovering an error-free dispersion,
resuming bit-for-bit) and a run that uses it."""

import copy
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from dpot_hpc.config import ConfigError, DFSection, load_config
from dpot_hpc.data.prepare import read_velocity_errors
from dpot_hpc.models.df_training import train_flow
from dpot_hpc.models.training import LoopHooks
from dpot_hpc.physics.gaia import helio_to_observables, observables_to_helio, velocity_error_offsets

K_KMS = 4.740470463  # km/s per (mas/yr x kpc)


def _observables(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.4, (n, 3))
    v = rng.normal(0.0, 30.0, (n, 3))
    obs = helio_to_observables(x, v)
    obs.update(parallax_error=rng.uniform(0.02, 0.05, n), pmra_error=rng.uniform(0.02, 0.05, n),
               pmdec_error=rng.uniform(0.02, 0.05, n), radial_velocity_error=rng.uniform(1.0, 3.0, n))
    return obs


def test_velocity_errors_are_the_velocity_moves_of_one_sigma_errors():
    obs = _observables(500)
    off = velocity_error_offsets(obs)  # (N, 3, 3): pmra, pmdec, radial_velocity
    x, _ = observables_to_helio(obs)
    d = np.linalg.norm(x, axis=1)
    n_hat = x / d[:, None]
    # radial velocity: the error itself along the line of sight
    np.testing.assert_allclose(off[:, :, 2], n_hat * obs["radial_velocity_error"][:, None], rtol=1e-6, atol=1e-9)
    # proper motions: tangential velocity k d sigma, perpendicular to the line of sight and to each other
    for j, name in ((0, "pmra_error"), (1, "pmdec_error")):
        np.testing.assert_allclose(np.linalg.norm(off[:, :, j], axis=1), K_KMS * d * obs[name], rtol=1e-6)
        np.testing.assert_allclose(np.sum(off[:, :, j] * n_hat, axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(np.sum(off[:, :, 0] * off[:, :, 1], axis=1), 0.0, atol=1e-9)


def _blurred_stars(noise_kms: float, n: int = 20000):
    """Stars of a Gaussian DF (sigma_vz = 10 km/s) and their v_z blurred by noise_kms, with the offsets."""
    g = torch.Generator().manual_seed(0)
    true = torch.cat([0.2 * torch.randn(n, 3, generator=g, dtype=torch.float64),
                      torch.tensor([20.0, 15.0, 10.0], dtype=torch.float64) * torch.randn(n, 3, generator=g, dtype=torch.float64)], 1)
    off = torch.zeros(n, 3, 3, dtype=torch.float64)
    off[:, 2, 2] = noise_kms
    obs = true.clone()
    obs[:, 3:] += (off @ torch.randn(n, 3, 1, generator=g, dtype=torch.float64)).squeeze(-1)
    return true, obs, off


SMALL = DFSection(batch_size=512, max_epochs=8, components=0, transforms=3, hidden=[32, 32])


def test_a_flow_fitted_through_the_errors_recovers_the_error_free_dispersion():
    noise = 6.0
    true, obs, off = _blurred_stars(noise)
    excess = float(obs[:, 5].var() - true[:, 5].var())  # ~ noise^2 = 36 (km/s)^2
    recovered = {}
    for name, o in (("plain", None), ("through errors", off)):
        flow, _ = train_flow(obs, SMALL, 1, 1.0, offsets=o)
        s = flow.sample(100_000, torch.Generator().manual_seed(5))
        recovered[name] = float(obs[:, 5].var() - s[:, 5].var()) / excess
        assert abs(float(s[:, 3].std()) / float(true[:, 3].std()) - 1) < 0.03, name  # unblurred v_x untouched
    # the plain flow fits the blurred stars (measured: 0.00); through the errors at least 60% of the
    # blur's variance comes off (measured: 0.79-0.85 with 2 antithetic pairs; 1 pair: 0.57)
    assert abs(recovered["plain"]) < 0.1
    assert recovered["through errors"] > 0.6


def test_a_flow_fitted_through_the_errors_resumes_to_identical_weights():
    _, obs, off = _blurred_stars(4.0, n=4000)
    df = DFSection(batch_size=256, max_epochs=4, components=1, transforms=2, hidden=[16, 16])
    saved = []
    ref, _ = train_flow(obs, df, 3, 1.0, LoopHooks(checkpoint=lambda p: saved.append(copy.deepcopy(p))), offsets=off)
    resumed, state = train_flow(obs, df, 3, 1.0, LoopHooks(resume=copy.deepcopy(saved[1])), offsets=off)
    assert state.epoch == 4
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


@pytest.mark.parametrize("settings, message", [
    (["df.deconvolve=true"], "df.deconvolve: needs catalogue.format: gaia"),
    (["df.deconvolve=true", "catalogue.format=gaia"], "df.deconvolve: the built-in mock's observables are exact"),
    (["df.deconvolve=true", "catalogue.format=gaia", "mock.noise=true", "ensemble.obs_noise=1"],
     "df.deconvolve: the obs_noise members add noise"),
])
def test_deconvolving_without_a_noise_model_to_undo_is_a_config_error(settings, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, settings)


TINY = ["mock.n_stars=3000", "mock.noise=true", "catalogue.format=gaia", "df.deconvolve=true", "df.transforms=2",
        "df.hidden=[16, 16]", "df.max_epochs=2", "cache.n_points=1500", "potential.hidden=[16, 16]",
        "potential.steps=30", "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1",
        "ensemble.bootstrap=2", "ensemble.potential_seed=1"]


def test_a_run_fits_its_flows_through_the_prepared_stars_errors(tmp_path):
    run_dir = tmp_path / "run"
    sets = [a for s in [*TINY, f"run.dir={run_dir}"] for a in ("--set", s)]
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "-q", *sets], capture_output=True, text=True,
                       timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    off = read_velocity_errors(run_dir / "prepared.h5").numpy()
    with h5py.File(run_dir / "prepared.h5") as f:
        rv_err, pm_err, plx = f["radial_velocity_error"][()], f["pmdec_error"][()], f["parallax"][()]
    # each prepared star's velocity noise: its quoted radial-velocity error, its proper-motion error at its distance
    np.testing.assert_allclose(np.linalg.norm(off[:, :, 2], axis=1), rv_err, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(off[:, :, 1], axis=1), K_KMS * pm_err / plx, rtol=1e-6)
    s = json.loads((run_dir / "summary.json").read_text())
    assert all(np.isfinite(s["final"][k]["value"]) for k in ("a_x", "rho_R0", "omega_p"))
    log = (run_dir / "logs").glob("df-*.log")
    assert any("epoch 2/2" in path.read_text() for path in log)


def test_calibration_mocks_of_a_deconvolving_run_carry_errors_to_undo(tmp_path):
    from dpot_hpc.ensemble.calibration import calibration_config
    cfg = load_config(None, ["catalogue.format=gaia", f"catalogue.path={tmp_path / 'dr3.fits'}", "df.deconvolve=true",
                             "calibration.realizations=1", f"run.dir={tmp_path / 'run'}"])
    sub = calibration_config(cfg, "thin_thick_lowered-00", 5000)  # validated like any configuration
    assert sub.mock.noise and sub.df.deconvolve and sub.catalogue.format == "gaia" and sub.catalogue.path is None
