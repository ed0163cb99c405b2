"""Figure 5, training curves: every DF member's training and validation loss, and every potential
member's loss, mean |residual| and Omega_p, so a member that did not converge stands out."""

from __future__ import annotations

import numpy as np

from ..ensemble.statistics import pipeline_of
from ..models.df_training import HISTORY_COLUMNS as DF_COLUMNS
from ..models.potential_training import HISTORY_COLUMNS as POT_COLUMNS
from .mpl import new_figure


def _colors(ids: list[str]) -> dict[str, str]:
    return {m: f"C{i % 10}" for i, m in enumerate(ids)}


def plot_training(df: dict[str, np.ndarray], pot: dict[str, np.ndarray], omega_truth: float | None):
    """Panels: DF loss (solid: training, dashed: validation), potential loss, mean |r|, Omega_p."""
    fig = new_figure(13.0, 3.3)
    ax_df, ax_loss, ax_r, ax_om = fig.subplots(1, 4)
    e, tr, va = (DF_COLUMNS.index(c) for c in ("epoch", "train_loss", "val_loss"))
    for mid, h in df.items():
        c = _colors(list(df))[mid]
        ax_df.plot(h[:, e], h[:, tr], color=c, lw=1, label=mid)
        ax_df.plot(h[:, e], h[:, va], color=c, lw=1, ls="--")
    ax_df.set(title="DF members: loss (dashed: validation)", xlabel="epoch", ylabel="-<ln p> per star")
    s, lo, ra, om = (POT_COLUMNS.index(c) for c in ("step", "loss", "mean_abs_r", "omega_p"))
    ids = list(pot)
    pipes = {p: f"C{i % 10}" for i, p in enumerate(dict.fromkeys(pipeline_of(m) for m in ids))}
    styles = ["-", "--", ":", "-."]
    for i, (mid, h) in enumerate(pot.items()):
        kw = {"color": pipes[pipeline_of(mid)], "ls": styles[i % len(styles)], "lw": 1, "label": mid}
        ax_loss.plot(h[:, s], h[:, lo], **kw)
        ax_r.plot(h[:, s], h[:, ra], **kw)
        ax_om.plot(h[:, s], h[:, om], **kw)
    if omega_truth is not None:
        ax_om.axhline(omega_truth, color="crimson", lw=1, ls="--", label="truth")
    ax_loss.set(title="potential members: loss", xlabel="step", ylabel="ln <asinh-softened |r| + penalty>")
    ax_r.set(title="mean |CBE residual|", xlabel="step", ylabel="<|r|> [km/s/kpc]")
    ax_om.set(title=r"pattern speed $\Omega_p$", xlabel="step", ylabel="km/s/kpc")
    for ax in (ax_df, ax_om):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(ncol=1 + len(ax.get_legend_handles_labels()[0]) // 8)
    return fig


def caption_training(df: dict[str, np.ndarray], pot: dict[str, np.ndarray]) -> str:
    return (f"{len(df)} DF member(s): mean training loss per epoch (solid) and validation loss (dashed), in "
            "-<ln p> per star of the standardised flow (lower is better; a validation curve rising while the "
            "training loss falls means over-fitting; training stops early when it has not improved for "
            f"df.patience epochs). {len(pot)} potential member(s), colour by pipeline: the training loss, the mean "
            "|CBE residual| of the batch and Omega_p, every report step. Curves that have not flattened by the "
            "last step belong to members that did not converge.")
