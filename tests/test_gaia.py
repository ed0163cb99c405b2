"""Gaia observables through astropy: round trip, cuts with counts, noise and bootstrap resampling."""

import math
import warnings

import h5py
import numpy as np
import pytest
import torch
from astropy.table import Table

from dpot_hpc.data.tables import CatalogueError
from dpot_hpc.config import load_config
from dpot_hpc.physics.frames import SunFrame, helio_to_galcen
from dpot_hpc.data.mockfile import write_mock
from dpot_hpc.data.prepare import bootstrap_indices, prepare_sample, read_prepared

GAIA = ["catalogue.format=gaia", "cuts.min_stars=100", "catalogue.chunk_rows=3000", "mock.n_stars=10000"]


@pytest.fixture(scope="module")
def mock_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gaia") / "mock.h5"
    write_mock(path, load_config(None, GAIA), log=lambda m: None)
    return path


def _prep(tmp_path, src, *settings, noise_seed=None, name="p.h5"):
    cfg = load_config(None, [*GAIA, *settings])
    prov = prepare_sample(cfg, src, tmp_path / name, noise_seed=noise_seed, log=lambda m: None)
    return read_prepared(tmp_path / name)[0], prov


def test_round_trip_through_gaia_observables(mock_file, tmp_path):
    """Mock Galactocentric stars -> observables -> prepared sample: the same heliocentric coordinates."""
    w, prov = _prep(tmp_path, mock_file, "cuts.parallax_over_error_min=null")
    with h5py.File(mock_file) as f:
        truth = np.stack([f[c][()] for c in ("x", "y", "z", "vx", "vy", "vz")], axis=1)
    assert w.shape == truth.shape
    rel = np.abs(w.numpy() - truth) / np.abs(truth).max(axis=0)
    assert rel.max() < 1e-9
    assert [c[0] for c in prov["cuts"]] == ["finite astrometry", "radial velocity present", "parallax > 0",
                                           "ruwe <= 1.4", "|x| < 1 kpc"]


def test_galactocentric_input_matches_heliocentric(mock_file, tmp_path):
    sun = SunFrame(r0_kpc=8.3, z_sun_kpc=0.025, v_sun_kms=(11.1, 232.2, 7.25))
    with h5py.File(mock_file) as f:
        x = torch.from_numpy(np.stack([f[c][()] for c in ("x", "y", "z")], axis=1))
        v = torch.from_numpy(np.stack([f[c][()] for c in ("vx", "vy", "vz")], axis=1))
    xg, vg = helio_to_galcen(x, v, sun)
    with h5py.File(tmp_path / "gc.h5", "w") as f:
        for i, c in enumerate("xyz"):
            f[c] = xg[:, i].numpy()
            f["v" + c] = vg[:, i].numpy()
    w, _ = _prep(tmp_path, tmp_path / "gc.h5", "catalogue.format=galactocentric", "frame.r0_kpc=8.3",
                 "frame.z_sun_kpc=0.025", "frame.v_sun_kms=[11.1, 232.2, 7.25]")
    assert np.allclose(w[:, :3].numpy(), x.numpy(), atol=1e-12)
    assert np.allclose(w[:, 3:].numpy(), v.numpy(), atol=1e-10)


def test_cuts_report_what_they_removed(mock_file, tmp_path):
    with h5py.File(mock_file) as f:
        cols = {k: f[k][()] for k in ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity", "parallax_error",
                                      "pmra_error", "pmdec_error", "radial_velocity_error", "phot_g_mean_mag", "ruwe")}
    n = len(cols["ra"])
    cols["radial_velocity"][:100] = np.nan  # no RV
    cols["parallax"][100:110] = -0.5  # negative parallax
    cols["pmra"][110:115] = np.nan  # 2-parameter solutions
    cols["ruwe"][200:250] = 2.0
    cols["parallax_error"][300:400] = cols["parallax"][300:400]  # parallax_over_error = 1
    Table(cols).write(tmp_path / "g.fits")
    w, prov = _prep(tmp_path, tmp_path / "g.fits", "cuts.abs_mag_g_max=3.0")
    removed = {name: k for name, k, _ in prov["cuts"]}
    assert removed["finite astrometry"] == 5
    assert removed["radial velocity present"] == 100
    assert removed["parallax > 0"] == 10
    assert removed["parallax_over_error >= 10"] == 100
    assert removed["ruwe <= 1.4"] == 50
    mg = cols["phot_g_mean_mag"] + 5 * np.log10(cols["parallax"].clip(1e-9)) - 10
    survivors = np.ones(n, bool)
    survivors[:115] = False
    survivors[200:250] = False
    survivors[300:400] = False
    assert removed["-inf <= M_G <= 3"] == int((survivors & (mg > 3.0)).sum())
    assert prov["cuts"][-1][2] == w.shape[0]


def test_noise_resampling_matches_the_quoted_errors(mock_file, tmp_path):
    """Chi-square of (noisy - true) parallaxes over the quoted errors follows chi2(N)."""
    settings = ("cuts.parallax_over_error_min=null", "cuts.ruwe_max=null", "catalogue.r_max_kpc=10")
    w0, _ = _prep(tmp_path, mock_file, *settings, name="a.h5")
    _prep(tmp_path, mock_file, *settings, noise_seed=5, name="b.h5")
    _prep(tmp_path, mock_file, *settings, noise_seed=5, name="c.h5")
    with h5py.File(tmp_path / "b.h5") as fb, h5py.File(tmp_path / "c.h5") as fc, h5py.File(mock_file) as fm:
        ids = fb["source_id"][()]
        dp = fb["parallax"][()] - fm["parallax"][()][ids]
        chi2 = float(np.sum((dp / fb["parallax_error"][()]) ** 2))
        assert np.array_equal(fb["parallax"][()], fc["parallax"][()])  # same seed, same sample
    n = len(dp)
    assert abs(chi2 - n) < 4 * math.sqrt(2 * n)  # chi2(N) has mean N and sd sqrt(2N)
    assert abs(np.mean(dp / 0.02)) < 4 / math.sqrt(n)


def test_bootstrap_and_frame_draws_are_deterministic(default_config):
    a, b = bootstrap_indices(1000, 3), bootstrap_indices(1000, 3)
    assert len(a) == 1000 and np.array_equal(a, b) and len(np.unique(a)) < 1000
    assert not np.array_equal(a, bootstrap_indices(1000, 4))
    suns = [default_config.frame.draw_sun(s) for s in range(400)]
    r0 = np.array([s.r0_kpc for s in suns])
    assert abs(r0.mean() - 8.122) < 4 * 0.031 / 20 and abs(r0.std() / 0.031 - 1) < 0.15
    assert default_config.frame.draw_sun(7) == default_config.frame.draw_sun(7)


def test_bad_gaia_inputs(mock_file, tmp_path):
    with pytest.raises(CatalogueError, match=r"column 'plx' missing \(Gaia parallax, catalogue\.gaia_columns\.parallax"):
        _prep(tmp_path, mock_file, "catalogue.gaia_columns.parallax=plx")
    with h5py.File(mock_file) as f:
        cols = {k: f[k][()] for k in ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity", "parallax_error")}
    Table(cols).write(tmp_path / "noruwe.fits")
    with pytest.raises(CatalogueError, match=r"column 'ruwe' missing \(Gaia ruwe"):
        _prep(tmp_path, tmp_path / "noruwe.fits")
    with pytest.raises(CatalogueError, match="fewer than cuts.min_stars"):
        _prep(tmp_path, mock_file, "cuts.parallax_over_error_min=1e9")
    with pytest.raises(CatalogueError, match="needs catalogue.format: gaia"):
        cfg = load_config(None, ["cuts.min_stars=100"])
        prepare_sample(cfg, mock_file, tmp_path / "x.h5", noise_seed=1, log=lambda m: None)


def test_cuts_that_thin_out_the_sample_towards_the_edge_are_warned_about(mock_file, tmp_path):
    """At three times DR3's errors parallax_over_error >= 10 removes distant stars first: the prepared
    sample is incomplete towards the sphere's edge. The warning says so and suggests the M_G limit at
    which the sample is volume-complete; with that limit the edge loses no more than the centre."""
    from dpot_hpc.data.prepare import DataWarning

    noisy = tmp_path / "noisy.h5"
    write_mock(noisy, load_config(None, [*GAIA, "mock.n_stars=30000", "mock.noise=true", "mock.noise_scale=3"]),
               log=lambda m: None)
    with pytest.warns(DataWarning, match=r"parallax_over_error >= 10.*thins out.*cuts\.abs_mag_g_max: (-?[0-9.]+)") as rec:
        _, prov = _prep(tmp_path, noisy, "mock.n_stars=30000")
    edge = prov["edge_losses"]
    assert edge["outer_removed"] > 0.2 and edge["inner_removed"] < 0.02  # the cut bites at 0.8-1 kpc only
    limit = edge["suggested_abs_mag_g_max"]
    assert f"cuts.abs_mag_g_max: {limit:g}" in str(rec[0].message) and -1.0 < limit < 2.0  # M_G in [-1, 4]
    _, prov = _prep(tmp_path, noisy, f"cuts.abs_mag_g_max={limit}", name="complete.h5")
    assert not prov["edge_losses"]["warn"]
    # exact parallaxes: the same cut removes nobody, and nothing is said
    _, prov = _prep(tmp_path, mock_file, name="exact.h5")
    assert not prov["edge_losses"]["warn"] and prov["edge_losses"]["outer_removed"] == 0.0


def test_a_catalogue_that_stops_at_the_sphere_is_warned_about_when_it_is_re_noised(mock_file, tmp_path):
    """Re-noised copies (obs_noise) of a catalogue with no stars beyond the sphere lose stars at the
    edge and gain none. The exact mock stops at 1 kpc: warned about; the noisy mock, drawn beyond the
    sphere, is not; nor is the exact mock when nothing re-noises it."""
    from dpot_hpc.data.prepare import DataWarning

    with pytest.warns(DataWarning, match=r"0 stars lie at 1-1.1 kpc against [0-9]+ at 0.9-1 kpc.*extends past"):
        _prep(tmp_path, mock_file, "ensemble.obs_noise=1")
    noisy = tmp_path / "noisy.h5"
    write_mock(noisy, load_config(None, [*GAIA, "mock.noise=true"]), log=lambda m: None)
    for src, settings in ((noisy, ["ensemble.obs_noise=1"]), (mock_file, [])):
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataWarning)
            _, prov = _prep(tmp_path, src, *settings, name="quiet.h5")
    assert prov["edge_losses"]["stars_beyond_rim"] == 0 and prov["edge_losses"]["stars_inside_rim"] > 1000


def test_bootstrap_means_scatter_like_the_full_sample_mean():
    """The premise of the DF term of the band: the spread of a statistic over the bootstrap resamples
    estimates the sampling variance of the statistic on the full sample, sigma^2 / n for a mean (for the
    flows it holds only as an upper bound: docs/recovery.md); 400 resamples: the variance to +-7% (1 sd),
    tolerance 25%."""
    x = np.random.default_rng(0).normal(size=2000)
    means = np.array([x[bootstrap_indices(x.size, s)].mean() for s in range(400)])
    assert abs(means.var(ddof=1) / (x.var() / x.size) - 1) < 0.25
