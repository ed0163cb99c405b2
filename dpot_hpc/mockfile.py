"""The built-in mock as a file: stars (Cartesian and Gaia-like observables) plus the truth.

Layout of mock.h5 (units in each dataset's ``unit`` attribute):
  /x /y /z [kpc] /vx /vy /vz [km/s]      heliocentric Galactic Cartesian, velocities rel. Sun
  /ra /dec [deg] /parallax [mas] /pmra /pmdec [mas/yr] /radial_velocity [km/s]  (exact values)
  /parallax_error /pmra_error /pmdec_error /radial_velocity_error   quoted (nominal) errors
  /phot_g_mean_mag [mag] from M_G uniform in [-1, 4] at the star's distance; /ruwe (all 1.0)
  /source_id                              row number
  /component                              index of the isothermal component of each star
  /truth  attrs: omega_p_kms_kpc, galaxy (JSON parameters), components (JSON), frame (JSON),
          log_c (per-component DF normalisation), scalars (JSON: a_x, a_y, a_z, omega_p, rho_R0, rho_dm)
  /truth/grid/x (N,3) [kpc], phi [(km/s)^2], accel (N,3) [(km/s)^2/kpc], rho, rho_baryons [Msun/pc^3]
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np
import torch

from .checkpoints import atomic_h5
from .config import Config, sun_frame
from .constants import LAPLACIAN_TO_RHO_MSUN_PC3, MSUN_PER_KPC3_TO_MSUN_PER_PC3
from .frames import helio_to_galcen
from .gaia import OBSERVABLE_UNITS, helio_to_observables
from .galaxy import GalaxyModel
from .mock import Component, MockGalaxy, sample, truth_fields
from .summary import evaluation_grid, scalars_from_fields


def mock_galaxy(cfg: Config) -> MockGalaxy:
    """The MockGalaxy described by the config's mock, frame and catalogue sections."""
    m = cfg.mock
    galaxy = GalaxyModel(
        disc_mass_msun=m.disc_mass_msun, disc_a_kpc=m.disc_a_kpc, disc_b_kpc=m.disc_b_kpc,
        bulge_mass_msun=m.bulge_mass_msun, bulge_a_kpc=m.bulge_a_kpc,
        halo_mass_msun=m.halo_mass_msun, halo_rs_kpc=m.halo_rs_kpc,
        bar_strength=m.bar_strength, bar_radius_kpc=m.bar_radius_kpc, bar_angle_deg=m.bar_angle_deg,
        r0_kpc=cfg.frame.r0_kpc,
    )
    comps = tuple(Component(float(c["sigma_kms"]), float(c["fraction"])) for c in m.components)
    return MockGalaxy(galaxy, m.omega_p_kms_kpc, comps, sun_frame(cfg), cfg.catalogue.r_max_kpc)


def truth_on_grid(mock: MockGalaxy, cfg: Config) -> dict:
    """Truth fields on the evaluation grid and the truth scalars."""
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    phi, accel, lap = truth_fields(mock, grid)
    x_gc = helio_to_galcen(grid, torch.zeros_like(grid), mock.sun)[0]
    rho_b = mock.galaxy.rho_baryons(x_gc) * MSUN_PER_KPC3_TO_MSUN_PER_PC3
    rho = lap * LAPLACIAN_TO_RHO_MSUN_PC3
    scalars = scalars_from_fields(grid, accel, rho, rho_b, mock.sun, cfg.summary)
    scalars["omega_p"] = mock.omega_p_kms_kpc
    return {"x": grid, "phi": phi, "accel": accel, "rho": rho, "rho_baryons": rho_b, "scalars": scalars}


def write_mock(path: str | Path, cfg: Config, log=print) -> Path:
    """Draw the built-in mock described by cfg and write it (atomically) to path."""
    mock = mock_galaxy(cfg)
    log(f"mock: drawing {cfg.mock.n_stars} stars (Omega_p = {mock.omega_p_kms_kpc} km/s/kpc)")
    s = sample(mock, cfg.mock.n_stars, cfg.mock.seed)
    x, v = s.x_h.numpy(), s.v_h.numpy()
    log("mock: Gaia observables (astropy)")
    obs = helio_to_observables(x, v)
    rng = np.random.default_rng(cfg.mock.seed)
    abs_g = rng.uniform(-1.0, 4.0, len(x))
    g_mag = abs_g + 5.0 * np.log10(100.0 * np.linalg.norm(x, axis=1))
    truth = truth_on_grid(mock, cfg)
    units = dict(zip(["x", "y", "z", "vx", "vy", "vz"], ["kpc"] * 3 + ["km/s"] * 3))
    obs_units = OBSERVABLE_UNITS
    err = {"parallax_error": cfg.mock.parallax_error_mas, "pmra_error": cfg.mock.pm_error_mas_yr,
           "pmdec_error": cfg.mock.pm_error_mas_yr, "radial_velocity_error": cfg.mock.rv_error_kms}
    with atomic_h5(path) as f:
        f.attrs["kind"] = "dpot-hpc mock"
        for i, name in enumerate(units):
            ds = f.create_dataset(name, data=(x if i < 3 else v)[:, i % 3])
            ds.attrs["unit"] = units[name]
        for name, arr in obs.items():
            f.create_dataset(name, data=arr).attrs["unit"] = obs_units[name]
        for name, val in err.items():
            unit = obs_units[name.replace("_error", "")]
            f.create_dataset(name, data=np.full(len(x), val)).attrs["unit"] = unit
        f.create_dataset("phot_g_mean_mag", data=g_mag).attrs["unit"] = "mag"
        f.create_dataset("ruwe", data=np.ones(len(x)))
        f.create_dataset("source_id", data=np.arange(len(x), dtype=np.int64))
        f.create_dataset("component", data=s.component.numpy())
        t = f.create_group("truth")
        t.attrs["omega_p_kms_kpc"] = mock.omega_p_kms_kpc
        t.attrs["galaxy"] = json.dumps(mock.galaxy.to_dict())
        t.attrs["components"] = json.dumps([asdict(c) for c in mock.components])
        t.attrs["frame"] = json.dumps(asdict(mock.sun))
        t.attrs["log_c"] = s.log_c.numpy()
        t.attrs["scalars"] = json.dumps(truth["scalars"])
        g = t.create_group("grid")
        for name, unit in (("x", "kpc"), ("phi", "(km/s)^2"), ("accel", "(km/s)^2/kpc"), ("rho", "Msun/pc^3"),
                           ("rho_baryons", "Msun/pc^3")):
            g.create_dataset(name, data=truth[name].numpy()).attrs["unit"] = unit
    log(f"mock: wrote {path}")
    return Path(path)


def read_truth(path: str | Path) -> dict | None:
    """The truth scalars and baryon density on the grid of a mock file; None for other catalogues."""
    with h5py.File(path, "r") as f:
        if "truth" not in f:
            return None
        t = f["truth"]
        return {
            "scalars": json.loads(t.attrs["scalars"]),
            "frame": json.loads(t.attrs["frame"]),
            "grid_x": t["grid/x"][()],
            "rho_baryons": t["grid/rho_baryons"][()],
        }
