"""The Python API and `dpot-hpc evaluate` on a finished tiny run with several pipelines: the default
members are the summary's best-estimate members, the values equal the summary's own maps, Phi is 0
at the Sun, and positions can be given as astropy coordinates. Its flows turn velocities to the Sun's
azimuth (df.rotate_velocities) and are mixtures of two (df.populations), and read back from their files
they give the gradients the cache holds."""

import json
import os
import subprocess
import sys
import warnings

import astropy.coordinates as coord
import astropy.units as u
import h5py
import numpy as np
import pytest
import torch

import dpot_hpc
from dpot_hpc.api import OutsideVolumeWarning

TINY = ["mock.n_stars=4000", "ensemble.df_seed=2", "ensemble.potential_seed=2", "ensemble.bootstrap=1",
        "ensemble.x0_v0=1", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=2", "df.batch_size=512",
        "cache.n_points=2000", "potential.hidden=[16, 16]", "potential.steps=30", "potential.batch_size=256",
        "potential.penalty_points=32", "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false",
        "df.rotate_velocities=true", "df.populations=2"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("api")
    sets = [a for s in [*TINY, f"run.dir={root / 'run'}"] for a in ("--set", s)]
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "-q", *sets], cwd=root, capture_output=True,
                       text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return root / "run"


@pytest.fixture
def one_thread():
    """One torch thread, as the run's members had (run.threads=1): float32 matrix products summed in
    another blocking differ at 1e-8, and the comparisons below are to 1e-9."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_default_members_are_the_best_estimate_and_equal_the_summary_maps(run_dir, one_thread):
    pot = dpot_hpc.load_potential(run_dir)
    assert pot.ids == ["potential_seed-000", "potential_seed-001"]
    assert sorted(dpot_hpc.load_potential(run_dir, "all").ids) == sorted(
        ["potential_seed-000", "potential_seed-001", "bootstrap-000", "x0_v0-000"])
    assert dpot_hpc.load_potential(run_dir, "bootstrap").ids == ["bootstrap-000"]
    with h5py.File(run_dir / "summary.h5") as f:
        assert sorted(json.loads(f["maps"].attrs["members"])) == pot.ids
        for plane in ("xy", "xz"):
            g = f[f"maps/{plane}"]
            x = g["x"][()].reshape(-1, 3)
            ok = np.isfinite(g["rho"][()].reshape(-1))
            assert ok.sum() > 100
            assert np.allclose(pot.density(x[ok]).to_value(u.Msun / u.pc**3), g["rho"][()].reshape(-1)[ok], rtol=1e-9, atol=0)
            assert np.allclose(pot.acceleration(x[ok]).value, g["accel"][()].reshape(-1, 3)[ok], rtol=1e-9, atol=1e-12)
            assert np.allclose(pot.phi(x[ok]).value, g["phi"][()].reshape(-1)[ok], rtol=1e-9, atol=1e-9)


def test_phi_is_zero_at_the_sun_for_every_member(run_dir):
    pot = dpot_hpc.load_potential(run_dir, "all")
    f = pot.evaluate([[0.0, 0.0, 0.0], [0.3, 0.1, -0.2]])
    assert np.all(f["phi"][:, 0] == 0.0) and np.all(np.abs(f["phi"][:, 1]) > 0)


def test_positions_as_astropy_coordinates(run_dir):
    pot = dpot_hpc.load_potential(run_dir)
    xyz = np.array([[0.3, -0.2, 0.1], [-0.1, 0.4, -0.25]])
    gal = coord.SkyCoord(coord.CartesianRepresentation(xyz.T * u.kpc), frame="galactic")
    ref = pot.density(xyz)
    assert np.allclose(pot.density(gal).value, ref.value, rtol=1e-9)
    assert np.allclose(pot.density(gal.icrs).value, ref.value, rtol=1e-9)  # any frame with distances
    gc = gal.transform_to(pot.sun.astropy_frame())                       # the run's own Galactocentric frame
    assert np.allclose(pot.density(gc).value, ref.value, rtol=1e-9)
    assert np.allclose(pot.acceleration(xyz * u.pc * 1000).value, pot.acceleration(xyz).value, rtol=1e-12)


def test_points_outside_the_fitted_volume_warn_with_a_count(run_dir):
    pot = dpot_hpc.load_potential(run_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pot.density([[0.0, 0.0, 0.0], [0.95, 0.0, 0.0], [0.0, 1.5, 0.0]])
    msgs = [str(w.message) for w in caught if issubclass(w.category, OutsideVolumeWarning)]
    assert len(msgs) == 1 and msgs[0].startswith("2 of 3 points lie outside the fitted volume")


def test_evaluate_writes_medians_and_bands_of_the_best_members(run_dir, tmp_path):
    pts = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.5, 0.1, -0.4]])
    np.savetxt(tmp_path / "pts.txt", pts)
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "evaluate", str(run_dir), "--points", str(tmp_path / "pts.txt"),
                        "--members", "all", "--out", str(tmp_path / "o.h5")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    pot = dpot_hpc.load_potential(run_dir, "all")
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["members/rho"].shape == (4, 3) and f["rho_p16"].attrs["unit"] == "Msun/pc^3"
        assert np.allclose(f["rho"][()], pot.density(pts).value, rtol=1e-9)
        assert np.all(f["rho_p16"][()] <= f["rho"][()]) and np.all(f["rho"][()] <= f["rho_p84"][()])
        assert np.all(f["phi"][()][0] == 0.0)


def test_flow_files_read_back_give_the_gradients_in_the_cache(run_dir):
    """Each DF member file read back (with its Sun frame, from the file) gives, at the best-fit cache's
    points, the gradients of ln f that the cache stored for that flow."""
    from dpot_hpc.ensemble.members import load_flow
    from dpot_hpc.models.flows import log_prob_and_gradients

    with h5py.File(run_dir / "cache" / "best_fit.h5", "r") as f:
        w = torch.from_numpy(np.concatenate([f["x"][:500], f["v"][:500]], axis=1))
        stored, ids = torch.from_numpy(f["flows/grad"][:, :500]), json.loads(f.attrs["flows"])
    assert sorted(ids) == sorted(p.stem for p in (run_dir / "df").glob("*.h5"))  # 2 df_seed, 1 bootstrap
    for k, member in enumerate(ids):
        flow = load_flow(run_dir / "df" / f"{member}.h5")
        assert flow.rotates_velocities and len(flow.parts) == 2
        g = log_prob_and_gradients(flow, w.to(torch.float64))[1].to(stored)
        assert torch.allclose(g, stored[k], rtol=1e-4, atol=1e-5), (g - stored[k]).abs().max()
