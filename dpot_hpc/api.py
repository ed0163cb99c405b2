"""Using a trained potential: Phi, a and rho at any points, with units (astropy Quantities).

    >>> import dpot_hpc
    >>> pot = dpot_hpc.load_potential("runs/example")        # the summary's best-estimate members
    >>> pot.acceleration([[0.1, 0.0, 0.0]])                   # (N, 3) km/s/Myr, heliocentric axes

Positions: heliocentric Galactic Cartesian (x towards the Galactic centre, y towards l = 90 deg,
z towards the north Galactic pole) in kpc or as a length Quantity, or any astropy SkyCoord or frame
with distances (a Galactocentric one is converted with the run's own Sun, not astropy's defaults).
Values are medians over the members; Phi is set to 0 at the Sun for every member before the median.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import astropy.coordinates as coord
import astropy.units as u
import h5py
import numpy as np
import torch

from .data.runfolder import RunFolder
from .ensemble.maps import member_fields
from .ensemble.members import MemberFileError, PotentialMember, load_potential_member
from .ensemble.statistics import best_member_ids, pipeline_of
from .ensemble.summary import band_members
from .errors import DpotWarning, InputError
from .physics.frames import SunFrame, galcen_to_helio


class OutsideVolumeWarning(DpotWarning):
    """Points lie outside the volume the potential was fitted in: its values there are extrapolations."""


class Potential:
    """One or more trained potential members; values are medians over members.

    members: PotentialMember records as from ``load_potential_member``.
    """

    def __init__(self, members: list[PotentialMember]):
        if not members:
            raise InputError("a Potential needs at least one member")
        self.members = members

    @property
    def ids(self) -> list[str]:
        """The members' ids, e.g. potential_seed-000."""
        return [m.id for m in self.members]

    @property
    def sun(self) -> SunFrame:
        """The Sun's frame the members were fitted in (their Galactocentric frame).

        ValueError if they differ (x0_v0 members each draw their own Sun): select members first.
        """
        suns = {m.sun for m in self.members}
        if len(suns) > 1:
            raise ValueError(f"the members were fitted with {len(suns)} different Suns (x0_v0 members draw "
                             "their own): select members that share one, e.g. the potential_seed members")
        return self.members[0].sun

    @property
    def fit_radius(self) -> u.Quantity | None:
        """Radius around the Sun inside which the members were fitted (the gradient cache's), kpc."""
        radii = [m.fit_radius_kpc for m in self.members if m.fit_radius_kpc is not None]
        return min(radii) * u.kpc if radii else None

    @property
    def omega_p(self) -> u.Quantity:
        """Median pattern speed over members, km/s/kpc."""
        return float(np.median([m.omega_p_kms_kpc for m in self.members])) * u.km / u.s / u.kpc

    def points(self, x) -> np.ndarray:
        """Heliocentric Galactic Cartesian positions (N, 3) in kpc from any accepted input; warns
        (OutsideVolumeWarning) with the count of points outside the fitted volume."""
        if isinstance(x, (coord.SkyCoord, coord.BaseCoordinateFrame)):
            frame = x.frame if isinstance(x, coord.SkyCoord) else x
            if isinstance(frame, coord.Galactocentric):
                x_gc = torch.from_numpy(np.atleast_2d(frame.cartesian.xyz.to_value(u.kpc).T).astype(np.float64))
                arr = galcen_to_helio(x_gc, torch.zeros_like(x_gc), self.sun)[0].numpy()
            else:
                arr = np.atleast_2d(frame.transform_to(coord.Galactic()).cartesian.xyz.to_value(u.kpc).T)
        else:
            if isinstance(x, u.Quantity):
                x = x.to_value(u.kpc)
            arr = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise InputError(f"points must have shape (N, 3) (x, y, z in kpc), got {arr.shape}")
        r = self.fit_radius
        if r is not None:
            outside = int((np.linalg.norm(arr, axis=1) > r.to_value(u.kpc)).sum())
            if outside:
                warnings.warn(f"{outside} of {len(arr)} points lie outside the fitted volume (|x| < {r:.2f} of the "
                              "Sun): the potential there is an extrapolation", OutsideVolumeWarning, stacklevel=3)
        return arr.astype(np.float64)

    def evaluate(self, x) -> dict[str, np.ndarray]:
        """Per-member fields {'phi' (K,N) (km/s)^2 with Phi(Sun) = 0, 'accel' (K,N,3) km/s/Myr,
        'rho' (K,N) Msun/pc^3}."""
        return member_fields([m.net for m in self.members], self.points(x))

    def phi(self, x) -> u.Quantity:
        """Potential (km/s)^2, zero at the Sun, median over members."""
        return np.median(self.evaluate(x)["phi"], axis=0) * (u.km / u.s) ** 2

    def acceleration(self, x) -> u.Quantity:
        """a = -grad Phi (N, 3) in heliocentric Galactic axes, km/s/Myr, median over members."""
        return np.median(self.evaluate(x)["accel"], axis=0) * u.km / u.s / u.Myr

    def density(self, x) -> u.Quantity:
        """rho = Laplacian Phi / (4 pi G), Msun/pc^3, median over members."""
        return np.median(self.evaluate(x)["rho"], axis=0) * u.Msun / u.pc**3


def select_members(ids: list[str], members: str | Sequence[str]) -> list[str]:
    """The member ids chosen by ``members``: 'best' (the summary's best-estimate members: the
    potential_seed members, or all when there are none), 'all', a pipeline name, or a list of ids."""
    if members == "best":
        return best_member_ids(ids)[0]
    if members == "all":
        return list(ids)
    if isinstance(members, str):
        chosen = [m for m in ids if pipeline_of(m) == members]
        if not chosen:
            raise InputError(f"members={members!r}: no finished member of that pipeline (have: {', '.join(ids)})")
        return chosen
    missing = [m for m in members if m not in ids]
    if missing:
        raise InputError(f"members: {', '.join(missing)} not among the finished members ({', '.join(ids)})")
    return list(members)


def load_potential(path, members: str | Sequence[str] = "best") -> Potential:
    """A run folder's potential (members: see ``select_members``; default the best-estimate members,
    as summary.json's best estimate) or a single potential member file."""
    path = Path(path)
    if path.is_dir():
        files = {f.stem: f for f in RunFolder(path).member_files("potential")}
        if not files:
            raise MemberFileError(f"{path} holds no potential members")
        return Potential([load_potential_member(files[i]) for i in select_members(list(files), members)])
    if path.is_file():
        return Potential([load_potential_member(path)])
    raise InputError(f"{path}: no such run folder or member file")


def load_band(run_dir) -> tuple[Potential, float] | None:
    """(the members whose spread is the DF term of the summary's band, the factor on their standard
    deviation): one flow and one potential each, bootstrap or else df_seed, and sqrt(1 + 1/K) for a
    best-fit DF of K flows (``ensemble.statistics.band_terms``); None with fewer than two such members.
    ``maps.band_sigma`` of their fields is the best estimate's standard deviation at each point. Also
    None for a folder of member files without its config.yaml (K is not known there)."""
    if not RunFolder(Path(run_dir)).config.is_file():
        return None
    folder, cfg = RunFolder.open(run_dir)
    files = {f.stem: f for f in folder.member_files("potential")}
    ids, factor = band_members(cfg, list(files))
    if not ids:
        return None
    return Potential([load_potential_member(files[i]) for i in ids]), factor


def read_points(path) -> np.ndarray:
    """Points (N, 3) kpc from an HDF5 file (dataset 'x' of shape (N,3), or datasets x, y, z) or a
    text file with three columns x y z (kpc; '#' comments)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"points file {path} does not exist")
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            if "x" in f and f["x"].ndim == 2:
                pts = f["x"][()]
            elif all(k in f for k in ("x", "y", "z")):
                pts = np.stack([f[k][()] for k in ("x", "y", "z")], axis=1)
            else:
                raise InputError(f"points file {path}: expected a dataset 'x' (N, 3) or datasets 'x', 'y', 'z' (kpc)")
    else:
        try:
            pts = np.loadtxt(path, ndmin=2)
        except ValueError as exc:
            raise InputError(f"points file {path}: not rows of three numbers x y z in kpc ({exc})") from None
    if pts.ndim != 2 or pts.shape[1] != 3 or not np.isfinite(pts).all():
        raise InputError(f"points file {path}: expected N rows of 3 finite numbers (x, y, z in kpc), got shape {pts.shape}")
    return pts.astype(np.float64)
