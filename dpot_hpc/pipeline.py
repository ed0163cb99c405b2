"""The run folder and the inputs every member shares: configuration check, the built-in mock,
the prepared sample, and the summary written at the end. Used by the driver on rank 0.

Run folder layout:
  config.yaml                 the resolved configuration of the run (checked on every re-run)
  plan.json                   the members, their seeds, inputs and outputs, by stage
  mock.h5                     the built-in mock (when catalogue.path is null)
  prepared.h5                 the prepared sample (cuts, heliocentric Cartesian stars, provenance)
  samples/obs_noise-NNN.h5    re-prepared samples with added noise (obs_noise members)
  df/<pipeline>-NNN.h5        DF members              cache/best_fit.h5, cache/<pipeline>-NNN.h5
  potential/<pipeline>-NNN.h5 potential members       logs/<kind>-<id>.log  one log per member
  summary.json, summary.h5    per-pipeline statistics, best estimate, combined uncertainty, truth
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import yaml

from .checkpoints import atomic_h5, atomic_write_text
from .config import Config, ConfigError, config_from_dict
from .mockfile import read_truth, write_mock
from .prepare import prepare_sample
from .progress import say
from .summary import SCALARS, ensemble_report

#: Config keys that may change between invocations on the same run folder.
RUNTIME_KEYS = {("run", "threads"), ("run", "device"), ("run", "dir")}


class RunFolderError(RuntimeError):
    """The run folder was made with an incompatible configuration."""


def _diff(a: dict, b: dict, prefix=()) -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        path = (*prefix, k)
        if path in RUNTIME_KEYS:
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict) and not (len(path) == 2 and path[1].endswith("columns")):
            out += _diff(va, vb, path)
        elif va != vb:
            out.append(f"{'.'.join(path)}: {va!r} in the folder, {vb!r} now")
    return out


def prepare_run_dir(cfg: Config) -> Path:
    """Create the run folder, or check that an existing one was made with a compatible config."""
    run_dir = cfg.run_dir()
    saved = run_dir / "config.yaml"
    if saved.exists():
        try:
            old = config_from_dict(yaml.safe_load(saved.read_text()) or {})
        except ConfigError as exc:
            raise RunFolderError(f"run folder {run_dir} was made by another version of dpot-hpc "
                                 f"({saved}: {exc}); use a new run.dir") from None
        diffs = _diff(old.to_dict(), cfg.to_dict())
        if diffs:
            raise RunFolderError(
                f"run folder {run_dir} was made with another configuration; use a new run.dir or the old "
                "settings. Differences:\n  " + "\n  ".join(diffs)
            )
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
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


def prepared_sample(cfg: Config, run_dir: Path, cat_path: Path) -> Path:
    """The prepared sample of the run (made on first use)."""
    path = run_dir / "prepared.h5"
    if not path.exists():
        prepare_sample(cfg, cat_path, path, log=say)
    return path


def truth_of(cat_path: Path) -> dict | None:
    """The mock's truth scalars, or None for a catalogue without truth."""
    if not h5py.is_hdf5(cat_path):
        return None
    t = read_truth(cat_path)
    return t["scalars"] if t else None


def write_summary(cfg: Config, run_dir: Path, member_scalars: dict[str, dict], truth: dict | None,
                  baryon_note: str, timing: dict | None = None) -> dict:
    """Write summary.json and summary.h5 from every potential member's scalars; return the summary.

    timing: wall seconds per stage of this invocation (and the rank count), reported as is.
    """
    report = ensemble_report(member_scalars)
    summary = {
        **report,
        "units": SCALARS,
        "truth": truth,
        "members": member_scalars,
        "timing_s": timing or {},
        "settings": {
            "shell_kpc": [cfg.summary.shell_r_min_kpc, cfg.summary.shell_r_max_kpc],
            "arc_dr_kpc": cfg.summary.arc_dr_kpc,
            "arc_dz_kpc": cfg.summary.arc_dz_kpc,
            "grid_spacing_kpc": cfg.summary.grid_spacing_kpc,
            "baryons": baryon_note,
            "accel_axes": "heliocentric Galactic Cartesian (x towards the Galactic centre)",
        },
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    with atomic_h5(run_dir / "summary.h5") as f:
        for k, unit in SCALARS.items():
            g = f.create_group(k)
            g.attrs["unit"] = unit
            for stat, v in report["best"][k].items():
                g.attrs[stat] = v
            if truth:
                g.attrs["truth"] = truth[k]
            for pipe, stats in report["pipelines"].items():
                p = g.create_group(pipe)
                for stat, v in stats[k].items():
                    p.attrs[stat] = v
                ids = [m for m in member_scalars if m.rsplit("-", 1)[0] == pipe]
                p.create_dataset("members", data=np.asarray([member_scalars[m][k] for m in ids]))
                p.attrs["member_ids"] = json.dumps(ids)
        f.attrs["settings"] = json.dumps(summary["settings"])
    return summary
