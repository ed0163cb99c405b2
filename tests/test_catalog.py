"""Bad catalogues give one clear error naming the file and the column."""

import h5py
import numpy as np
import pytest
from astropy.table import Table

from dpot_hpc.catalog import CatalogueError, read_phase_space

COLS = {c: c for c in ("x", "y", "z", "vx", "vy", "vz")}


def _stars(n=500, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.normal(0, 0.3 if c in "xyz" else 30, n) for c in COLS}


def _write_h5(path, cols):
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            f[k] = v
    return path


def test_reads_hdf5_and_fits_alike(tmp_path):
    cols = _stars()
    a = read_phase_space(_write_h5(tmp_path / "c.h5", cols), COLS, "/", 1.0)
    Table(cols).write(tmp_path / "c.fits")
    b = read_phase_space(tmp_path / "c.fits", COLS, "/", 1.0)
    inside = np.sqrt(cols["x"] ** 2 + cols["y"] ** 2 + cols["z"] ** 2) < 1.0
    assert a.shape == (inside.sum(), 6)
    assert np.array_equal(a.numpy(), b.numpy())
    assert np.array_equal(a[:, 3].numpy(), cols["vx"][inside])


def test_column_mapping(tmp_path):
    cols = {f"{k}_helio": v for k, v in _stars().items()}
    mapping = {k: f"{k}_helio" for k in COLS}
    w = read_phase_space(_write_h5(tmp_path / "c.h5", cols), mapping, "/", 1.0)
    assert w.shape[1] == 6


def test_missing_column(tmp_path):
    cols = _stars()
    del cols["vz"]
    with pytest.raises(CatalogueError, match=r"c\.h5: column 'vz' missing"):
        read_phase_space(_write_h5(tmp_path / "c.h5", cols), COLS, "/", 1.0)
    Table(cols).write(tmp_path / "c.fits")
    with pytest.raises(CatalogueError, match=r"c\.fits: column 'vz' missing"):
        read_phase_space(tmp_path / "c.fits", COLS, "/", 1.0)


def test_nans_are_counted(tmp_path):
    cols = _stars()
    cols["vy"][[3, 10, 11]] = np.nan
    cols["vy"][20] = np.inf
    with pytest.raises(CatalogueError, match=r"column 'vy' \(vy\) has 4 NaN or infinite values of 500 rows"):
        read_phase_space(_write_h5(tmp_path / "c.h5", cols), COLS, "/", 1.0)


def test_empty_selection(tmp_path):
    cols = _stars()
    for c in "xyz":
        cols[c] = cols[c] * 1000 + 5000  # in pc by mistake
    with pytest.raises(CatalogueError, match=r"0 of 500 stars lie within catalogue\.r_max_kpc = 1\.0 kpc"):
        read_phase_space(_write_h5(tmp_path / "c.h5", cols), COLS, "/", 1.0)


def test_not_a_table_and_missing_file_and_group(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(CatalogueError, match="neither an HDF5 file nor a FITS table"):
        read_phase_space(p, COLS, "/", 1.0)
    with pytest.raises(CatalogueError, match="does not exist"):
        read_phase_space(tmp_path / "nope.h5", COLS, "/", 1.0)
    with pytest.raises(CatalogueError, match="no HDF5 group 'stars'"):
        read_phase_space(_write_h5(tmp_path / "c.h5", _stars()), COLS, "stars", 1.0)
