"""Figure 4, the CBE residual of the best-estimate potential over the gradient cache, binned in the
three projections: where the fitted potential fails to make the best-fit DF stationary."""

from __future__ import annotations

import numpy as np

from .mpl import new_figure
from .panels import SIGNIFICANCE_LIMIT, colorbar, label_projection, mesh, symmetric_limit
from .projections import PROJECTIONS
from .residuals import MIN_POINTS_PER_BIN, ResidualMap


def plot_residuals(maps: dict[str, ResidualMap]):
    """Rows: mean residual per bin, its significance; columns: projections."""
    fig = new_figure(3.6 * len(maps), 6.2)
    axes = fig.subplots(2, len(maps), squeeze=False)
    lim = symmetric_limit(np.concatenate([m.mean.ravel() for m in maps.values()]))
    for col, (name, m) in zip(axes.T, maps.items()):
        proj = PROJECTIONS[name]
        im = mesh(col[0], m.edges_a, m.edges_b, m.mean, cmap="RdBu_r", vmin=-lim, vmax=lim)
        colorbar(fig, im, col[0], "mean residual [km/s/kpc]")
        im = mesh(col[1], m.edges_a, m.edges_b, m.significance, cmap="RdBu_r",
                  vmin=-SIGNIFICANCE_LIMIT, vmax=SIGNIFICANCE_LIMIT)
        colorbar(fig, im, col[1], "mean / standard error")
        col[0].set_title("mean CBE residual")
        col[1].set_title("its significance")
        label_projection(col, proj, equal_aspect=name == "xy")
    return fig


def caption_residuals(maps: dict[str, ResidualMap], n_points: int, omega_p: float, mean_abs: float) -> str:
    sig = np.concatenate([m.significance[np.isfinite(m.significance)] for m in maps.values()])
    return (f"The residual r = d ln f/dt of the collisionless Boltzmann equation at the {n_points} points of "
            "cache/best_fit.h5 (the best-fit DF's mean gradients; without it the df_seed and bootstrap flows' own caches), with the best-estimate potential (the "
            f"members' median acceleration) in the frame rotating at their median Omega_p = {omega_p:.3f} km/s/kpc; "
            f"mean |r| = {mean_abs:.3g} km/s/kpc. Top: the mean residual per bin. Bottom: its significance, "
            "the mean divided by its standard error (sample standard deviation / sqrt(points)), treating the "
            f"cache points as independent; bins with fewer than {MIN_POINTS_PER_BIN} points are blank, colours "
            f"saturate at +-{SIGNIFICANCE_LIMIT:g}. A potential that made f stationary would leave only noise "
            f"(mean 0, unit spread); here {np.mean(np.abs(sig) > 3):.0%} of the bins exceed 3. Errors of the DF "
            "fit show here too: the map cannot tell a wrong potential from a wrong DF.")
