"""The prepared sample: input catalogue -> quality cuts -> heliocentric Galactic Cartesian stars
inside the selection sphere, written to HDF5 with units and provenance. The DF stage reads only
prepared samples.

Cuts, in this order, each reported with the number of stars it removed:
  gaia format: finite astrometry (ra, dec, parallax, pmra, pmdec), radial velocity present,
  parallax > 0, parallax_over_error >= cuts.parallax_over_error_min, ruwe <= cuts.ruwe_max,
  cuts.abs_mag_g_min <= M_G <= cuts.abs_mag_g_max; all formats: inside catalogue.r_max_kpc.
Rows with NaN or infinite values are dropped (gaia: counted above) or, for Cartesian columns,
an error naming the column and the number of rows.

Layout of prepared.h5: x y z [kpc], vx vy vz [km/s] (heliocentric Galactic Cartesian, velocities
relative to the Sun); for gaia input also the observables and their errors (for the noise
resampling) and source_id when present; attrs ``provenance`` (JSON: input file, size, sha256,
format, rows read, cuts with counts, frame, selection radius, noise seed, version, and for gaia input
``edge_losses``: the share of stars the quality cuts removed near the sphere's edge and well inside,
``data.selection``; a sample that thins out towards the edge is warned about).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import torch

from .._version import __version__
from ..config import Config
from ..constants import PHASE_SPACE_COLUMNS, PHASE_SPACE_UNITS
from ..errors import DpotWarning
from ..physics.frames import galcen_to_helio
from ..physics.gaia import (ERRORS, OBSERVABLE_UNITS, OBSERVABLES, ObservedErrors, absolute_g, add_noise,
                            observables_to_helio, observed_errors)
from .h5io import atomic_h5
from .provenance import PREPARED_SETTINGS, fingerprint, stamp
from .selection import EdgeLosses, edge_warning, rim_warning
from .tables import CatalogueError, TableReader


class CutCounter:
    """Ordered cut names with the stars each removed."""

    def __init__(self):
        self.removed: dict[str, int] = {}

    def apply(self, name: str, keep: np.ndarray) -> np.ndarray:
        self.removed[name] = self.removed.get(name, 0) + int((~keep).sum())
        return keep

    def report(self, n_in: int) -> list[list]:
        rows, left = [], n_in
        for name, n in self.removed.items():
            left -= n
            rows.append([name, n, left])
        return rows


def _gaia_chunk(cfg: Config, cols: dict, cuts: CutCounter, rng: np.random.Generator | None, path: Path,
                noise_scale: float = 1.0, edge: EdgeLosses | None = None):
    """Cuts and transform of one chunk of Gaia columns (keys are Gaia names); ``edge`` counts the stars
    the quality cuts (parallax_over_error, ruwe) removed near the sphere's edge."""
    c = cfg.cuts
    keep = np.ones(len(cols["ra"]), dtype=bool)
    finite = np.ones_like(keep)
    for name in ("ra", "dec", "parallax", "pmra", "pmdec"):
        finite &= np.isfinite(cols[name])
    keep &= cuts.apply("finite astrometry", finite)
    keep &= cuts.apply("radial velocity present", np.isfinite(cols["radial_velocity"]) | ~keep)
    obs = {k: v[keep] for k, v in cols.items()}
    if rng is not None:
        obs = add_noise(obs, rng, noise_scale)
    sel = cuts.apply("parallax > 0", obs["parallax"] > 0)
    positive = sel.copy()
    if c.parallax_over_error_min is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            poe = obs["parallax"] / obs["parallax_error"]
        sel &= cuts.apply(f"parallax_over_error >= {c.parallax_over_error_min:g}", (poe >= c.parallax_over_error_min) | ~sel)
    if c.ruwe_max is not None:
        sel &= cuts.apply(f"ruwe <= {c.ruwe_max:g}", (obs["ruwe"] <= c.ruwe_max) | ~sel)
    mg = absolute_g(obs["phot_g_mean_mag"], obs["parallax"]) if "phot_g_mean_mag" in obs else None
    lo = -np.inf if c.abs_mag_g_min is None else c.abs_mag_g_min
    hi = np.inf if c.abs_mag_g_max is None else c.abs_mag_g_max
    mag_cut = c.abs_mag_g_min is not None or c.abs_mag_g_max is not None
    in_range = (mg >= lo) & (mg <= hi) if mag_cut else np.ones_like(sel)
    if edge is not None:  # the quality cuts' losses among the stars of the selected magnitude range
        asked = positive & in_range
        edge.add(1.0 / obs["parallax"][asked], ~sel[asked], None if mg is None else mg[asked])
    if mag_cut:
        sel &= cuts.apply(f"{lo:g} <= M_G <= {hi:g}", in_range | ~sel)
    obs = {k: v[sel] for k, v in obs.items()}
    x, v = observables_to_helio(obs) if len(obs["ra"]) else (np.zeros((0, 3)), np.zeros((0, 3)))
    return x, v, obs


def _cartesian_chunk(cfg: Config, cols: dict, path: Path, names: dict):
    for c in PHASE_SPACE_COLUMNS:
        bad = ~np.isfinite(cols[c])
        if bad.any():
            raise CatalogueError(
                f"catalogue {path}: column {names[c]!r} ({c}) has {int(bad.sum())} NaN or infinite values "
                f"in rows {np.flatnonzero(bad)[:5].tolist()}{'...' if bad.sum() > 5 else ''}"
            )
    x = np.stack([cols[c] for c in PHASE_SPACE_COLUMNS[:3]], axis=1).astype(np.float64)
    v = np.stack([cols[c] for c in PHASE_SPACE_COLUMNS[3:]], axis=1).astype(np.float64)
    if cfg.catalogue.format == "galactocentric":
        xt, vt = galcen_to_helio(torch.from_numpy(x), torch.from_numpy(v), cfg.frame.sun())
        x, v = xt.numpy(), vt.numpy()
    return x, v, {}


def prepare_sample(cfg: Config, input_path: str | Path, out_path: str | Path, noise_seed: int | None = None,
                   log=print, noise_scale: float = 1.0) -> dict:
    """Read, cut and transform the catalogue; write the prepared sample; return its provenance.

    noise_seed: add Gaussian noise of ``noise_scale`` times the quoted errors to the observables before
    the cuts and the transform (gaia format only), deterministically from this seed.
    """
    t0 = time.monotonic()
    path = Path(input_path)
    cat = cfg.catalogue
    gaia = cat.format == "gaia"
    if noise_seed is not None and not gaia:
        raise CatalogueError(f"catalogue {path}: observational-noise resampling needs catalogue.format: gaia")
    with TableReader(path, cat.hdf5_group) as reader:
        if gaia:
            names = gaia_columns_needed(cfg, noise_seed is not None)
            for k, n in names.items():
                reader.require([n], f" (Gaia {k}, catalogue.gaia_columns.{k}; needed for the configured cuts)")
            names.update({c: getattr(cat.gaia_columns, c) for c in (*ERRORS, "source_id", "phot_g_mean_mag")
                          if getattr(cat.gaia_columns, c) in reader.names})
        else:
            names = {k: getattr(cat.columns, k) for k in PHASE_SPACE_COLUMNS}
            reader.require(list(names.values()), " (catalogue.columns)")
        inverse = {v: k for k, v in names.items()}
        cuts = CutCounter()
        edge = EdgeLosses(cat.r_max_kpc) if gaia else None
        xs, vs, extras = [], [], {}
        n_in = reader.n_rows
        for i, chunk in enumerate(reader.chunks(list(names.values()), cat.chunk_rows)):
            cols = {inverse[n]: a for n, a in chunk.items()}
            if gaia:
                rng = None if noise_seed is None else np.random.default_rng([noise_seed, i])
                x, v, obs = _gaia_chunk(cfg, {k: (a if k == "source_id" else a.astype(np.float64)) for k, a in cols.items()},
                                        cuts, rng, path, noise_scale, edge)
            else:
                x, v, obs = _cartesian_chunk(cfg, cols, path, names)
            inside = cuts.apply(f"|x| < {cat.r_max_kpc:g} kpc", np.linalg.norm(x, axis=1) < cat.r_max_kpc)
            xs.append(x[inside])
            vs.append(v[inside])
            for k, a in obs.items():
                extras.setdefault(k, []).append(a[inside])
            log(f"prepare: rows {min((i + 1) * cat.chunk_rows, n_in)}/{n_in}, kept {sum(len(a) for a in xs)}")
    if n_in == 0:
        raise CatalogueError(f"catalogue {path} has no rows")
    x, v = np.concatenate(xs), np.concatenate(vs)
    report = cuts.report(n_in)
    if len(x) < cfg.cuts.min_stars:
        table = "; ".join(f"{name}: -{n} -> {left}" for name, n, left in report)
        raise CatalogueError(
            f"catalogue {path}: {len(x)} of {n_in} stars survive the selection, fewer than cuts.min_stars = "
            f"{cfg.cuts.min_stars} ({table})"
        )
    source = fingerprint(path)
    _warn_duplicates(path, x, v, extras.get("source_id"))
    edge_losses = edge.result() if edge is not None else None
    if edge_losses and edge_losses["warn"] and noise_seed is None:  # re-noised copies: recorded, not warned about
        quality = [name for name in cuts.removed if name.startswith(("parallax_over_error", "ruwe"))]
        warnings.warn(edge_warning(str(path), edge_losses, quality), DataWarning, stacklevel=2)
    if edge is not None and noise_seed is None and cfg.ensemble.obs_noise > 0 and edge.stops_at_sphere():
        warnings.warn(rim_warning(str(path), edge_losses, cat.r_max_kpc), DataWarning, stacklevel=2)
    prov = {
        "input": source["path"], "bytes": source["bytes"], "sha256": source["sha256"],
        "format": cat.format, "rows_read": n_in, "cuts": report, "n_stars": len(x),
        "frame": cfg.to_dict()["frame"], "r_max_kpc": cat.r_max_kpc,
        "noise_seed": noise_seed, "noise_scale": noise_scale if noise_seed is not None else None, "version": __version__,
        "edge_losses": edge_losses,
    }
    with atomic_h5(out_path) as f:
        w = np.concatenate([x, v], axis=1)
        for j, (name, unit) in enumerate(zip(PHASE_SPACE_COLUMNS, PHASE_SPACE_UNITS)):
            f.create_dataset(name, data=w[:, j]).attrs["unit"] = unit
        for k, parts in extras.items():
            f.create_dataset(k, data=np.concatenate(parts)).attrs["unit"] = OBSERVABLE_UNITS.get(k, "")
        f.attrs["provenance"] = json.dumps(prov)
        stamp(f.attrs, cfg, PREPARED_SETTINGS, catalogue=json.dumps(source), **({} if noise_seed is None else {"noise_seed": noise_seed}))
    log(f"prepare: {len(x)} of {n_in} stars kept in {time.monotonic() - t0:.1f}s -> {out_path}")
    for name, n, left in report:
        log(f"  cut {name:34s} removed {n:10d}, left {left:10d}")
    return prov


def read_provenance(path: str | Path) -> dict:
    """The provenance record of a prepared sample (input, cuts, n_stars, ...)."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["provenance"])


def read_prepared(path: str | Path) -> tuple[torch.Tensor, dict]:
    """(stars (N, 6) float64 tensor, provenance) of a prepared sample."""
    with h5py.File(path, "r") as f:
        w = np.stack([f[c][()] for c in PHASE_SPACE_COLUMNS], axis=1)
        return torch.from_numpy(w), json.loads(f.attrs["provenance"])


def read_observed_errors(path: str | Path) -> ObservedErrors:
    """Each prepared star's noisy observables, their quoted errors and its line-of-sight directions
    (``physics.gaia.ObservedErrors``), from the columns a prepared sample of the gaia format keeps;
    CatalogueError naming the file and the missing columns otherwise."""
    with h5py.File(path, "r") as f:
        missing = [c for c in (*OBSERVABLES, *ERRORS) if c not in f]
        if missing:
            raise CatalogueError(f"prepared sample {path} has no {', '.join(missing)}: the noise model needs the Gaia "
                                 "observables and their quoted errors (catalogue.format: gaia with the error columns)")
        obs = {c: f[c][()].astype(np.float64) for c in (*OBSERVABLES, *ERRORS)}
    return observed_errors(obs)


def bootstrap_indices(n: int, seed: int) -> np.ndarray:
    """n row indices drawn with replacement (deterministic in seed)."""
    return np.random.default_rng(seed).integers(0, n, size=n)


class DataWarning(DpotWarning):
    """The data are usable but probably not what was meant (e.g. duplicated stars)."""


def _warn_duplicates(path: Path, x: np.ndarray, v: np.ndarray, source_id: list | None) -> None:
    """Warn when stars appear more than once (same source_id, or else the same six coordinates)."""
    if source_id is not None:
        ids = np.concatenate(source_id)
        n_dup, what = len(ids) - len(np.unique(ids)), "source_id"
    else:
        rows = np.ascontiguousarray(np.concatenate([x, v], axis=1)).view(np.dtype((np.void, 48))).ravel()
        n_dup, what = len(rows) - len(np.unique(rows)), "positions and velocities"
    if n_dup:
        warnings.warn(f"catalogue {path}: {n_dup} of {len(x)} selected stars repeat another's {what}; "
                      "duplicated stars bias the DF", DataWarning, stacklevel=3)


def gaia_columns_needed(cfg: Config, noise: bool) -> dict[str, str]:
    """{Gaia quantity: column name in the catalogue} that the configured cuts (and, with ``noise``,
    the observational-noise resampling) need."""
    need = list(OBSERVABLES)
    if cfg.cuts.parallax_over_error_min is not None or noise:
        need.append("parallax_error")
    if noise:
        need += ["pmra_error", "pmdec_error", "radial_velocity_error"]
    if cfg.cuts.ruwe_max is not None:
        need.append("ruwe")
    if cfg.cuts.abs_mag_g_min is not None or cfg.cuts.abs_mag_g_max is not None:
        need.append("phot_g_mean_mag")
    return {k: getattr(cfg.catalogue.gaia_columns, k) for k in dict.fromkeys(need)}


def check_columns(cfg: Config, path: Path, noise: bool) -> None:
    """Raise CatalogueError naming the first Gaia column that the cuts or the noise resampling need
    and the catalogue lacks (before any member starts)."""
    with TableReader(path, cfg.catalogue.hdf5_group) as reader:
        for k, name in gaia_columns_needed(cfg, noise).items():
            why = "the noise model (ensemble.obs_noise, df.deconvolve)" if k.endswith("_error") and noise else "the configured cuts"
            reader.require([name], f" (Gaia {k}, catalogue.gaia_columns.{k}; needed for {why})")
