"""What the report reads from a run folder (I/O only; errors name the file that is missing)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import torch

from ..data.cache import read_cache
from ..data.prepare import read_prepared
from ..data.runfolder import RunFolder
from ..ensemble.members import PotentialMember, load_potential_member
from ..ensemble.statistics import best_member_ids


class MissingInput(FileNotFoundError):
    """A file one figure needs is not in the run folder (e.g. not copied from the cluster)."""


def _require(path: Path, what: str) -> Path:
    if not path.is_file():
        raise MissingInput(f"{path} ({what}) does not exist")
    return path


def read_summary(folder: RunFolder) -> dict:
    """summary.json; a clear error if the run has not been summarised."""
    path = folder.summary_json
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: finish the run (or run `dpot-hpc summary`) first")
    return json.loads(path.read_text())


def read_history(path: Path) -> np.ndarray | None:
    """A finished member file's history rows (None while it trains or when it has none)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("status") != "done" or "history" not in f:
            return None
        return f["history"][()]


def histories(folder: RunFolder, kind: str) -> dict[str, np.ndarray]:
    """Member id -> history of every finished member of kind 'df' or 'potential'."""
    out = {}
    for path in folder.member_files(kind):
        h = read_history(path)
        if h is not None and len(h):
            out[path.stem] = h
    return out


def read_stars(folder: RunFolder) -> np.ndarray:
    """The prepared sample (N, 6): heliocentric x, y, z [kpc], vx, vy, vz [km/s]."""
    return read_prepared(_require(folder.prepared, "the prepared sample"))[0].numpy()


def read_best_cache(folder: RunFolder) -> dict[str, torch.Tensor]:
    """The best-fit gradient cache {x, v, log_f, grad_x, grad_v} (samples of the df_seed and bootstrap
    flows, their mean gradients), or, when the run has none (the best estimate pairs one potential
    with each flow), those flows' own caches joined."""
    best = folder.member("cache", "best_fit")
    if best.exists():
        return read_cache(best)
    singles = [p for p in folder.member_files("cache") if p.stem.startswith(("df_seed-", "bootstrap-"))]
    if not singles:
        _require(best, "the best-fit gradient cache (or the df_seed and bootstrap caches)")
    parts = [read_cache(p) for p in singles]
    return {k: torch.cat([c[k] for c in parts]) for k in parts[0]}


def best_members(folder: RunFolder, summary: dict) -> list[PotentialMember]:
    """The potential members the best estimate is the median over (summary's ``best_from``)."""
    ids, _ = best_member_ids(list(summary["members"]))
    return [load_potential_member(_require(folder.member("potential", m), "a potential member")) for m in ids]


def best_cache_points(cache: dict[str, torch.Tensor]) -> np.ndarray:
    """The cache's phase-space points (N, 6): heliocentric x [kpc], v [km/s]."""
    return torch.cat([cache["x"], cache["v"]], dim=1).to(torch.float64).numpy()
