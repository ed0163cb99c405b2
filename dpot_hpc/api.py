"""Using a trained potential: Phi, a and rho at any points, with units (astropy Quantities).

    >>> import dpot_hpc
    >>> pot = dpot_hpc.load_potential("runs/example")        # ensemble median of the run
    >>> pot.acceleration([[0.1, 0.0, 0.0]])                   # (N, 3) km/s/Myr, heliocentric axes

Positions are heliocentric Galactic Cartesian (x towards the Galactic centre, y towards l = 90
deg, z towards the north Galactic pole), in kpc, or any astropy length Quantity.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import torch

from .constants import ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR
from .errors import InputError
from .data.runfolder import RunFolder
from .ensemble.members import MemberFileError, PotentialMember, load_potential_member
from .models.potential import evaluate
from .physics.frames import SunFrame


class Potential:
    """One or more trained potential members; values are medians over members.

    members: PotentialMember records as from ``load_potential_member``.
    """

    def __init__(self, members: list[PotentialMember]):
        if not members:
            raise ValueError("a Potential needs at least one member")
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
    def omega_p(self) -> u.Quantity:
        """Median pattern speed over members, km/s/kpc."""
        return float(np.median([m.omega_p_kms_kpc for m in self.members])) * u.km / u.s / u.kpc

    def _points(self, x) -> torch.Tensor:
        if isinstance(x, u.Quantity):
            x = x.to_value(u.kpc)
        arr = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3) (x, y, z in kpc), got {arr.shape}")
        return torch.from_numpy(arr)

    def evaluate(self, x) -> dict[str, np.ndarray]:
        """Per-member fields {'phi' (K,N) (km/s)^2, 'accel' (K,N,3) km/s/Myr, 'rho' (K,N) Msun/pc^3}."""
        pts = self._points(x)
        per = [evaluate(m.net, pts) for m in self.members]
        return {
            "phi": np.stack([p["phi"].numpy() for p in per]),
            "accel": np.stack([p["accel"].numpy() for p in per]) * ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR,
            "rho": np.stack([p["rho"].numpy() for p in per]),
        }

    def phi(self, x) -> u.Quantity:
        """Potential (km/s)^2, median over members; its zero point is arbitrary."""
        return np.median(self.evaluate(x)["phi"], axis=0) * (u.km / u.s) ** 2

    def acceleration(self, x) -> u.Quantity:
        """a = -grad Phi (N, 3) in heliocentric Galactic axes, km/s/Myr, median over members."""
        return np.median(self.evaluate(x)["accel"], axis=0) * u.km / u.s / u.Myr

    def density(self, x) -> u.Quantity:
        """rho = Laplacian Phi / (4 pi G), Msun/pc^3, median over members."""
        return np.median(self.evaluate(x)["rho"], axis=0) * u.Msun / u.pc**3


def load_potential(path) -> Potential:
    """A run folder (all finished potential members) or a single potential member file."""
    path = Path(path)
    if path.is_dir():
        files = RunFolder(path).member_files("potential")
        if not files:
            raise MemberFileError(f"{path} holds no potential members")
    elif path.is_file():
        files = [path]
    else:
        raise InputError(f"{path}: no such run folder or member file")
    return Potential([load_potential_member(f) for f in files])


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
