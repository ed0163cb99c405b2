"""The best-estimate potential's fields on two map planes through the Sun (summary.h5 and the report).

Planes, in heliocentric Galactic Cartesian coordinates (kpc): ``xy`` is z = 0 (through the Sun,
parallel to the Galactic plane), ``xz`` is y = 0 (the vertical slice through the Sun and the Galactic
centre). Each is a square grid of spacing ``summary.grid_spacing_kpc`` over [-R, R]^2 with
R = ``cache.r_max_kpc`` (the volume the potential was fitted in); points with |x| >= R are NaN.
Index [i, j] is (horizontal axis value j, vertical axis value i), so images need origin="lower".

Per plane (``summary.h5`` group ``maps/<plane>``, units in each dataset's ``unit`` attribute):
  x (n, n, 3) [kpc]; for F in phi [(km/s)^2, minus each member's Phi at the Sun], accel
  [km/s/Myr, heliocentric axes], rho [Msun/pc^3]: F = median over the best-estimate members and
  F_sigma = its standard deviation at each point, the DF term of the scalars' band
  (``ensemble.statistics.band_terms``): the standard deviation over the band members (one flow and
  one potential each: bootstrap, else df_seed) times ``df_term_factor``; a run without such members
  has only the best-estimate members' half 16-84 range (the potential seeds' scatter, far smaller).
  For a mock also F_truth and rho_rel_error = (rho - rho_truth) / rho_truth.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch

from ..constants import ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR
from ..data.mockfile import MockTruth
from ..models.potential import PotentialNet, evaluate

#: Plane name -> (horizontal axis, vertical axis) indices into (x, y, z); the third coordinate is 0.
PLANES = {"xy": (0, 1), "xz": (0, 2)}
#: Units of the map fields as stored.
FIELD_UNITS = {"phi": "(km/s)^2", "accel": "km/s/Myr", "rho": "Msun/pc^3"}


def plane_points(plane: str, r_max_kpc: float, spacing_kpc: float) -> np.ndarray:
    """Grid points (n, n, 3) in kpc of a map plane; [i, j] = (axis value j, axis value i)."""
    n = int(math.floor(r_max_kpc / spacing_kpc + 1e-9))  # 0.9 / 0.05 is 17.999999999999996
    ax = np.arange(-n, n + 1) * spacing_kpc
    h, v = PLANES[plane]
    pts = np.zeros((ax.size, ax.size, 3))
    pts[..., h] = ax[None, :]
    pts[..., v] = ax[:, None]
    return pts


def member_fields(nets: list[PotentialNet], x: np.ndarray) -> dict[str, np.ndarray]:
    """Every member's phi [(km/s)^2, relative to its value at the Sun], accel [km/s/Myr] and rho
    [Msun/pc^3] at points x (N, 3) kpc: arrays (K, N) and (K, N, 3)."""
    pts = torch.from_numpy(np.concatenate([np.zeros((1, 3)), x]))
    per = [evaluate(net, pts) for net in nets]
    phi = np.stack([p["phi"].numpy() for p in per])
    return {"phi": phi[:, 1:] - phi[:, :1],
            "accel": np.stack([p["accel"].numpy()[1:] for p in per]) * ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR,
            "rho": np.stack([p["rho"].numpy()[1:] for p in per])}


def band_sigma(stack: np.ndarray, factor: float) -> np.ndarray:
    """The DF term of the band at each point: the band members' standard deviation over axis 0 (ddof 1)
    times ``factor`` (``statistics.df_term_factor``)."""
    return stack.std(axis=0, ddof=1) * factor


def half_range(stack: np.ndarray) -> np.ndarray:
    """Half the 16-84 percentile range over axis 0."""
    p16, p84 = np.percentile(stack, [16, 84], axis=0)
    return (p84 - p16) / 2


def truth_fields(truth: MockTruth, x: np.ndarray) -> dict[str, np.ndarray]:
    """The mock's phi (relative to the Sun), accel [km/s/Myr] and rho at points x (N, 3) kpc."""
    t = truth.fields(torch.from_numpy(np.concatenate([np.zeros((1, 3)), x])))
    phi = t["phi"].numpy()
    return {"phi": phi[1:] - phi[0], "accel": t["accel"].numpy()[1:] * ACCEL_KMS2_PER_KPC_TO_KMS_PER_MYR,
            "rho": t["rho"].numpy()[1:]}


def plane_maps(nets: list[PotentialNet], band: tuple[list[PotentialNet], float], truth: MockTruth | None,
               plane: str, r_max_kpc: float, spacing_kpc: float) -> dict[str, np.ndarray]:
    """The fields of one plane (module docstring), NaN where |x| >= r_max_kpc; ``band``: (the band
    members' networks, the factor on their standard deviation)."""
    pts = plane_points(plane, r_max_kpc, spacing_kpc)
    inside = np.linalg.norm(pts, axis=-1) < r_max_kpc
    shape = inside.shape
    out = {"x": pts}

    def fill(values: np.ndarray) -> np.ndarray:
        full = np.full(shape + values.shape[1:], np.nan)
        full[inside] = values
        return full

    per = member_fields(nets, pts[inside])
    band_nets, factor = band
    spread = member_fields(band_nets, pts[inside]) if len(band_nets) > 1 else None
    for k, stack in per.items():
        sigma = band_sigma(spread[k], factor) if spread else half_range(stack)
        out[k], out[f"{k}_sigma"] = fill(np.median(stack, axis=0)), fill(sigma)
    if truth is not None:
        for k, v in truth_fields(truth, pts[inside]).items():
            out[f"{k}_truth"] = fill(v)
        out["rho_rel_error"] = (out["rho"] - out["rho_truth"]) / out["rho_truth"]
    return out


def best_maps(nets: list[PotentialNet], band: tuple[list[PotentialNet], float], truth: MockTruth | None,
              r_max_kpc: float, spacing_kpc: float) -> dict[str, dict[str, np.ndarray]]:
    """Both planes' fields (``plane_maps``) of the best-estimate members ``nets`` with the uncertainty
    from ``band`` (the band members' networks and the factor on their standard deviation)."""
    if not nets:
        raise ValueError("the maps need at least one potential member")
    return {p: plane_maps(nets, band, truth, p, r_max_kpc, spacing_kpc) for p in PLANES}


def unit_of(name: str) -> str:
    """The unit of a stored map dataset ('rho_sigma' -> Msun/pc^3; relative errors are '1')."""
    if name == "x":
        return "kpc"
    if name.endswith("rel_error"):
        return "1"
    return FIELD_UNITS[name.split("_")[0]]


def write_maps(group: h5py.Group, maps: dict[str, dict[str, np.ndarray]], member_ids: list[str],
               band_ids: list[str], r_max_kpc: float, spacing_kpc: float) -> None:
    """Write ``best_maps``'s result into an open HDF5 group (e.g. summary.h5's ``maps``); member_ids:
    the best-estimate members, band_ids: the members of the uncertainty (module docstring)."""
    sigma = ("*_sigma: the standard deviation over the band members times sqrt(1 + 1/K), the DF term of the "
             "scalars' band" if len(band_ids) > 1 else "*_sigma: half the members' 16-84 percentile range")
    group.attrs.update({"members": json.dumps(member_ids), "band_members": json.dumps(band_ids),
                        "r_max_kpc": r_max_kpc, "spacing_kpc": spacing_kpc,
                        "axes": "heliocentric Galactic Cartesian; xy: z = 0, xz: y = 0; index [i, j]: i along the "
                                 "vertical axis (y or z), j along x",
                        "statistics": f"median over the members; {sigma}"})
    for plane, fields in maps.items():
        g = group.create_group(plane)
        for name, arr in fields.items():
            g.create_dataset(name, data=arr).attrs["unit"] = unit_of(name)


def read_maps(path: str | Path) -> tuple[dict[str, dict[str, np.ndarray]], list[str], list[str]] | None:
    """(maps, member ids, band member ids) from summary.h5, or None when the file has no maps of this
    layout (older versions)."""
    with h5py.File(path, "r") as f:
        if "maps" not in f or "band_members" not in f["maps"].attrs:
            return None
        g = f["maps"]
        maps = {p: {k: g[p][k][()] for k in g[p]} for p in PLANES if p in g}
        return maps, json.loads(g.attrs["members"]), json.loads(g.attrs["band_members"])
