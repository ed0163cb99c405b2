"""The built-in mock as a file: stars (Cartesian and Gaia-like observables) plus the truth.

Layout of mock.h5 (units in each dataset's ``unit`` attribute):
  /x /y /z [kpc] /vx /vy /vz [km/s]      heliocentric Galactic Cartesian, velocities rel. Sun: mock.n_stars
                                          stars inside catalogue.r_max_kpc, then (mock.noise only) the
                                          stars of the shell out to gaia.noise_reach_kpc
  /ra /dec [deg] /parallax [mas] /pmra /pmdec [mas/yr] /radial_velocity [km/s]  (exact values)
  /parallax_error /pmra_error /pmdec_error /radial_velocity_error   quoted (nominal) errors
  /phot_g_mean_mag [mag] from M_G uniform in [-1, 4] at the star's distance; /ruwe (all 1.0)
  /source_id                              row number
  /component                              index of the isothermal component of each star
  /truth  attrs: family, omega_p_kms_kpc, galaxy (JSON parameters), components (JSON), frame (JSON),
          log_c (per-component DF normalisation), scalars (JSON: a_x, a_y, a_z, omega_p, rho_R0, rho_dm)
  /truth/grid/x (N,3) [kpc], phi [(km/s)^2], accel (N,3) [(km/s)^2/kpc], rho, rho_baryons [Msun/pc^3]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from ..config import Config
from ..constants import LAPLACIAN_TO_RHO_MSUN_PC3, MSUN_PER_KPC3_TO_MSUN_PER_PC3, PHASE_SPACE_COLUMNS, PHASE_SPACE_UNITS
from ..physics.frames import SunFrame, helio_positions_to_galcen
from ..physics.gaia import OBSERVABLE_UNITS, add_noise, dr3_like_errors, helio_to_observables, noise_reach_kpc
from ..physics.galaxy import GalaxyModel
from ..physics.mock import MockGalaxy, MockSample, galaxy_fields, mock_family, sample, sample_shell, truth_fields
from ..physics.scalars import evaluation_grid, scalars_from_fields
from ..seeds import derived_seed
from .h5io import atomic_h5
from .provenance import MOCK_SETTINGS, stamp


def mock_galaxy(cfg: Config) -> MockGalaxy:
    """The MockGalaxy of the config's mock family, with the frame section's Sun and the catalogue's sphere."""
    return mock_family(cfg.mock.family, cfg.frame.sun(), cfg.catalogue.r_max_kpc)


def truth_on_grid(mock: MockGalaxy, cfg: Config) -> dict:
    """Truth fields on the evaluation grid and the truth scalars."""
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    phi, accel, lap = truth_fields(mock, grid)
    rho_b = mock.galaxy.rho_baryons(helio_positions_to_galcen(grid, mock.sun)) * MSUN_PER_KPC3_TO_MSUN_PER_PC3
    rho = lap * LAPLACIAN_TO_RHO_MSUN_PC3
    scalars = scalars_from_fields(grid, accel, rho, rho_b, mock.sun, cfg.summary)
    scalars["omega_p"] = mock.omega_p_kms_kpc
    return {"x": grid, "phi": phi, "accel": accel, "rho": rho, "rho_baryons": rho_b, "scalars": scalars}


def write_mock(path: str | Path, cfg: Config, log=print) -> Path:
    """Draw the built-in mock described by cfg and write it (atomically) to path."""
    mock = mock_galaxy(cfg)
    log(f"mock: drawing {cfg.mock.n_stars} stars of the {cfg.mock.family} family "
        f"(Omega_p = {mock.omega_p_kms_kpc} km/s/kpc)")
    s = sample(mock, cfg.mock.n_stars, cfg.mock.seed)
    if cfg.mock.noise:
        s = _with_shell(mock, s, cfg, log)
    x, v = s.x_h.numpy(), s.v_h.numpy()
    log("mock: Gaia observables (astropy)")
    obs = helio_to_observables(x, v)
    rng = np.random.default_rng(cfg.mock.seed)
    abs_g = rng.uniform(-1.0, 4.0, len(x))
    g_mag = abs_g + 5.0 * np.log10(100.0 * np.linalg.norm(x, axis=1))
    truth = truth_on_grid(mock, cfg)
    exact = obs
    if cfg.mock.noise:
        noise_rng = np.random.default_rng([cfg.mock.seed, 7])
        err = dr3_like_errors(g_mag, noise_rng, cfg.mock.noise_scale)
        obs = {k: v for k, v in add_noise({**obs, **err}, noise_rng).items() if k in obs}
        log(f"mock: Gaia DR3-like errors applied (x{cfg.mock.noise_scale:g}; median parallax error "
            f"{np.median(err['parallax_error']):.3f} mas)")
    else:
        err = {k: np.full(len(x), val) for k, val in (
            ("parallax_error", cfg.mock.parallax_error_mas), ("pmra_error", cfg.mock.pm_error_mas_yr),
            ("pmdec_error", cfg.mock.pm_error_mas_yr), ("radial_velocity_error", cfg.mock.rv_error_kms))}
    with atomic_h5(path) as f:
        f.attrs["kind"] = "dpot-hpc mock"
        stamp(f.attrs, cfg, MOCK_SETTINGS)
        for i, (name, unit) in enumerate(zip(PHASE_SPACE_COLUMNS, PHASE_SPACE_UNITS)):
            f.create_dataset(name, data=(x if i < 3 else v)[:, i % 3]).attrs["unit"] = unit
        for name, arr in obs.items():
            f.create_dataset(name, data=arr).attrs["unit"] = OBSERVABLE_UNITS[name]
        for name, arr in err.items():
            f.create_dataset(name, data=arr).attrs["unit"] = OBSERVABLE_UNITS[name]
        f.create_dataset("phot_g_mean_mag", data=g_mag).attrs["unit"] = "mag"
        f.create_dataset("ruwe", data=np.ones(len(x)))
        f.create_dataset("source_id", data=np.arange(len(x), dtype=np.int64))
        f.create_dataset("component", data=s.component.numpy())
        t = f.create_group("truth")
        t.attrs["family"] = cfg.mock.family
        t.attrs["omega_p_kms_kpc"] = mock.omega_p_kms_kpc
        t.attrs["galaxy"] = json.dumps(mock.galaxy.to_dict())
        t.attrs["components"] = json.dumps([asdict(c) for c in mock.components])
        t.attrs["frame"] = json.dumps(asdict(mock.sun))
        t.attrs["log_c"] = s.log_c.numpy()
        t.attrs["scalars"] = json.dumps(truth["scalars"])
        t.attrs["noise"] = json.dumps({"applied": cfg.mock.noise, "scale": cfg.mock.noise_scale})
        for name, arr in exact.items():
            t.create_dataset(f"observables/{name}", data=arr).attrs["unit"] = OBSERVABLE_UNITS[name]
        g = t.create_group("grid")
        for name, unit in (("x", "kpc"), ("phi", "(km/s)^2"), ("accel", "(km/s)^2/kpc"), ("rho", "Msun/pc^3"),
                           ("rho_baryons", "Msun/pc^3")):
            g.create_dataset(name, data=truth[name].numpy()).attrs["unit"] = unit
    log(f"mock: wrote {path}")
    return Path(path)


def _with_shell(mock: MockGalaxy, s: MockSample, cfg: Config, log) -> MockSample:
    """The sample plus the stars out to ``gaia.noise_reach_kpc`` beyond the sphere (after it), so that
    noisy distances scatter stars into the sphere as well as out of it, as in a real catalogue."""
    r_out = noise_reach_kpc(mock.r_max_kpc, cfg.mock.noise_scale)
    shell = sample_shell(mock, s.log_c, r_out, derived_seed(cfg.mock.seed, "mock-shell"))
    log(f"mock: {len(shell.x_h)} more stars between {mock.r_max_kpc:g} and {r_out:.2f} kpc, whose noisy "
        "distances may scatter them into the sphere")
    return MockSample(torch.cat([s.x_h, shell.x_h]), torch.cat([s.v_h, shell.v_h]),
                      torch.cat([s.component, shell.component]), s.log_c)


@dataclass(frozen=True)
class MockTruth:
    """What a mock file knows about its galaxy: the truth scalars, the analytic potential, the frame
    it was drawn in, and the truth on its evaluation grid (kpc, Msun/pc^3)."""

    scalars: dict
    galaxy: GalaxyModel
    omega_p_kms_kpc: float
    frame: dict
    grid_x: np.ndarray
    rho_baryons: np.ndarray

    def baryon_density(self, x_h: torch.Tensor, sun: SunFrame) -> torch.Tensor:
        """The mock's disc + bulge density (Msun/pc^3) at heliocentric points x_h (kpc) seen from ``sun``."""
        return self.galaxy.rho_baryons(helio_positions_to_galcen(x_h, sun)) * MSUN_PER_KPC3_TO_MSUN_PER_PC3

    @property
    def sun(self) -> SunFrame:
        """The frame the mock was drawn in (where its heliocentric positions are measured from)."""
        return SunFrame(**{**self.frame, "v_sun_kms": tuple(self.frame["v_sun_kms"])})

    def fields(self, x_h: torch.Tensor) -> dict[str, torch.Tensor]:
        """The true phi [(km/s)^2], accel = -grad Phi [(km/s)^2/kpc, heliocentric axes] and rho
        [Msun/pc^3] at heliocentric points x_h (N, 3) kpc, float64."""
        phi, accel, lap = galaxy_fields(self.galaxy, self.sun, x_h.to(torch.float64))
        return {"phi": phi, "accel": accel, "rho": lap * LAPLACIAN_TO_RHO_MSUN_PC3}


def read_stars(path: str | Path) -> torch.Tensor:
    """The stars of a mock file (N, 6): x, y, z [kpc], vx, vy, vz [km/s], heliocentric."""
    with h5py.File(path, "r") as f:
        return torch.from_numpy(np.stack([f[c][()] for c in PHASE_SPACE_COLUMNS], axis=1))


def read_truth(path: str | Path) -> MockTruth | None:
    """The truth of a mock file; None for an HDF5 catalogue without a /truth group."""
    with h5py.File(path, "r") as f:
        if "truth" not in f:
            return None
        t = f["truth"]
        return MockTruth(
            scalars=json.loads(t.attrs["scalars"]),
            galaxy=GalaxyModel(**json.loads(t.attrs["galaxy"])),
            omega_p_kms_kpc=float(t.attrs["omega_p_kms_kpc"]),
            frame=json.loads(t.attrs["frame"]),
            grid_x=t["grid/x"][()],
            rho_baryons=t["grid/rho_baryons"][()],
        )
