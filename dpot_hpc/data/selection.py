"""Does the prepared sample thin out towards the edge of the selection sphere?

The method assumes that the stars inside the sphere are a complete sample of their phase-space
density (docs/method.md): a cut that removes more of the distant stars makes the density seem to fall
towards the edge in every direction, and the potential fitted to it is too concentrated (rho too
high: +60% where the default parallax_over_error cut removed a third of the distant stars at four
times DR3's errors, docs/recovery.md). Gaia's parallax_over_error cut does exactly that once the
parallax errors are a tenth of the parallaxes at the sphere's edge. ``EdgeLosses`` counts, chunk by
chunk, the stars the quality cuts remove near the edge and well inside, and finds the faintest
absolute magnitude at which the cuts keep (nearly) every star at the edge: a ``cuts.abs_mag_g_max``
there makes the sample volume-complete. It also counts the stars just inside and just beyond the
sphere: a catalogue that stops at the sphere gains no stars across the edge when it is re-noised
(the obs_noise members) while it loses some.
"""

from __future__ import annotations

import numpy as np

#: Warn when the quality cuts remove this much larger a fraction of the stars at 0.8-1 r_max than
#: inside r_max / 2 (2 percentage points).
EDGE_LOSS_WARN = 0.02
#: The suggested abs_mag_g_max loses at most this much more of the stars at 0.8-1 r_max than the cuts
#: remove inside r_max / 2 (half the warning's margin).
EDGE_LOSS_SUGGEST = 0.01
#: Inner and outer regions, in units of the sphere's radius.
INNER_R, OUTER_R = 0.5, 0.8
#: The rim: stars within this fraction of r_max inside and outside the sphere's edge.
RIM = 0.1
#: A catalogue with fewer stars just beyond the sphere than this times those just inside it stops at
#: the sphere (e.g. a query for parallax > 1 / r_max).
STOPS_AT_SPHERE = 0.1


class EdgeLosses:
    """Stars removed by the quality cuts near the sphere's edge and well inside it, and the stars just
    inside and just beyond the edge (by their measured distance 1/parallax), accumulated over chunks."""

    def __init__(self, r_max_kpc: float):
        self.r_max_kpc = r_max_kpc
        self.inner = np.zeros(2, dtype=np.int64)  # [stars, removed]
        self.outer = np.zeros(2, dtype=np.int64)
        self.rim = np.zeros(2, dtype=np.int64)  # stars at 0.9-1 r_max and at 1-1.1 r_max
        self.outer_mag: list[np.ndarray] = []
        self.outer_removed: list[np.ndarray] = []

    def add(self, distance_kpc: np.ndarray, removed: np.ndarray, abs_mag_g: np.ndarray | None) -> None:
        """One chunk's stars with a positive parallax: distance [kpc], whether a quality cut removed
        each, and their absolute G magnitude (None when the catalogue has no photometry)."""
        inner = distance_kpc < INNER_R * self.r_max_kpc
        outer = (distance_kpc >= OUTER_R * self.r_max_kpc) & (distance_kpc < self.r_max_kpc)
        self.inner += [inner.sum(), (removed & inner).sum()]
        self.outer += [outer.sum(), (removed & outer).sum()]
        r = distance_kpc / self.r_max_kpc
        self.rim += [((r >= 1.0 - RIM) & (r < 1.0)).sum(), ((r >= 1.0) & (r < 1.0 + RIM)).sum()]
        if abs_mag_g is not None:
            self.outer_mag.append(abs_mag_g[outer])
            self.outer_removed.append(removed[outer])

    def result(self) -> dict:
        """{inner_removed, outer_removed (fractions; None without stars there), suggested_abs_mag_g_max
        (None when not needed or not found), warn (bool), stars_inside_rim, stars_beyond_rim (at
        0.9-1 and 1-1.1 r_max)}."""
        frac = [float(r / n) if n else None for n, r in (self.inner, self.outer)]
        warn = None not in frac and frac[1] - frac[0] > EDGE_LOSS_WARN
        mag = None
        if warn and self.outer_mag:
            mag = faintest_complete_magnitude(np.concatenate(self.outer_mag), np.concatenate(self.outer_removed),
                                              frac[0] + EDGE_LOSS_SUGGEST)
        return {"inner_removed": frac[0], "outer_removed": frac[1], "suggested_abs_mag_g_max": mag, "warn": bool(warn),
                "stars_inside_rim": int(self.rim[0]), "stars_beyond_rim": int(self.rim[1])}

    def stops_at_sphere(self) -> bool:
        """Whether the catalogue holds (almost) no stars just beyond the sphere: fewer than
        STOPS_AT_SPHERE times those just inside it (a real catalogue's count goes on, roughly with
        the volume)."""
        return self.rim[0] >= 100 and self.rim[1] < STOPS_AT_SPHERE * self.rim[0]


def faintest_complete_magnitude(abs_mag_g: np.ndarray, removed: np.ndarray, max_loss: float,
                                min_stars: int = 100) -> float | None:
    """The faintest M_G such that the cuts removed at most max_loss of the stars at least as bright
    (from at least min_stars of them), rounded down to 0.1 mag; None if there is none."""
    ok = np.isfinite(abs_mag_g)
    order = np.argsort(abs_mag_g[ok])
    mag, lost = abs_mag_g[ok][order], np.cumsum(removed[ok][order])
    n = np.arange(1, len(mag) + 1)
    good = (lost <= max_loss * n) & (n >= min_stars)
    if not good.any():
        return None
    return float(np.floor(mag[np.flatnonzero(good)[-1]] * 10.0) / 10.0)


def rim_warning(path: str, result: dict, r_max_kpc: float) -> str:
    """The warning for a catalogue that stops at the sphere while the run re-noises it (obs_noise)."""
    return (f"catalogue {path}: {result['stars_beyond_rim']} stars lie at {r_max_kpc:g}-{(1 + RIM) * r_max_kpc:g} kpc "
            f"against {result['stars_inside_rim']} at {(1 - RIM) * r_max_kpc:g}-{r_max_kpc:g} kpc: it seems to stop at the "
            "selection sphere (catalogue.r_max_kpc), so the obs_noise members' re-noised copies lose stars at the edge "
            "and gain none, and the noise correction takes that loss for noise (docs/method.md, 'Selection'); give a "
            "catalogue that extends past the sphere (to ~1.5 r_max)")


def edge_warning(path: str, result: dict, cut_names: list[str]) -> str:
    """The warning text for a sample that thins out towards the edge (``EdgeLosses.result``)."""
    fix = (f"set cuts.abs_mag_g_max: {result['suggested_abs_mag_g_max']:g} (stars at least that bright pass the "
           "cuts out to the edge) to make it volume-complete, or " if result["suggested_abs_mag_g_max"] is not None
           else "select a volume-complete sample (cuts.abs_mag_g_max), or ")
    return (f"catalogue {path}: the quality cuts ({', '.join(cut_names)}) remove {result['outer_removed']:.1%} of the "
            f"stars at 0.8-1 r_max but {result['inner_removed']:.1%} inside r_max/2: the sample thins out towards "
            "the sphere's edge, which the flows take for a falling density, and rho comes out too high "
            f"(docs/method.md, 'Selection'); {fix}relax cuts.parallax_over_error_min")
