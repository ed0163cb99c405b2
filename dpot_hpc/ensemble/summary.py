"""The run's summary: every potential member's scalars gathered into summary.json and summary.h5.

summary.json: ``best`` (per quantity: median, p16, p84, half_width, sigma and n of its members, and the
median's uncertainty, terms, dof, half_width_68, half_width_95; ``ensemble.statistics``), ``final``
(the reported value with its uncertainty and bands),
``best_from``, ``pipelines`` (the same statistics per pipeline), ``units``, ``truth`` (mock only),
``members`` (every potential member's scalars), ``systematic`` (``statistics.systematic_term``, or
None), ``timing_s`` and ``settings`` (shell, arc, grid,
baryon model, axes). summary.h5: one group per quantity with the best-estimate statistics, ``unit``
and ``truth`` as attrs, and one subgroup per pipeline with its statistics, ``member_ids`` and the
dataset ``members``; and the group ``maps``: the best-estimate members' fields on two planes through
the Sun with their standard deviation (and the truth for a mock), see ``ensemble.maps``.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from ..config import Config
from ..data.h5io import atomic_h5, atomic_write_text
from ..data.mockfile import MockTruth
from ..data.runfolder import RunFolder, RunFolderError
from ..physics.scalars import SCALARS
from .calibration import calibration_ids, finished_calibrations
from .maps import best_maps, write_maps
from .members import baryon_density, load_potential_member, verified
from .plan import BEST_FIT, cache_flows, noise_level, potential_members
from .statistics import (best_member_ids, df_term_factor, df_term_pipeline, ensemble_report, final_estimate,
                         pipeline_of, simex, systematic_term)


def averaged_flows(cfg: Config, member_ids: list[str]) -> int:
    """How many flows the best estimate averages over: the best-fit DF's when it is the median over
    potential_seed members, else the number of members it is the median over."""
    ids, best_from = best_member_ids(member_ids)
    return len(cache_flows(cfg, BEST_FIT)) if best_from == "potential_seed" else len(ids)


def estimates(cfg: Config, member_scalars: dict[str, dict]) -> dict:
    """From every potential member's scalars: ``pipelines``, ``best`` and ``best_from``
    (``statistics.ensemble_report``), ``simex`` (None unless the run extrapolates to zero noise) and
    ``final``, the reported values and bands. No I/O: a benchmark recomputes a finished run's bands
    with the current code from the members in its summary.json."""
    report = ensemble_report(member_scalars, averaged_flows(cfg, list(member_scalars)))
    levels: dict[float, list] = {}
    for m, sc in member_scalars.items():
        if noise_level(pipeline_of(m)):
            levels.setdefault(noise_level(pipeline_of(m)), []).append(sc)
    base = [sc for m, sc in member_scalars.items() if pipeline_of(m) == "df_seed"]
    simexed = simex(report["best"], base, levels) if len(levels) >= 2 and base else None
    return {**report, "simex": simexed, "final": final_estimate(report["best"], simexed, cfg.df.deconvolve)}


def write_summary(cfg: Config, folder: RunFolder, member_scalars: dict[str, dict], truth: dict | None,
                  baryon_note: str, timing: dict | None = None,
                  maps: tuple[dict, list[str], list[str]] | None = None, systematic: dict | None = None) -> dict:
    """Write summary.json and summary.h5 from every potential member's scalars on the data; return the
    summary.

    timing: wall seconds per stage of this invocation (and the rank count), reported as is.
    maps: (``ensemble.maps.best_maps``'s fields, the ids of the best-estimate members and of the band
    members they come from), or None.
    systematic: ``statistics.systematic_term`` of the finished calibration runs, or None.
    """
    report = estimates(cfg, member_scalars)
    summary = {
        **report,
        "units": SCALARS,
        "truth": truth,
        "members": member_scalars,
        "systematic": systematic,
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
    atomic_write_text(folder.summary_json, json.dumps(summary, indent=2))
    with atomic_h5(folder.summary_h5) as f:
        for k, unit in SCALARS.items():
            g = f.create_group(k)
            g.attrs["unit"] = unit
            for stat, v in report["best"][k].items():
                g.attrs[stat] = json.dumps(v) if isinstance(v, dict) else v
            if truth:
                g.attrs["truth"] = truth[k]
            for pipe, stats in report["pipelines"].items():
                p = g.create_group(pipe)
                for stat, v in stats[k].items():
                    p.attrs[stat] = v
                ids = [m for m in member_scalars if pipeline_of(m) == pipe]
                p.create_dataset("members", data=np.asarray([member_scalars[m][k] for m in ids]))
                p.attrs["member_ids"] = json.dumps(ids)
        f.attrs["settings"] = json.dumps(summary["settings"])
        if systematic is not None:
            f.attrs["systematic"] = json.dumps(systematic)
        if maps is not None:
            write_maps(f.create_group("maps"), *maps, cfg.cache.r_max_kpc, cfg.summary.grid_spacing_kpc)
    return summary


def summarize(cfg: Config, folder: RunFolder, scalars: dict[str, dict] | None = None, timing: dict | None = None) -> dict:
    """Write the summary from the potential members' scalars (read from their files if not given).
    Creates nothing but the summary files: a folder whose members are not finished is an error. The
    systematic term comes from the calibration runs finished so far (``calibration``).
    timing None (``dpot-hpc summary``) keeps the wall times of the summary being replaced."""
    if timing is None:
        timing = _previous_timing(folder)
    order = potential_members(cfg)
    if scalars is None:
        missing = [s.id for s in order if verified(s, cfg, folder) != "done"]
        if missing:
            raise RunFolderError(f"cannot summarise {folder.root}: potential members not finished: {', '.join(missing)}")
        scalars = {s.id: load_potential_member(s.path(folder)).scalars for s in order}
    data = {s.id: scalars[s.id] for s in order}
    truth = folder.truth()
    _, note = baryon_density(cfg, truth, cfg.frame.sun())
    ids, band_ids, maps = summary_maps(cfg, folder, list(data), truth)
    systematic = systematic_term(finished_calibrations(cfg, folder), len(calibration_ids(cfg)))
    return write_summary(cfg, folder, data, truth.scalars if truth else None, note, timing, (maps, ids, band_ids),
                         systematic)


def _previous_timing(folder: RunFolder) -> dict | None:
    """``timing_s`` of the run folder's summary.json, or None when there is none to read."""
    try:
        return json.loads(folder.summary_json.read_text()).get("timing_s") or None
    except (OSError, ValueError, AttributeError):
        return None


def band_members(cfg: Config, member_ids: list[str]) -> tuple[list[str], float]:
    """(the members whose spread is the band's DF term, ``statistics.df_term_pipeline``, or none; the
    factor on their standard deviation, ``statistics.df_term_factor``)."""
    pipe = df_term_pipeline(Counter(pipeline_of(m) for m in member_ids))
    ids = [m for m in member_ids if pipeline_of(m) == pipe] if pipe else []
    return ids, df_term_factor(averaged_flows(cfg, member_ids))


def summary_maps(cfg: Config, folder: RunFolder, member_ids: list[str],
                 truth: MockTruth | None) -> tuple[list[str], list[str], dict]:
    """(best-estimate member ids, band member ids, their maps: ``maps.best_maps``) of a run's finished
    potential members; truth: the mock's (``RunFolder.truth``), or None."""
    ids, _ = best_member_ids(member_ids)
    band_ids, factor = band_members(cfg, member_ids)

    def nets(which: list[str]) -> list:
        return [load_potential_member(folder.member("potential", m)).net for m in which]

    maps = best_maps(nets(ids), (nets(band_ids), factor), truth, cfg.cache.r_max_kpc, cfg.summary.grid_spacing_kpc)
    return ids, band_ids, maps
