"""Gaia DR3 observables <-> heliocentric Galactic Cartesian phase space (astropy both ways).

ra, dec in deg; parallax in mas (distance = 1/parallax); pmra = mu_alpha* cos(dec) and pmdec in
mas/yr; radial_velocity in km/s. Pure functions over numpy arrays.
"""

from __future__ import annotations

import astropy.coordinates as coord
import astropy.units as u
import numpy as np

OBSERVABLES = ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity")
ERRORS = ("parallax_error", "pmra_error", "pmdec_error", "radial_velocity_error")
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


def add_noise(obs: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A copy of obs with Gaussian noise of the quoted errors added to parallax, proper motions and
    radial velocity (positions on the sky are kept: their errors are negligible here)."""
    out = dict(obs)
    for name in ("parallax", "pmra", "pmdec", "radial_velocity"):
        out[name] = obs[name] + rng.standard_normal(obs[name].shape) * obs[f"{name}_error"]
    return out


def absolute_g(phot_g_mean_mag: np.ndarray, parallax_mas: np.ndarray) -> np.ndarray:
    """M_G = G + 5 log10(parallax / mas) - 10 (no extinction)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return phot_g_mean_mag + 5.0 * np.log10(parallax_mas) - 10.0
