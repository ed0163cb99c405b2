"""Catalogues in, prepared sample out: formats, column mappings, and one clear error per bad input."""

import json

import h5py
import numpy as np
import pytest
from astropy.table import Table

from dpot_hpc.data.tables import CatalogueError
from dpot_hpc.config import load_config
from dpot_hpc.data.prepare import prepare_sample, read_prepared

COLS = ("x", "y", "z", "vx", "vy", "vz")


def _stars(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    return {c: rng.normal(0, 0.4 if c in "xyz" else 30, n) for c in COLS}


def _write_h5(path, cols):
    with h5py.File(path, "w") as f:
        for k, v in cols.items():
            f[k] = v
    return path


def _prep(tmp_path, src, *settings):
    cfg = load_config(None, ["cuts.min_stars=100", "catalogue.chunk_rows=1000", *settings])
    prepare_sample(cfg, src, tmp_path / "prepared.h5", log=lambda m: None)
    return read_prepared(tmp_path / "prepared.h5")


def test_hdf5_fits_ecsv_astropy_hdf5_read_alike(tmp_path):
    cols = _stars()
    a, prov = _prep(tmp_path, _write_h5(tmp_path / "c.h5", cols))
    Table(cols).write(tmp_path / "c.fits")
    Table(cols).write(tmp_path / "c.ecsv")
    Table(cols).write(tmp_path / "t.h5", path="stars", serialize_meta=False)
    inside = np.sqrt(cols["x"] ** 2 + cols["y"] ** 2 + cols["z"] ** 2) < 1.0
    assert a.shape == (inside.sum(), 6)
    assert np.array_equal(a[:, 3].numpy(), cols["vx"][inside])
    assert prov["cuts"] == [["|x| < 1 kpc", int((~inside).sum()), int(inside.sum())]]
    for src, extra in (("c.fits", []), ("c.ecsv", []), ("t.h5", ["catalogue.hdf5_group=stars"])):
        b, _ = _prep(tmp_path, tmp_path / src, *extra)
        assert np.array_equal(a.numpy(), b.numpy()), src


def test_column_mapping_and_provenance(tmp_path):
    cols = {f"{k}_helio": v for k, v in _stars().items()}
    src = _write_h5(tmp_path / "c.h5", cols)
    w, prov = _prep(tmp_path, src, "catalogue.columns={" + ", ".join(f"{k}: {k}_helio" for k in COLS) + "}")
    assert w.shape[1] == 6
    assert prov["rows_read"] == 2000 and prov["format"] == "cartesian" and len(prov["sha256"]) == 64
    with h5py.File(tmp_path / "prepared.h5") as f:
        assert f["x"].attrs["unit"] == "kpc" and f["vz"].attrs["unit"] == "km/s"
        assert json.loads(f.attrs["provenance"])["n_stars"] == w.shape[0]


def test_missing_column(tmp_path):
    cols = _stars()
    del cols["vz"]
    with pytest.raises(CatalogueError, match=r"c\.h5: column 'vz' missing \(catalogue\.columns\)"):
        _prep(tmp_path, _write_h5(tmp_path / "c.h5", cols))
    Table(cols).write(tmp_path / "c.fits")
    with pytest.raises(CatalogueError, match=r"c\.fits: column 'vz' missing"):
        _prep(tmp_path, tmp_path / "c.fits")


def test_nans_are_counted(tmp_path):
    cols = _stars()
    cols["vy"][[3, 10, 11]] = np.nan
    cols["vy"][20] = np.inf
    with pytest.raises(CatalogueError, match=r"column 'vy' \(vy\) has 4 NaN or infinite values in rows \[3, 10, 11, 20\]"):
        _prep(tmp_path, _write_h5(tmp_path / "c.h5", cols))


def test_empty_selection(tmp_path):
    cols = _stars()
    for c in "xyz":
        cols[c] = cols[c] * 1000 + 5000  # in pc by mistake
    with pytest.raises(CatalogueError, match=r"0 of 2000 stars survive the selection, fewer than cuts\.min_stars = 100"):
        _prep(tmp_path, _write_h5(tmp_path / "c.h5", cols))
    assert not (tmp_path / "prepared.h5").exists()


def test_not_a_table_and_missing_file_and_group(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\x00\x01 world")
    with pytest.raises(CatalogueError, match="astropy cannot read it as a table"):
        _prep(tmp_path, p)
    with pytest.raises(CatalogueError, match="does not exist"):
        _prep(tmp_path, tmp_path / "nope.h5")
    with pytest.raises(CatalogueError, match="no HDF5 group 'stars'"):
        _prep(tmp_path, _write_h5(tmp_path / "c.h5", _stars()), "catalogue.hdf5_group=stars")
