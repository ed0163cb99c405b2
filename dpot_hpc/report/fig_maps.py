"""Figure 3, potential maps: the best estimate's density and accelerations in the planes z = 0 and
y = 0 through the Sun, the members' spread, and for a mock the errors against the truth."""

from __future__ import annotations

import numpy as np

from ..ensemble.maps import PLANES
from .mpl import new_figure
from .panels import colorbar, robust_range, symmetric_limit

AXIS = "xyz"
#: Arrows per axis of the acceleration field.
ARROWS = 11


def _extent(x: np.ndarray, h: int, v: int) -> list[float]:
    step = x[0, 1, h] - x[0, 0, h]
    return [x[0, 0, h] - step / 2, x[0, -1, h] + step / 2, x[0, 0, v] - step / 2, x[-1, 0, v] + step / 2]


def _arrows(ax, fields: dict, h: int, v: int) -> None:
    x, a = fields["x"], fields["accel"]
    k = max(1, x.shape[0] // ARROWS)
    sl = (slice(k // 2, None, k), slice(k // 2, None, k))
    ah, av = a[sl][..., h], a[sl][..., v]
    big = np.nanmax(np.hypot(ah, av))
    if not np.isfinite(big) or big <= 0:
        return
    step = (x[0, 1, h] - x[0, 0, h]) * k
    q = ax.quiver(x[sl][..., h], x[sl][..., v], ah, av, angles="xy", scale_units="xy", scale=big / (0.9 * step),
                  color="w", width=0.006, edgecolor="k", linewidth=0.5)
    key = float(f"{big:.1g}")
    ax.quiverkey(q, 0.97, 0.04, key, f"{key:g} km/s/Myr", labelpos="W", coordinates="axes",
                 fontproperties={"size": 7})


def plot_maps(maps: dict[str, dict[str, np.ndarray]]):
    """Rows: the planes; columns: rho with acceleration arrows, its standard deviation and, when the
    maps carry the truth, rho's relative error and |a - a_true| / |a_true|."""
    has_truth = all("rho_truth" in f for f in maps.values())
    ncol = 4 if has_truth else 2
    fig = new_figure(3.1 * ncol + 0.6, 2.9 * len(maps))
    axes = fig.subplots(len(maps), ncol, squeeze=False)
    rho_lo, rho_hi = robust_range(np.concatenate([f["rho"].ravel() for f in maps.values()]))
    for row, (plane, f) in zip(axes, maps.items()):
        h, v = PLANES[plane]
        ext = _extent(f["x"], h, v)
        fixed = AXIS[({0, 1, 2} - {h, v}).pop()]
        im = row[0].imshow(f["rho"], origin="lower", extent=ext, vmin=rho_lo, vmax=rho_hi, cmap="viridis")
        colorbar(fig, im, row[0], r"$\rho$ [M$_\odot$/pc$^3$]")
        _arrows(row[0], f, h, v)
        row[0].set_title(rf"$\rho$ and $a$ in the plane {fixed} = 0")
        lo, hi = robust_range(f["rho_sigma"], 0, 98)
        im = row[1].imshow(f["rho_sigma"], origin="lower", extent=ext, vmin=0, vmax=hi, cmap="magma")
        colorbar(fig, im, row[1], r"$\sigma_\rho$ [M$_\odot$/pc$^3$]")
        row[1].set_title(r"uncertainty of $\rho$ (1 $\sigma$)")
        if has_truth:
            lim = symmetric_limit(f["rho_rel_error"], cap=1.0)
            im = row[2].imshow(f["rho_rel_error"], origin="lower", extent=ext, vmin=-lim, vmax=lim, cmap="RdBu_r")
            colorbar(fig, im, row[2], r"$(\rho - \rho_\mathrm{true}) / \rho_\mathrm{true}$")
            row[2].set_title(r"$\rho$ against the truth")
            da = np.linalg.norm(f["accel"] - f["accel_truth"], axis=-1) / np.linalg.norm(f["accel_truth"], axis=-1)
            _, hi = robust_range(da, 0, 98)
            im = row[3].imshow(da, origin="lower", extent=ext, vmin=0, vmax=hi, cmap="magma")
            colorbar(fig, im, row[3], r"$|a - a_\mathrm{true}| / |a_\mathrm{true}|$")
            row[3].set_title(r"$a$ against the truth")
        for ax in row:
            ax.plot([0], [0], marker="*", color="gold", mec="k", ms=9, ls="none")
            ax.locator_params(axis="x", nbins=5)
            ax.set_xlabel(f"{AXIS[h]} [kpc]")
            ax.set_ylabel(f"{AXIS[v]} [kpc]")
    return fig


def caption_maps(maps: dict[str, dict[str, np.ndarray]], member_ids: list[str], band_ids: list[str]) -> str:
    f = next(iter(maps.values()))
    step = float(f["x"][0, 1, 0] - f["x"][0, 0, 0])
    r = float(np.nanmax(np.abs(f["x"][..., 0])))
    text = (f"Median over the best-estimate members ({', '.join(member_ids)}) on the planes z = 0 (top) and "
            f"y = 0 (bottom) through the Sun (star), heliocentric Galactic axes (x towards the Galactic "
            f"centre), grid spacing {step * 1000:.0f} pc, within {r:g} kpc. Density rho = Laplacian(Phi)/4 pi G; "
            "arrows: the in-plane acceleration. "
            + (f"Uncertainty: the standard deviation over the members with their own flow ({', '.join(band_ids)}) "
               "times sqrt(1 + 1/K), K the flows of the best-fit DF: the DF term of the scalars' band."
               if len(band_ids) > 1 else
               "Uncertainty: half the members' 16-84 percentile range (this run has fewer than two members with "
               "their own flow, so it shows the potential seeds' scatter only, not the DF's)."))
    if "rho_truth" in f:
        text += " For the mock: relative errors against its analytic potential."
    return text + " The fields and their standard deviations are in summary.h5, group maps."
