"""Figure 1, scalars by pipeline (the paper's Figure 6): one panel per scalar, every member of every
pipeline as a point, each pipeline's median and 16-84 band, the reported value with its 68% and 95% bands,
the truth (mock) or published values (real data)."""

from __future__ import annotations

import math

import numpy as np

from ..ensemble.statistics import correction_words, pipeline_of
from ..physics.scalars import SCALARS
from .mpl import new_figure
from .references import Reference

LABELS = {"a_x": "$a_x$", "a_y": "$a_y$", "a_z": "$a_z$", "omega_p": r"$\Omega_p$",
          "rho_R0": r"$\rho(R=R_0)$", "rho_dm": r"$\rho_\mathrm{DM}$"}


def plot_scalars(summary: dict, references: tuple[Reference, ...] = ()):
    """The figure from summary.json's content; ``references`` are drawn only when there is no truth."""
    pipes = list(summary["pipelines"])
    truth = summary.get("truth")
    refs = [] if truth else list(references)
    colors = {p: f"C{i % 10}" for i, p in enumerate(pipes)}
    rows = ["best estimate", *pipes]
    fig = new_figure(11.0, 1.2 + 0.42 * (len(rows) + 1) * 2)
    axes = fig.subplots(2, 3, sharey=True).ravel()
    for ax, (k, unit) in zip(axes, SCALARS.items()):
        best = summary["final"][k]
        y0 = 0
        for hw, shade, label in ((best["half_width_95"], "0.88", "95% band"), (best["half_width_68"], "0.7", "68% band")):
            if math.isfinite(hw):
                ax.fill_betweenx([y0 - 0.35, y0 + 0.35], best["value"] - hw, best["value"] + hw, color=shade, label=label)
        ax.plot([best["value"]] * 2, [y0 - 0.35, y0 + 0.35], color="k", lw=2)
        for i, p in enumerate(pipes, start=1):
            st = summary["pipelines"][p][k]
            ax.fill_betweenx([i - 0.3, i + 0.3], st["p16"], st["p84"], color=colors[p], alpha=0.25, lw=0)
            ax.plot([st["median"]] * 2, [i - 0.3, i + 0.3], color=colors[p], lw=2)
            vals = [m[k] for mid, m in summary["members"].items() if pipeline_of(mid) == p]
            jitter = np.linspace(-0.18, 0.18, len(vals)) if len(vals) > 1 else np.zeros(1)
            ax.plot(vals, i + jitter, "o", ms=3.5, color=colors[p], mec="k", mew=0.4)
        if truth and k in truth:
            ax.axvline(truth[k], color="crimson", ls="--", lw=1.2, label="truth")
        for j, ref in enumerate(r for r in refs if r.quantity == k):
            ax.errorbar([ref.value], [len(rows) + j], xerr=[ref.error], fmt="D", ms=4, color="crimson", capsize=3)
        ax.set_title(f"{LABELS[k]} [{unit}]")
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.locator_params(axis="x", nbins=5)
    ref_labels = sorted({r.label for r in refs})
    ticks = [*range(len(rows)), *range(len(rows), len(rows) + len(ref_labels))]
    names = [rows[0]] + [f"{p} ({summary['pipelines'][p]['a_x']['n']})" for p in pipes] + ref_labels
    axes[0].set_yticks(ticks, names)
    axes[0].set_ylim(len(ticks) - 0.5, -0.6)
    axes[3].set_yticks(ticks, names)
    if truth:
        axes[0].legend(loc="lower right")
    return fig


def caption_scalars(summary: dict, references: tuple[Reference, ...] = ()) -> str:
    """What the figure shows, in words."""
    text = ("Every potential member as a point, per pipeline (member count in brackets); bars: each "
            "pipeline's median and 16-84 percentile band. Best estimate (top, black): the median over the "
            f"{summary['best_from']} members{correction_words(summary['final']['a_x']['how'])}, "
            "grey bands: its 68% (dark) and 95% (light) bands. "
            "Accelerations are shell averages in heliocentric axes (x towards the Galactic centre).")
    if summary.get("truth"):
        return text + " Dashed red: the mock's truth."
    cites = sorted({r.label for r in references})
    return text + (f" Red diamonds: published values ({'; '.join(cites)}), with their 1-sigma errors." if cites else "")
