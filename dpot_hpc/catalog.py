"""Reading a catalogue of stars in heliocentric Galactic Cartesian coordinates.

Accepted: an HDF5 file with one 1-D dataset per column (in a configurable group), or a FITS
binary table. Columns x, y, z (kpc) and vx, vy, vz (km/s, relative to the Sun); their names
in the file come from ``catalogue.columns``. Every problem raises ``CatalogueError`` naming the
file and the column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .constants import PHASE_SPACE_COLUMNS

#: Fewest stars a DF member can be trained on.
MIN_STARS = 100


class CatalogueError(ValueError):
    """The catalogue cannot be used: missing file or column, bad values, empty selection."""


def _is_hdf5(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89HDF\r\n\x1a\n"


def _is_fits(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(9) == b"SIMPLE  ="


def read_columns(path: str | Path, names: list[str], hdf5_group: str = "/") -> dict[str, np.ndarray]:
    """Read the named columns from an HDF5 or FITS table as float64 arrays."""
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"catalogue {path}: file does not exist")
    if _is_hdf5(path):
        import h5py

        with h5py.File(path, "r") as f:
            if hdf5_group not in f:
                raise CatalogueError(f"catalogue {path}: no HDF5 group {hdf5_group!r} (catalogue.hdf5_group)")
            g = f[hdf5_group]
            available = sorted(k for k, v in g.items() if isinstance(v, h5py.Dataset))
            out = {}
            for n in names:
                if n not in available:
                    raise CatalogueError(
                        f"catalogue {path}: column {n!r} missing in group {hdf5_group!r} (available: {', '.join(available) or 'none'})"
                    )
                out[n] = np.asarray(g[n][()], dtype=np.float64).reshape(-1)
    elif _is_fits(path):
        from astropy.table import Table

        try:
            t = Table.read(path, format="fits")
        except Exception as exc:  # astropy raises many types for unreadable FITS
            raise CatalogueError(f"catalogue {path}: not a readable FITS table ({exc})") from None
        out = {}
        for n in names:
            if n not in t.colnames:
                raise CatalogueError(f"catalogue {path}: column {n!r} missing (available: {', '.join(t.colnames)})")
            col = t[n]
            out[n] = np.asarray(col.filled(np.nan) if hasattr(col, "filled") else col, dtype=np.float64).reshape(-1)
    else:
        raise CatalogueError(f"catalogue {path}: neither an HDF5 file nor a FITS table")
    lengths = {n: len(v) for n, v in out.items()}
    if len(set(lengths.values())) > 1:
        raise CatalogueError(f"catalogue {path}: columns have different lengths {lengths}")
    return out


def read_phase_space(path: str | Path, columns: dict[str, str], hdf5_group: str, r_max_kpc: float) -> torch.Tensor:
    """The stars inside the selection sphere as a float64 tensor (N, 6): x, y, z [kpc], vx, vy, vz [km/s].

    NaN or infinite values are an error (naming the column and the number of rows affected);
    stars outside r_max_kpc are dropped; fewer than MIN_STARS left is an error.
    """
    names = [columns[c] for c in PHASE_SPACE_COLUMNS]
    cols = read_columns(path, names, hdf5_group)
    for c, n in zip(PHASE_SPACE_COLUMNS, names):
        bad = ~np.isfinite(cols[n])
        if bad.any():
            raise CatalogueError(
                f"catalogue {path}: column {n!r} ({c}) has {int(bad.sum())} NaN or infinite values of {bad.size} rows"
            )
    w = torch.from_numpy(np.stack([cols[n] for n in names], axis=1))
    inside = torch.linalg.vector_norm(w[:, :3], dim=-1) < r_max_kpc
    n_in = int(inside.sum())
    if n_in < MIN_STARS:
        raise CatalogueError(
            f"catalogue {path}: {n_in} of {w.shape[0]} stars lie within catalogue.r_max_kpc = {r_max_kpc} kpc "
            f"of the Sun; at least {MIN_STARS} are needed (are x, y, z in kpc?)"
        )
    return w[inside].contiguous()
