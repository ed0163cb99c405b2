"""Figure 2, the DF check (the paper's Figure 9): stars, samples of the flow ensemble and the Poisson
significance of their difference, in the three projections."""

from __future__ import annotations

import numpy as np

from .dfcheck import BinnedComparison
from .mpl import log_norm, new_figure
from .panels import SIGNIFICANCE_LIMIT, colorbar, label_projection, mesh
from .projections import PROJECTIONS


def plot_df_check(maps: dict[str, BinnedComparison]):
    """Rows: projections; columns: stars, flow samples (renormalised), significance."""
    fig = new_figure(11.0, 3.2 * len(maps))
    axes = fig.subplots(len(maps), 3, squeeze=False)
    for row, (name, m) in zip(axes, maps.items()):
        proj = PROJECTIONS[name]
        pos = np.concatenate([m.n_data[m.n_data > 0], m.n_flow[m.n_flow > 0]])
        norm = log_norm(max(float(pos.min()), 0.5), float(pos.max())) if pos.size else None
        for ax, values, title in ((row[0], m.n_data, "stars"), (row[1], m.n_flow, "flow ensemble (renormalised)")):
            im = mesh(ax, m.edges_a, m.edges_b, np.where(values > 0, values, np.nan), norm=norm, cmap="viridis")
            ax.set_title(f"{title}: {proj.xlabel.split(' [')[0]}-{proj.ylabel.split(' [')[0]}")
            colorbar(fig, im, ax, "count per bin")
        im = mesh(row[2], m.edges_a, m.edges_b, m.significance, cmap="RdBu_r",
                  vmin=-SIGNIFICANCE_LIMIT, vmax=SIGNIFICANCE_LIMIT)
        row[2].set_title("(flow - stars) / sigma")
        colorbar(fig, im, row[2], "significance")
        label_projection(row, proj, equal_aspect=name == "xy")
    return fig


def caption_df_check(maps: dict[str, BinnedComparison], n_stars: int, n_samples: int, r_max_kpc: float) -> str:
    m = next(iter(maps.values()))
    sig = np.concatenate([v.significance[np.isfinite(v.significance)] for v in maps.values()])
    return (f"The {n_stars} prepared stars within {r_max_kpc:g} kpc of the Sun against {n_samples} samples of "
            "the best-fit flow ensemble (the df_seed and bootstrap flows in equal parts: the points of cache/best_fit.h5, or of those flows' own caches), "
            f"renormalised to the stars' number, in {len(m.edges_a) - 1} x {len(m.edges_b) - 1} bins. "
            "Significance: (n_flow - n_data) / sqrt(n_data + s n_flow), s = stars/samples, i.e. the paper's "
            "(n_flow - n_data)/sqrt(n_data) with the samples' own Poisson noise added; bins empty in both are "
            f"blank; colours saturate at +-{SIGNIFICANCE_LIMIT:g}. Where the flows match the stars it scatters "
            f"about 0 with unit spread (here: mean {sig.mean():+.2f}, rms {np.sqrt(np.mean(sig**2)):.2f} over "
            "the non-empty bins). v_R is positive away from the Galactic centre, v_phi in the sense of rotation.")
