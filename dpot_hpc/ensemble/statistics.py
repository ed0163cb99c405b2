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


#: Scalars whose calibrated bias is relative (a fraction of the value); the others' are differences.
RELATIVE = ("a_x", "rho_R0")
#: The 95% band as a multiple of the 68% half-width (Gaussian errors; the coverage benchmark checks it).
Z95 = 1.96


def calibrate(best: dict, calibration: dict[str, dict[str, dict[str, float]]],
              truths: dict[str, dict[str, float]]) -> dict:
    """The bias no ensemble sees, from the same pipeline run on built-in mocks, and the corrected best.

    best: ``ensemble_report``'s best (per scalar: median, combined_half_width, ...);
    calibration: {family: {member id: scalars}}; truths: {family: the mock's true scalars}.
    Per family the error of the median over its members against its truth (relative for
    ``RELATIVE`` scalars, a difference otherwise); the bias is their mean, its uncertainty the
    half-range over families and, for each family's own estimate, the data's statistical band
    (same estimator on a draw of the same size: same noise) divided by sqrt(number of families).
    The bias is corrected (median / (1 + bias) or median - bias) only where it is significant, larger
    than twice its uncertainty; elsewhere the value is left as it is and the bias goes into the
    systematic term. rho_dm is corrected with rho_R0 (the baryons are a model).
    Returns {scalar: {value, half_width_68, half_width_95, statistical, systematic, bias, bias_kind,
    per_family}} and the per-family details.
    """
    fams = sorted(calibration)
    per_family = {}
    for fam in fams:
        members = calibration[fam]
        med = {k: float(np.median([m[k] for m in members.values()])) for k in SCALARS}
        per_family[fam] = {k: (med[k] / truths[fam][k] - 1.0) if k in RELATIVE else med[k] - truths[fam][k]
                           for k in SCALARS}
    out = {}
    for k in SCALARS:
        if k == "rho_dm":
            continue
        b = [per_family[f][k] for f in fams]
        bias = float(np.mean(b))
        stat = best[k]["combined_half_width"]
        x = best[k]["median"]
        rel = k in RELATIVE
        spread = (max(b) - min(b)) / 2
        noise = stat / abs(x) if rel and x else stat
        unc = float(np.hypot(spread, noise / np.sqrt(len(fams))))
        applied = abs(bias) > 2 * unc
        if applied:
            value, sys_ = (x / (1.0 + bias) if rel else x - bias), unc
        else:
            value, sys_ = x, float(np.hypot(bias, unc))
        sys_abs = abs(value) * sys_ if rel else sys_
        total = float(np.hypot(stat, sys_abs))
        out[k] = {"value": value, "statistical": stat, "systematic": sys_abs, "half_width_68": total,
                  "half_width_95": Z95 * total, "bias": bias, "bias_uncertainty": unc, "corrected": bool(applied),
                  "bias_kind": "relative" if rel else "difference", "per_family": {f: per_family[f][k] for f in fams}}
    rho_b = best["rho_R0"]["median"] - best["rho_dm"]["median"]
    r = out["rho_R0"]
    out["rho_dm"] = {**r, "value": r["value"] - rho_b, "statistical": best["rho_dm"]["combined_half_width"],
                     "per_family": {f: per_family[f]["rho_dm"] for f in fams},
                     "bias_kind": "from rho_R0 (the baryon density is a model)"}
    out["rho_dm"]["half_width_68"] = float(np.hypot(out["rho_dm"]["statistical"], r["systematic"]))
    out["rho_dm"]["half_width_95"] = Z95 * out["rho_dm"]["half_width_68"]
    return out


def format_calibrated(calibrated: dict, best: dict, truth: dict[str, float] | None = None) -> str:
    """The calibrated best estimate: raw median, bias, corrected value +- 68% and 95% half-widths
    (statistical and systematic in quadrature), and against the truth when known."""
    head = f"{'quantity':10s} {'unit':10s} {'raw':>9s} {'bias':>8s} {'corrected':>10s} {'+-68%':>8s} {'+-95%':>8s}"
    if truth:
        head += f" {'truth':>9s} {'error':>9s} {'err/68%':>8s}"
    lines = [head, "-" * len(head)]
    for k, unit in SCALARS.items():
        c = calibrated[k]
        bias = f"{c['bias']:+7.1%}" if c["bias_kind"] == "relative" else \
            (f"{c['bias']:+8.4f}" if c["bias_kind"] == "difference" else "(rho)")
        line = (f"{k:10s} {unit:10s} {best[k]['median']:9.4f} {bias:>8s} {c['value']:10.4f} "
                f"{c['half_width_68']:8.4f} {c['half_width_95']:8.4f}")
        if truth and k in truth:
            d = c["value"] - truth[k]
            line += f" {truth[k]:9.4f} {d:+9.4f} {d / c['half_width_68'] if c['half_width_68'] else float('inf'):+8.2f}"
        lines.append(line)
    return "\n".join(lines)


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


def corrected_best(best: dict, simex_result: dict | None) -> dict:
    """The best estimate with the SIMEX value and uncertainty in place of median and band (for the
    calibration, which corrects what remains), or ``best`` itself without SIMEX."""
    if not simex_result:
        return best
    return {k: {**best[k], "median": simex_result[k]["value"], "combined_half_width": simex_result[k]["uncertainty"]}
            for k in best}


def final_estimate(best: dict, simexed: dict | None, calibrated: dict | None) -> dict:
    """The reported value of every scalar with its 68% and 95% half-widths: calibrated (which includes
    SIMEX) when the run calibrates, else the SIMEX value, else the raw best estimate; ``how`` says which."""
    out = {}
    for k in SCALARS:
        if calibrated:
            c = calibrated[k]
            v, h, how = c["value"], c["half_width_68"], "calibrated" + (" + SIMEX" if simexed else "")
        elif simexed:
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
