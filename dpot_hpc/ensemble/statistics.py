"""Statistics over ensemble members: per pipeline the median and 16-84 percentile half-width of every
scalar, the best estimate and its combined uncertainty, and plain-text tables of them."""

from __future__ import annotations

import numpy as np

from ..physics.scalars import SCALARS


def ensemble_summary(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per scalar: median, 16th and 84th percentiles, half-width of the 16-84 range, the sample
    standard deviation (ddof = 1; 0 for one member) and the count. For a handful of members the
    16-84 range underestimates the spread (two members: 0.34 |a - b| against sigma ~ 0.71 |a - b|),
    so the combined band uses sigma."""
    out = {}
    for k, v in values.items():
        arr = np.asarray(v, dtype=float)
        p16, p50, p84 = np.percentile(arr, [16, 50, 84])
        out[k] = {"median": float(p50), "p16": float(p16), "p84": float(p84),
                  "half_width": float((p84 - p16) / 2), "sigma": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
                  "n": int(arr.size)}
    return out


def pipeline_of(member_id: str) -> str:
    """'x0_v0-003' -> 'x0_v0'."""
    return member_id.rsplit("-", 1)[0]


def best_member_ids(member_ids: list[str]) -> tuple[list[str], str]:
    """(the members the best estimate is the median over, their description): the potential_seed
    members (potentials on the best-fit DF), else the members with one potential per flow on the data
    itself or on its bootstrap resamples (df_seed, bootstrap: a bagged estimate), else every member."""
    anchor = [m for m in member_ids if pipeline_of(m) == "potential_seed"]
    if anchor:
        return anchor, "potential_seed"
    anchor = [m for m in member_ids if pipeline_of(m) in ("df_seed", "bootstrap")]
    if anchor:
        return anchor, " and ".join(sorted({pipeline_of(m) for m in anchor}, key=("df_seed", "bootstrap").index))
    return list(member_ids), "all members"


def ensemble_report(member_scalars: dict[str, dict[str, float]]) -> dict:
    """Per pipeline and scalar: median, 16th/84th percentiles and half-width over its members.

    best: the median over the best-estimate members (``best_member_ids``), with
    ``combined_half_width`` = the pipelines' sample standard deviations added in quadrature
    (pipelines with a single member contribute nothing, and the obs_noise pipelines at extra noise
    levels, obs_noise_x<lambda>, only feed ``simex``).
    """
    by_pipe: dict[str, dict[str, list[float]]] = {}
    for mid, sc in member_scalars.items():
        d = by_pipe.setdefault(pipeline_of(mid), {k: [] for k in SCALARS})
        for k in SCALARS:
            d[k].append(sc[k])
    pipelines = {p: ensemble_summary(v) for p, v in sorted(by_pipe.items())}
    ids, best_from = best_member_ids(list(member_scalars))
    best = ensemble_summary({k: [member_scalars[m][k] for m in ids] for k in SCALARS})
    in_band = [p for p in pipelines if not p.startswith("obs_noise_x")]  # extra-noise levels only feed SIMEX
    for k in SCALARS:
        hw = [pipelines[p][k]["sigma"] for p in in_band if pipelines[p][k]["n"] > 1]
        best[k]["combined_half_width"] = float(np.sqrt(np.sum(np.square(hw)))) if hw else 0.0
    return {"pipelines": pipelines, "best": best, "best_from": best_from}


def format_table(best: dict[str, dict[str, float]], truth: dict[str, float] | None = None,
                 spread: str = "combined_half_width") -> str:
    """A plain-text table of recovered values (median +- spread), with truth and error if given."""
    head = f"{'quantity':10s} {'unit':10s} {'recovered':>10s} {'+-':>8s}"
    if truth:
        head += f" {'truth':>10s} {'error':>9s} {'rel.err':>8s}"
    lines = [head, "-" * len(head)]
    for k, unit in SCALARS.items():
        s = best[k]
        line = f"{k:10s} {unit:10s} {s['median']:10.4f} {s.get(spread, s['half_width']):8.4f}"
        if truth and k in truth:
            d = s["median"] - truth[k]
            rel = d / truth[k] if truth[k] != 0 else float("nan")
            line += f" {truth[k]:10.4f} {d:+9.4f} {rel:+8.1%}"
        lines.append(line)
    return "\n".join(lines)


def format_pipelines(pipelines: dict[str, dict[str, dict[str, float]]]) -> str:
    """Median and 16-84 half-width of every scalar, one line per pipeline."""
    head = f"{'pipeline':15s} {'n':>3s} " + " ".join(f"{k:>18s}" for k in SCALARS)
    lines = [head, "-" * len(head)]
    for p, st in pipelines.items():
        n = next(iter(st.values()))["n"]
        lines.append(f"{p:15s} {n:3d} " + " ".join(f"{st[k]['median']:9.4f}+-{st[k]['half_width']:7.4f}" for k in SCALARS))
    return "\n".join(lines)


#: The 95% band as a multiple of the 68% half-width (Gaussian errors; the coverage benchmark checks it).
Z95 = 1.96


def simex(best: dict, levels: dict[float, list[dict[str, float]]]) -> dict:
    """Simulation-extrapolation to zero observational noise (Cook & Stefanski 1994): the best estimate
    (added noise 0) and the medians of the obs_noise members at each added-noise level lambda (variance
    lambda times the quoted errors'), a straight line fitted by least squares, its value at
    lambda = -1 (no noise at all). Uncertainty: the points' own (the data's combined band; sample
    standard deviation / sqrt(n) of a level's members, or the data's band for a single member)
    propagated through the fit's weights. Returns {scalar: {value, correction, uncertainty, points}}."""
    lam = np.array([0.0, *sorted(levels)])
    design = np.stack([np.ones_like(lam), lam], axis=1)
    weights = np.array([1.0, -1.0]) @ np.linalg.pinv(design)  # s(-1) = weights . s
    out = {}
    for k in SCALARS:
        stat = best[k]["combined_half_width"]
        points, var = [best[k]["median"]], [stat**2]
        for lv in sorted(levels):
            vals = np.array([m[k] for m in levels[lv]])
            points.append(float(np.median(vals)))
            var.append((vals.std(ddof=1) / np.sqrt(vals.size)) ** 2 if vals.size > 1 else stat**2)
        value = float(weights @ np.array(points))
        out[k] = {"value": value, "correction": value - points[0],
                  "uncertainty": float(np.sqrt(np.sum(weights**2 * np.array(var)))),
                  "points": {f"{lv:g}": p for lv, p in zip(lam, points)}}
    return out


def final_estimate(best: dict, simexed: dict | None) -> dict:
    """The reported value of every scalar with its 68% and 95% half-widths: the SIMEX value when the run
    extrapolates to zero noise, else the raw best estimate; ``how`` says which."""
    out = {}
    for k in SCALARS:
        if simexed:
            v, h, how = simexed[k]["value"], simexed[k]["uncertainty"], "SIMEX"
        else:
            v, h, how = best[k]["median"], best[k]["combined_half_width"], "raw"
        out[k] = {"value": v, "half_width_68": h, "half_width_95": Z95 * h, "how": how}
    return out


def format_final(final: dict, best: dict, truth: dict[str, float] | None = None) -> str:
    """The reported values: raw median, final value +- 68% and 95% half-widths, and the truth if known."""
    head = f"{'quantity':10s} {'unit':10s} {'raw':>9s} {'reported':>10s} {'+-68%':>8s} {'+-95%':>8s}"
    if truth:
        head += f" {'truth':>9s} {'error':>9s} {'err/68%':>8s}"
    lines = [head, "-" * len(head)]
    for k, unit in SCALARS.items():
        f = final[k]
        line = (f"{k:10s} {unit:10s} {best[k]['median']:9.4f} {f['value']:10.4f} {f['half_width_68']:8.4f} "
                f"{f['half_width_95']:8.4f}")
        if truth and k in truth:
            d = f["value"] - truth[k]
            line += f" {truth[k]:9.4f} {d:+9.4f} {d / f['half_width_68'] if f['half_width_68'] else float('inf'):+8.2f}"
        lines.append(line)
    return "\n".join(lines)
