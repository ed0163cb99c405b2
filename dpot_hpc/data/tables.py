"""Reading columns of a table file, in chunks of rows.

FITS binary tables (memory-mapped) and HDF5 files (one 1-D dataset per column in a group, or an
astropy-written table dataset) are read ``chunk_rows`` rows at a time, so catalogues of tens of
millions of rows fit in memory; any other format astropy's ``Table.read`` knows (ECSV, CSV,
VOTable, Parquet where pyarrow is installed) is read whole and then served in chunks.
Every problem raises ``CatalogueError`` naming the file and the column.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
from astropy.io import fits
from astropy.table import Table

from ..errors import DpotError


class CatalogueError(DpotError, ValueError):
    """The catalogue cannot be used: missing file or column, bad values, empty selection."""


def _magic(path: Path, n: int) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(n)


def table_kind(path: Path) -> str:
    """'hdf5', 'fits' or 'astropy' (anything else astropy may read)."""
    if _magic(path, 8) == b"\x89HDF\r\n\x1a\n":
        return "hdf5"
    if _magic(path, 9) == b"SIMPLE  =":
        return "fits"
    return "astropy"


@contextlib.contextmanager
def _astropy_quiet():
    """Silence astropy's own warnings (its logger and the warnings module) for a moment."""
    logger = logging.getLogger("astropy")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


class TableReader:
    """Column access to a table file: ``names``, ``n_rows`` and ``chunks(columns)``.

    optional columns that are absent are simply not returned; required ones raise CatalogueError.
    """

    def __init__(self, path: str | Path, hdf5_group: str = "/"):
        self.path = Path(path)
        if not self.path.is_file():
            raise CatalogueError(f"catalogue {self.path}: file does not exist")
        self.kind = table_kind(self.path)
        self._table = None
        try:
            self._open(hdf5_group)
        except CatalogueError:
            self.close()
            raise
        except Exception as exc:  # a truncated or corrupt file raises many types, from h5py and astropy
            self.close()
            raise CatalogueError(f"catalogue {self.path}: cannot read this {self.kind} file ({type(exc).__name__}: "
                                 f"{exc}); is it truncated or corrupt?") from None

    def _open(self, hdf5_group: str) -> None:
        if self.kind == "hdf5":
            self._h5 = h5py.File(self.path, "r")
            if hdf5_group not in self._h5:
                raise CatalogueError(f"catalogue {self.path}: no HDF5 group {hdf5_group!r} (catalogue.hdf5_group)")
            g = self._h5[hdf5_group]
            if isinstance(g, h5py.Dataset) and g.dtype.names:  # an astropy-written table
                self._cols = {n: (g, n) for n in g.dtype.names}
                self.n_rows = g.shape[0]
            elif isinstance(g, h5py.Dataset):
                raise CatalogueError(f"catalogue {self.path}: catalogue.hdf5_group {hdf5_group!r} names a dataset, not "
                                     "a group of 1-D column datasets or a table")
            else:
                self._cols = {k: (v, None) for k, v in g.items() if isinstance(v, h5py.Dataset) and v.ndim == 1}
                lengths = {v[0].shape[0] for v in self._cols.values()}
                if len(lengths) > 1:
                    raise CatalogueError(f"catalogue {self.path}: columns in {hdf5_group!r} have different lengths")
                self.n_rows = lengths.pop() if lengths else 0
            self.names = sorted(self._cols)
        elif self.kind == "fits":
            with _astropy_quiet():  # a truncated file is reported below, as one error
                self._hdul = fits.open(self.path, memmap=True)
                hdu = next((h for h in self._hdul if isinstance(h, (fits.BinTableHDU, fits.TableHDU))), None)
            if hdu is None:
                raise CatalogueError(f"catalogue {self.path}: FITS file has no table extension")
            expected = hdu._data_offset + hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
            if self.path.stat().st_size < expected:
                raise CatalogueError(f"catalogue {self.path}: the FITS table needs {expected} bytes, the file has "
                                     f"{self.path.stat().st_size}: it is truncated")
            self._fits = hdu.data
            self.names = list(hdu.columns.names)
            self.n_rows = hdu.header["NAXIS2"]
        else:
            try:
                self._table = Table.read(self.path)
            except Exception as exc:  # astropy raises many types for unreadable files
                raise CatalogueError(
                    f"catalogue {self.path}: neither an HDF5 file nor a FITS table, and astropy cannot read it as a "
                    f"table ({type(exc).__name__}: {exc})"
                ) from None
            self.names = list(self._table.colnames)
            self.n_rows = len(self._table)

    def require(self, columns: list[str], what: str = "") -> None:
        missing = [c for c in columns if c not in self.names]
        if missing:
            raise CatalogueError(
                f"catalogue {self.path}: column {missing[0]!r} missing{what} (available: {', '.join(self.names) or 'none'})"
            )

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        if self.kind == "hdf5":
            ds, field = self._cols[name]
            arr = ds[start:stop] if field is None else ds[start:stop][field]
        elif self.kind == "fits":
            arr = self._fits[name][start:stop]
        else:
            col = self._table[name][start:stop]
            arr = col.filled(np.nan) if hasattr(col, "filled") and np.ma.isMaskedArray(col) else col
        arr = np.asarray(arr)
        if arr.dtype.kind in "iu" or arr.dtype.kind == "f":
            return arr
        try:
            return arr.astype(np.float64)
        except (TypeError, ValueError):
            raise CatalogueError(f"catalogue {self.path}: column {name!r} is not numeric (dtype {arr.dtype})") from None

    def chunks(self, columns: list[str], chunk_rows: int) -> Iterator[dict[str, np.ndarray]]:
        """Yield {column: array} for consecutive row ranges; columns must exist (see ``require``)."""
        self.require(columns)
        for start in range(0, self.n_rows, chunk_rows):
            stop = min(start + chunk_rows, self.n_rows)
            yield {c: self._read_checked(c, start, stop) for c in columns}

    def _read_checked(self, name: str, start: int, stop: int) -> np.ndarray:
        try:
            return self._read(name, start, stop)
        except CatalogueError:
            raise
        except Exception as exc:  # truncated data: h5py and astropy raise many types
            raise CatalogueError(f"catalogue {self.path}: cannot read column {name!r}, rows {start}-{stop} "
                                 f"({type(exc).__name__}: {exc}); is the file truncated or corrupt?") from None

    def close(self) -> None:
        if getattr(self, "_h5", None) is not None:
            self._h5.close()
        if getattr(self, "_hdul", None) is not None:
            self._hdul.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
