"""Gaia DR3 observables <-> heliocentric Galactic Cartesian phase space (astropy both ways).

ra, dec in deg; parallax in mas (distance = 1/parallax); pmra = mu_alpha* cos(dec) and pmdec in
mas/yr; radial_velocity in km/s. Pure functions over numpy arrays, and over torch tensors for the
observables' exact turn into phase space that fitting through the errors draws from (``phase_space``).
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.coordinates as coord
import astropy.units as u
import numpy as np
import torch

from ..constants import KMS_PER_MASYR_KPC

OBSERVABLES = ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity")
#: The observables with quoted errors (the sky positions' are negligible here), and those errors' columns.
NOISY_OBSERVABLES = ("parallax", "pmra", "pmdec", "radial_velocity")
ERRORS = tuple(f"{name}_error" for name in NOISY_OBSERVABLES)
#: Every Gaia DR3 column the ``gaia`` catalogue format reads (names as in the Gaia archive).
COLUMNS = (*OBSERVABLES, *ERRORS, "phot_g_mean_mag", "ruwe", "source_id")
OBSERVABLE_UNITS = {"ra": "deg", "dec": "deg", "parallax": "mas", "pmra": "mas/yr", "pmdec": "mas/yr",
                    "radial_velocity": "km/s", "parallax_error": "mas", "pmra_error": "mas/yr",
                    "pmdec_error": "mas/yr", "radial_velocity_error": "km/s", "phot_g_mean_mag": "mag",
                    "ruwe": "", "source_id": ""}


def observables_to_helio(obs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """ICRS observables -> (x (N,3) kpc, v (N,3) km/s) in astropy's Galactic frame (Cartesian)."""
    icrs = coord.ICRS(
        ra=obs["ra"] * u.deg, dec=obs["dec"] * u.deg, distance=(1.0 / obs["parallax"]) * u.kpc,
        pm_ra_cosdec=obs["pmra"] * u.mas / u.yr, pm_dec=obs["pmdec"] * u.mas / u.yr,
        radial_velocity=obs["radial_velocity"] * u.km / u.s,
    )
    gal = icrs.transform_to(coord.Galactic())
    x = gal.cartesian.xyz.to_value(u.kpc).T
    v = gal.velocity.d_xyz.to_value(u.km / u.s).T
    return np.ascontiguousarray(x), np.ascontiguousarray(v)


def helio_to_observables(x_h: np.ndarray, v_h: np.ndarray) -> dict[str, np.ndarray]:
    """(x (N,3) kpc, v (N,3) km/s) heliocentric Galactic Cartesian -> ICRS observables."""
    rep = coord.CartesianRepresentation(x_h.T * u.kpc, differentials=coord.CartesianDifferential(v_h.T * u.km / u.s))
    icrs = coord.Galactic(rep).transform_to(coord.ICRS())
    return {
        "ra": icrs.ra.to_value(u.deg),
        "dec": icrs.dec.to_value(u.deg),
        "parallax": 1.0 / icrs.distance.to_value(u.kpc),
        "pmra": icrs.pm_ra_cosdec.to_value(u.mas / u.yr),
        "pmdec": icrs.pm_dec.to_value(u.mas / u.yr),
        "radial_velocity": icrs.radial_velocity.to_value(u.km / u.s),
    }


def add_noise(obs: dict[str, np.ndarray], rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    """A copy of obs with Gaussian noise of ``scale`` times the quoted errors added to parallax, proper
    motions and radial velocity (positions on the sky are kept: their errors are negligible here)."""
    out = dict(obs)
    for name in NOISY_OBSERVABLES:
        out[name] = obs[name] + rng.standard_normal(obs[name].shape) * (scale * obs[f"{name}_error"])
    return out


@dataclass(frozen=True)
class ObservedErrors:
    """Each star's noisy observables and their 1-sigma errors, with the directions that turn them into
    heliocentric Galactic phase space (``phase_space``). All (N, ...) float64 tensors:
    ``basis`` (N, 3, 3), columns the line of sight n and the directions of increasing ra and dec (unit
    vectors in Galactic Cartesian axes); ``theta`` (N, 4) and ``sigma`` (N, 4): parallax [mas], pmra,
    pmdec [mas/yr], radial_velocity [km/s] (``NOISY_OBSERVABLES``) and their errors."""

    basis: torch.Tensor
    theta: torch.Tensor
    sigma: torch.Tensor

    def rows(self, idx) -> "ObservedErrors":
        return ObservedErrors(self.basis[idx], self.theta[idx], self.sigma[idx])

    def to(self, device) -> "ObservedErrors":
        return ObservedErrors(self.basis.to(device), self.theta.to(device), self.sigma.to(device))


def observed_errors(obs: dict[str, np.ndarray]) -> ObservedErrors:
    """``ObservedErrors`` of stars given as Gaia columns (observables and ``<name>_error``): the
    directions from astropy's ICRS -> Galactic transform (the tangential ones as the velocity of a unit
    proper motion at unit distance)."""
    unit = {**obs, "parallax": np.ones_like(obs["parallax"]), "pmra": np.zeros_like(obs["pmra"]),
            "pmdec": np.zeros_like(obs["pmdec"]), "radial_velocity": np.zeros_like(obs["radial_velocity"])}
    n_hat, _ = observables_to_helio(unit)
    _, e_ra = observables_to_helio({**unit, "pmra": np.ones_like(obs["pmra"])})
    _, e_dec = observables_to_helio({**unit, "pmdec": np.ones_like(obs["pmdec"])})
    basis = np.stack([n_hat, e_ra / KMS_PER_MASYR_KPC, e_dec / KMS_PER_MASYR_KPC], axis=-1)
    theta = np.stack([obs[k] for k in NOISY_OBSERVABLES], axis=1)
    sigma = np.stack([obs[k] for k in ERRORS], axis=1)
    return ObservedErrors(*(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for a in (basis, theta, sigma)))


def phase_space(basis: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Heliocentric (x [kpc], v [km/s]) (..., 6) of observables theta (..., 4) (parallax [mas], pmra,
    pmdec [mas/yr], radial_velocity [km/s]) along the directions ``basis`` (..., 3, 3)
    (``ObservedErrors``): x = n / parallax, v = v_r n + 4.74047 (pmra e_ra + pmdec e_dec) / parallax."""
    plx = theta[..., :1]
    x = basis[..., 0] / plx
    tangential = theta[..., 1:2] * basis[..., 1] + theta[..., 2:3] * basis[..., 2]
    v = theta[..., 3:4] * basis[..., 0] + KMS_PER_MASYR_KPC * tangential / plx
    return torch.cat([x, v], -1)


#: The DR3-like error model (``dr3_like_errors``): parallax error at G <= 10 and at G >= 15 [mas], and
#: the rms of the log-normal scatter of every error.
PARALLAX_ERROR_BRIGHT_MAS, PARALLAX_ERROR_FAINT_MAS, ERROR_LOG_SCATTER = 0.02, 0.05, 0.15


def dr3_like_errors(g_mag: np.ndarray, rng: np.random.Generator, scale: float = 1.0) -> dict[str, np.ndarray]:
    """Per-star 1-sigma errors like Gaia DR3's for bright stars with radial velocities, a simple model:
    parallax 0.02 mas at G <= 10 rising linearly to 0.05 mas at G >= 15 (Lindegren et al. 2021, A&A 649,
    A2, Fig. 7: 0.02-0.03 mas at G < 13, 0.04-0.05 mas at G = 15), proper motions the same in mas/yr
    (their Fig. 8: sigma_mu ~ sigma_parallax per year for the 34-month baseline), radial velocities
    1 km/s rising to 3 km/s (Katz et al. 2023, A&A 674, A5: median ~1.3 km/s at G_RVS = 12, a few km/s
    at 13-14), each scattered by a log-normal factor of 15% rms, all times ``scale``.
    Returns parallax_error [mas], pmra_error, pmdec_error [mas/yr], radial_velocity_error [km/s]."""
    t = np.clip((np.asarray(g_mag) - 10.0) / 5.0, 0.0, 1.0)
    n = t.shape[0]

    def scatter() -> np.ndarray:
        return scale * np.exp(ERROR_LOG_SCATTER * rng.standard_normal(n))

    base = PARALLAX_ERROR_BRIGHT_MAS + (PARALLAX_ERROR_FAINT_MAS - PARALLAX_ERROR_BRIGHT_MAS) * t
    plx = base * scatter()
    return {"parallax_error": plx, "pmra_error": base * scatter(),
            "pmdec_error": base * scatter(), "radial_velocity_error": (1.0 + 2.0 * t) * scatter()}


def noise_reach_kpc(r_max_kpc: float, scale: float, n_sigma: float = 4.0, cap: float = 1.5) -> float:
    """How far beyond a sphere of r_max_kpc stars must be drawn so that, with ``dr3_like_errors`` at
    ``scale``, noisy parallaxes scatter stars into the sphere as they scatter them out: the distance whose
    parallax falls short of the sphere's edge (1/r_max_kpc mas) by n_sigma times the largest modelled
    error (0.05 mas times scale, two log-normal sigmas up); at most cap times r_max_kpc [kpc]: the
    mock families' densities rise steeply away from the Sun's radius (the corotation saddle,
    docs/method.md 'The mocks': barred_isothermal's colder component has 280 times as many stars at
    1-2 kpc as inside 1 kpc), so beyond ~1.5 r_max they would neither be drawn in reasonable time nor
    resemble the Galaxy. At 1 kpc the reach is complete up to
    1.2 times DR3's errors; at larger scales stars from beyond the cap that would scatter in are missing."""
    sigma_mas = PARALLAX_ERROR_FAINT_MAS * scale * np.exp(2.0 * ERROR_LOG_SCATTER)
    gap_mas = 1.0 / r_max_kpc - n_sigma * sigma_mas
    return float(cap * r_max_kpc if gap_mas <= 1.0 / (cap * r_max_kpc) else 1.0 / gap_mas)


def absolute_g(phot_g_mean_mag: np.ndarray, parallax_mas: np.ndarray) -> np.ndarray:
    """M_G = G + 5 log10(parallax / mas) - 10 (no extinction)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return phot_g_mean_mag + 5.0 * np.log10(parallax_mas) - 10.0
