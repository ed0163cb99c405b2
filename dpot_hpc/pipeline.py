"""The main job on one process: mock (if needed) -> DF members -> gradient cache -> potential
members -> summary. Every stage skips what is already done in the run folder and resumes what
was interrupted.

Run folder layout:
  config.yaml                 the resolved configuration of the run (checked on every re-run)
  mock.h5                     the built-in mock (when catalogue.path is null)
  df/df_seed-NNN.h5           DF members          potential/potential_seed-NNN.h5  potential members
  cache/best_fit.h5           gradient cache (median over the DF members)
  logs/<kind>-<id>.log        one log per member
  result.json, result.h5      the scalars: per member, median and 16-84 half-width, truth for a mock
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from .cache import build_cache, read_cache, write_cache
from .catalog import read_phase_space
from .checkpoints import atomic_h5, atomic_write_text
from .config import Config, config_from_dict, sun_frame
from .constants import MSUN_PER_KPC3_TO_MSUN_PER_PC3, RHO_BARYON_MPH15_MSUN_PC3
from .frames import helio_to_galcen
from .galaxy import GalaxyModel
from .members import MemberSpec, load_flow, member_seed, run_df_member, run_potential_member
from .mockfile import read_truth, write_mock
from .summary import SCALARS, ensemble_summary, evaluation_grid, format_table

#: Config keys that may change between invocations on the same run folder.
RUNTIME_KEYS = {("run", "threads"), ("run", "device"), ("run", "dir")}


class RunFolderError(RuntimeError):
    """The run folder was made with an incompatible configuration."""


def say(msg: str) -> None:
    print(f"dpot-hpc: {msg}", file=sys.stderr, flush=True)


def configure_torch(cfg: Config) -> str:
    """Set the CPU thread count and return the device members train on."""
    torch.set_num_threads(cfg.run.threads or os.cpu_count() or 1)
    if cfg.run.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.run.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device: cuda requested but torch sees no CUDA device")
    return cfg.run.device


def _diff(a: dict, b: dict, prefix=()) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        path = (*prefix, k)
        if path in RUNTIME_KEYS:
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and not (len(path) == 2 and path[1] == "columns"):
            out += _diff(va, vb, path)
        elif va != vb:
            out.append(f"{'.'.join(path)}: {va!r} in the folder, {vb!r} now")
    return out


def prepare_run_dir(cfg: Config) -> Path:
    """Create the run folder, or check that an existing one was made with a compatible config."""
    run_dir = cfg.run_dir()
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = run_dir / "config.yaml"
    if saved.exists():
        old = config_from_dict(yaml.safe_load(saved.read_text()) or {})
        diffs = _diff(old.to_dict(), cfg.to_dict())
        if diffs:
            raise RunFolderError(
                f"run folder {run_dir} was made with another configuration; use a new run.dir or the old "
                "settings. Differences:\n  " + "\n  ".join(diffs)
            )
    else:
        atomic_write_text(saved, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return run_dir


def catalogue_path(cfg: Config, run_dir: Path) -> Path:
    """The input catalogue; the built-in mock is generated on first use."""
    if cfg.catalogue.path is not None:
        return Path(cfg.catalogue.path)
    path = run_dir / "mock.h5"
    if not path.exists():
        write_mock(path, cfg, log=say)
    return path


def baryon_density(cfg: Config, cat_path: Path):
    """Baryon density for rho_DM: a number (Msun/pc^3) or, for a mock, its own disc+bulge on the grid."""
    if cfg.summary.rho_baryon_msun_pc3 is not None:
        return cfg.summary.rho_baryon_msun_pc3, "summary.rho_baryon_msun_pc3"
    truth = _truth(cat_path)
    if truth is None:
        return RHO_BARYON_MPH15_MSUN_PC3, "McKee, Parravano & Hollenbach 2015 (ApJ 814, 13)"
    with h5py.File(cat_path, "r") as f:
        galaxy = GalaxyModel(**json.loads(f["truth"].attrs["galaxy"]))
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    x_gc = helio_to_galcen(grid, torch.zeros_like(grid), sun_frame(cfg))[0]
    return galaxy.rho_baryons(x_gc) * MSUN_PER_KPC3_TO_MSUN_PER_PC3, "the mock's own disc + bulge"


def _truth(cat_path: Path):
    try:
        return read_truth(cat_path)
    except OSError:
        return None  # FITS or other non-HDF5 catalogue


def df_members(cfg: Config) -> list[MemberSpec]:
    return [MemberSpec("df", "df_seed", i) for i in range(cfg.df.n_flows)]


def potential_members(cfg: Config) -> list[MemberSpec]:
    return [MemberSpec("potential", "potential_seed", i) for i in range(cfg.potential.n_potentials)]


def run_cache(cfg: Config, run_dir: Path, specs: list[MemberSpec]) -> Path:
    """Build the best-fit gradient cache from the DF members (skipped when it exists)."""
    path = run_dir / "cache" / "best_fit.h5"
    if path.exists():
        return path
    t0 = time.monotonic()
    say(f"cache: drawing {cfg.cache.n_points} points from {len(specs)} flows")
    flows = [load_flow(s.path(run_dir)) for s in specs]
    seed = member_seed(cfg.run.seed, "cache/best_fit")
    cache = build_cache(flows, cfg.cache.n_points, cfg.cache.r_max_kpc, seed, cfg.cache.batch_size)
    write_cache(path, cache, [s.id for s in specs], seed, cfg.cache.r_max_kpc)
    say(f"cache: wrote {path} in {time.monotonic() - t0:.1f}s")
    return path


def write_result(cfg: Config, run_dir: Path, specs: list[MemberSpec], cat_path: Path, baryon_note: str) -> dict:
    """Gather the potential members' scalars; write result.json and result.h5; return the result."""
    per_member = {}
    for s in specs:
        with h5py.File(s.path(run_dir), "r") as f:
            per_member[s.id] = json.loads(f.attrs["scalars"])
    values = {k: [m[k] for m in per_member.values()] for k in SCALARS}
    summ = ensemble_summary(values)
    truth = _truth(cat_path)
    result = {
        "scalars": summ,
        "units": SCALARS,
        "truth": truth["scalars"] if truth else None,
        "members": per_member,
        "settings": {
            "shell_kpc": [cfg.summary.shell_r_min_kpc, cfg.summary.shell_r_max_kpc],
            "arc_dr_kpc": cfg.summary.arc_dr_kpc,
            "arc_dz_kpc": cfg.summary.arc_dz_kpc,
            "grid_spacing_kpc": cfg.summary.grid_spacing_kpc,
            "baryons": baryon_note,
            "accel_axes": "heliocentric Galactic Cartesian (x towards the Galactic centre)",
        },
    }
    atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
    with atomic_h5(run_dir / "result.h5") as f:
        for k, unit in SCALARS.items():
            g = f.create_group(k)
            g.attrs["unit"] = unit
            for stat, v in summ[k].items():
                g.attrs[stat] = v
            g.create_dataset("members", data=np.asarray(values[k]))
            if truth:
                g.attrs["truth"] = truth["scalars"][k]
        f.attrs["members"] = json.dumps(list(per_member))
        f.attrs["settings"] = json.dumps(result["settings"])
    return result


def run(cfg: Config) -> dict:
    """The whole job in this process. Returns the result dict (also written to the run folder)."""
    t0 = time.monotonic()
    device = configure_torch(cfg)
    run_dir = prepare_run_dir(cfg)
    say(f"run folder {run_dir} (device {device}, {torch.get_num_threads()} threads)")
    cat_path = catalogue_path(cfg, run_dir)
    stars = read_phase_space(cat_path, cfg.catalogue.columns, cfg.catalogue.hdf5_group, cfg.catalogue.r_max_kpc)
    say(f"catalogue {cat_path}: {stars.shape[0]} stars within {cfg.catalogue.r_max_kpc} kpc")
    dfs = df_members(cfg)
    for i, s in enumerate(dfs):
        say(f"DF stage: member {i + 1}/{len(dfs)} ({s.id})")
        run_df_member(s, cfg, run_dir, stars, device)
    cache = read_cache(run_cache(cfg, run_dir, dfs))
    rho_b, note = baryon_density(cfg, cat_path)
    pots = potential_members(cfg)
    for i, s in enumerate(pots):
        say(f"potential stage: member {i + 1}/{len(pots)} ({s.id})")
        run_potential_member(s, cfg, run_dir, cache, rho_b, device)
    result = write_result(cfg, run_dir, pots, cat_path, note)
    say(f"finished in {time.monotonic() - t0:.0f}s; results in {run_dir / 'result.json'}")
    return result
