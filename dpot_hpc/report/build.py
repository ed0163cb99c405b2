"""``dpot-hpc report``: the figures and index.html of a finished run folder (report/ in the folder).

Reads summary.json, summary.h5's maps (computed here if the summary predates them), the prepared
sample, the best-fit gradient cache, the member files' histories and the best-estimate potential
members. A figure whose input file is missing (say, prepared.h5 not copied from the cluster) is
listed on the page as not drawn, with the file it needed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..data.h5io import atomic_write_text
from ..data.runfolder import REPORT_FIGURES, RunFolder
from ..ensemble.maps import read_maps
from ..ensemble.summary import summary_maps
from ..ensemble.statistics import best_member_ids
from ..progress import say
from . import mpl
from .availability import NOTICE, PlotsUnavailable, available
from .dfcheck import compare
from .fig_dfcheck import caption_df_check, plot_df_check
from .fig_maps import caption_maps, plot_maps
from .fig_residuals import caption_residuals, plot_residuals
from .fig_scalars import caption_scalars, plot_scalars
from .fig_training import caption_training, plot_training
from .html import FigureEntry, render_index
from .inputs import MissingInput, best_members, best_cache_points, histories, read_best_cache, read_stars, read_summary
from .references import PUBLISHED
from .residuals import best_residual, residual_maps

TITLES = {
    "scalars": "Scalars by pipeline (cf. the paper's Figure 6)",
    "df_check": "DF check: stars against the flow ensemble (cf. the paper's Figure 9)",
    "maps": "Potential maps: density and acceleration through the Sun",
    "residuals": "CBE residual of the best-estimate potential",
    "learning_curves": "Training curves",
}


class ReportContext:
    """What the figures share, each read once on first use."""

    def __init__(self, folder: RunFolder, cfg, summary: dict):
        self.folder, self.cfg, self.summary = folder, cfg, summary
        self.sun = cfg.frame.sun()
        self.maps_computed = False  # summary.h5 predates the maps: they were computed for the page
        self._cache: dict = {}

    def once(self, key: str, make: Callable):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def members(self):
        return self.once("members", lambda: best_members(self.folder, self.summary))

    def cache(self) -> dict[str, torch.Tensor]:
        return self.once("cache", lambda: read_best_cache(self.folder))

    def cache_points(self) -> np.ndarray:
        return self.once("cache_points", lambda: best_cache_points(self.cache()))


def _scalars(ctx: ReportContext):
    return plot_scalars(ctx.summary, PUBLISHED), caption_scalars(ctx.summary, PUBLISHED)


def _df_check(ctx: ReportContext):
    stars, samples = read_stars(ctx.folder), ctx.cache_points()
    r_max = ctx.cfg.cache.r_max_kpc
    maps = compare(stars, samples, ctx.sun, r_max)
    n_in = int((np.linalg.norm(stars[:, :3], axis=1) < r_max).sum())
    return plot_df_check(maps), caption_df_check(maps, n_in, len(samples), r_max)


def _maps(ctx: ReportContext):
    stored = read_maps(ctx.folder.summary_h5) if ctx.folder.summary_h5.is_file() else None
    if stored is None:
        ctx.maps_computed = True
        ids, band_ids, maps = summary_maps(ctx.cfg, ctx.folder, list(ctx.summary["members"]), ctx.folder.truth())
        stored = maps, ids, band_ids
    return plot_maps(stored[0]), caption_maps(*stored)


def _residuals(ctx: ReportContext):
    members = ctx.members()
    r = best_residual(ctx.cache(), members)
    maps = residual_maps(ctx.cache_points(), r, ctx.sun, ctx.cfg.cache.r_max_kpc)
    omega = float(np.median([m.omega_p_kms_kpc for m in members]))
    return plot_residuals(maps), caption_residuals(maps, len(r), omega, float(np.mean(np.abs(r))))


def _training(ctx: ReportContext):
    df, pot = histories(ctx.folder, "df"), histories(ctx.folder, "potential")
    truth = ctx.summary.get("truth") or {}
    return plot_training(df, pot, truth.get("omega_p")), caption_training(df, pot)


MAKERS = {"scalars": _scalars, "df_check": _df_check, "maps": _maps, "residuals": _residuals, "learning_curves": _training}


def write_report(run_dir: str | Path, log: Callable[[str], None] = say) -> Path:
    """Write report/<figure>.png and report/index.html for a finished run folder; returns index.html.

    Raises ``PlotsUnavailable`` without matplotlib, FileNotFoundError without summary.json.
    """
    if not available():
        raise PlotsUnavailable(NOTICE)
    t0 = time.monotonic()
    folder, cfg = RunFolder.open(run_dir)
    summary = read_summary(folder)
    ctx = ReportContext(folder, cfg, summary)
    entries, notes = [], []
    with mpl.style():
        for name in REPORT_FIGURES:
            t = time.monotonic()
            try:
                fig, caption = MAKERS[name](ctx)
            except MissingInput as exc:
                entries.append(FigureEntry(name, TITLES[name], missing=str(exc)))
                log(f"report: {name} not drawn: {exc}")
                continue
            path = mpl.save(fig, folder.report_figure(name))
            entries.append(FigureEntry(name, TITLES[name], path.name, caption))
            log(f"report: {path.name} ({time.monotonic() - t:.1f} s)")
    if ctx.maps_computed:
        notes.append("summary.h5 holds no maps with their uncertainty (written by an older dpot-hpc): the maps were "
                     "computed for this page.")
    links = (folder.summary_json, folder.summary_h5, folder.config, folder.plan)
    rel = {p.name: "../" + folder.relative(p) for p in links if p.is_file()}
    ids, _ = best_member_ids(list(summary["members"]))
    html = render_index(summary, entries, folder.root.resolve().name, rel, notes)
    atomic_write_text(folder.report_index, html)
    log(f"report: {folder.report_index} ({len(ids)} best-estimate members, {time.monotonic() - t0:.1f} s)")
    return folder.report_index
