"""Statistics over ensemble members: per pipeline the median and 16-84 percentile half-width of every
scalar, the best estimate and its combined uncertainty, and plain-text tables of them."""

from __future__ import annotations

import math

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


#: Pipelines whose members each train their own flow on the data (df_seed) or on a bootstrap resample of
#: it, with their own potential: their spread is the DF's share of the band.
FLOW_PIPELINES = ("df_seed", "bootstrap")


def df_term_pipeline(counts: dict[str, int]) -> str | None:
    """The pipeline whose members' spread is the DF term of the band, given the members per pipeline:
    bootstrap with two or more members (the data's sampling and the flows' training noise), else
    df_seed with two or more (training noise only), else None."""
    return next((p for p in ("bootstrap", "df_seed") if counts.get(p, 0) > 1), None)


def df_term_factor(n_averaged: int) -> float:
    """The DF term is the single-flow members' standard deviation times this: sqrt(1 + 1/K) for a best
    estimate that averages K flows' training noise but keeps the data's sampling noise (``band_terms``)."""
    return math.sqrt(1.0 + 1.0 / max(1, n_averaged))


def student_t_quantile(p: float, dof: float) -> float:
    """The p-quantile (0.5 < p < 1) of Student's t distribution with ``dof`` degrees of freedom, by
    bisection on its CDF (Simpson's rule on the density; 1e-7 absolute); the normal quantile for
    dof = inf."""
    if not 0.5 < p < 1.0:
        raise ValueError(f"p must lie in (0.5, 1), got {p}")

    def cdf_above_half(x: float) -> float:  # P(0 < T < x)
        if math.isinf(dof):
            return 0.5 * math.erf(x / math.sqrt(2.0))
        c = math.exp(math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2)) / math.sqrt(dof * math.pi)
        n = 2000
        t = np.linspace(0.0, x, n + 1)
        f = c * (1.0 + t * t / dof) ** (-(dof + 1) / 2)
        return float((x / n / 3) * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum()))

    lo, hi = 0.0, 1.0
    while cdf_above_half(hi) < p - 0.5:
        hi *= 2.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if cdf_above_half(mid) < p - 0.5 else (lo, mid)
    return 0.5 * (lo + hi)


#: Two-sided coverages of the reported bands and the one-sided quantile each takes.
BANDS = {"68": 0.5 + 0.6826894921370859 / 2, "95": 0.975}


def band_terms(pipelines: dict[str, dict[str, dict[str, float]]], k: str, n_averaged: int) -> tuple[dict, dict]:
    """({term: standard deviation}, {term: degrees of freedom}) of the best estimate of scalar k.

    - ``df``: the DF's sampling and training noise. The sample standard deviation s of the bootstrap
      members (each a flow on a resample of the stars and its own potential: the data's sampling
      noise and the training noise), or of the df_seed members when there are fewer than two
      bootstrap members (then the sampling noise is missing: training noise only). The best
      estimate averages ``n_averaged`` flows' worth of training noise but keeps the data's own
      sampling noise, so its standard deviation is at most s sqrt(1 + 1/n_averaged).
    - ``x0_v0``: the spread of the members with drawn solar parameters (not averaged away).
    - ``obs_noise``: the spread of the members on re-noised data (the observational noise).
    Each term's degrees of freedom are its members - 1.
    """
    terms, dof = {}, {}
    flow_pipe = df_term_pipeline({p: st[k]["n"] for p, st in pipelines.items()})
    if flow_pipe:
        st = pipelines[flow_pipe][k]
        terms["df"] = st["sigma"] * df_term_factor(n_averaged)
        dof["df"] = st["n"] - 1
    for pipe in ("x0_v0", "obs_noise"):
        st = pipelines.get(pipe, {}).get(k)
        if st and st["n"] > 1:
            terms[pipe], dof[pipe] = st["sigma"], st["n"] - 1
    return terms, dof


def effective_dof(terms: dict[str, float], dof: dict[str, int]) -> int:
    """Welch-Satterthwaite degrees of freedom of a sum of independent variance estimates,
    (sum s_i^2)^2 / sum (s_i^4 / nu_i), rounded down (the wider band); 0 (no band) without terms or
    when a term was not measured (no degrees of freedom, or infinite)."""
    if not terms or any(dof[t] <= 0 or not math.isfinite(v) for t, v in terms.items()):
        return 0
    den = sum(v**4 / dof[t] for t, v in terms.items())
    if den == 0.0:  # every term is exactly 0: the largest dof stands
        return max(dof.values())
    return max(1, int(math.floor(sum(v**2 for v in terms.values()) ** 2 / den + 1e-9)))


def ensemble_report(member_scalars: dict[str, dict[str, float]], n_averaged: int = 1) -> dict:
    """Per pipeline and scalar: median, 16th/84th percentiles, half-width and sample standard deviation
    over its members; ``best``: the median over the best-estimate members (``best_member_ids``) and its
    uncertainty (``band_terms``; ``n_averaged``: flows the best estimate averages over): ``uncertainty``
    (the terms in quadrature), ``terms``, their ``term_dof``, the effective ``dof`` and the half-widths of
    the 68% and 95% bands, Student's t quantiles of that many degrees of freedom times the uncertainty
    (wide for few members, as it must be).
    The obs_noise pipelines at extra noise levels (obs_noise_x<lambda>) only feed ``simex``.
    """
    by_pipe: dict[str, dict[str, list[float]]] = {}
    for mid, sc in member_scalars.items():
        d = by_pipe.setdefault(pipeline_of(mid), {k: [] for k in SCALARS})
        for k in SCALARS:
            d[k].append(sc[k])
    pipelines = {p: ensemble_summary(v) for p, v in sorted(by_pipe.items())}
    ids, best_from = best_member_ids(list(member_scalars))
    best = ensemble_summary({k: [member_scalars[m][k] for m in ids] for k in SCALARS})
    for k in SCALARS:
        terms, dof = band_terms(pipelines, k, n_averaged)
        best[k].update(uncertainty(terms, dof))
    return {"pipelines": pipelines, "best": best, "best_from": best_from}


def uncertainty(terms: dict[str, float], dof: dict[str, int]) -> dict:
    """The standard deviation (the terms in quadrature), the terms, the effective degrees of freedom
    (``effective_dof``) and the 68% and 95% half-widths (Student's t quantiles times the standard
    deviation); no term at all (a single member): 0 and infinite half-widths, since nothing was measured."""
    sigma = float(np.sqrt(np.sum(np.square(list(terms.values()))))) if terms else 0.0
    nu = effective_dof(terms, dof)
    out = {"uncertainty": sigma, "terms": terms, "dof": nu, "term_dof": dof}
    for name, p in BANDS.items():
        out[f"half_width_{name}"] = student_t_quantile(p, nu) * sigma if nu > 0 else math.inf
    return out


def format_pipelines(pipelines: dict[str, dict[str, dict[str, float]]]) -> str:
    """Median and 16-84 half-width of every scalar, one line per pipeline."""
    head = f"{'pipeline':15s} {'n':>3s} " + " ".join(f"{k:>18s}" for k in SCALARS)
    lines = [head, "-" * len(head)]
    for p, st in pipelines.items():
        n = next(iter(st.values()))["n"]
        lines.append(f"{p:15s} {n:3d} " + " ".join(f"{st[k]['median']:9.4f}+-{st[k]['half_width']:7.4f}" for k in SCALARS))
    return "\n".join(lines)


def simex(best: dict, base: list[dict[str, float]], levels: dict[float, list[dict[str, float]]]) -> dict:
    """Simulation-extrapolation to zero observational noise (Cook & Stefanski 1994), like for like.

    ``levels`` maps each added-noise level lambda (variance lambda times the quoted errors') to its
    obs_noise members' scalars; ``base`` holds the same estimator at lambda = 0: one flow on the data
    itself and its own potential (the df_seed members). For every scalar a straight line is fitted by
    least squares through the members' means at lambda = 0, 1, 2, ... (weights: members per level); its
    slope b is the change per unit of noise variance, and the line from lambda = 0 down to -1 (no noise
    at all) is -b. The reported value is the best estimate (a bagged DF, whose flow noise is smaller
    than a single flow's) corrected by that same -b: the noise bias is measured with single flows at
    every level, never by comparing a bagged estimate with single flows. Uncertainty of the correction:
    the members' pooled within-level standard deviation s, Var(b) = s^2 / sum n_i (lambda_i - mean)^2.
    Returns {scalar: {value, correction, uncertainty, slope, points, members}}."""
    groups = {0.0: base, **{float(lv): m for lv, m in levels.items()}}
    lam = np.array(sorted(groups))
    n = np.array([len(groups[lv]) for lv in lam], dtype=float)
    lam_bar = float((n * lam).sum() / n.sum())
    sxx = float((n * (lam - lam_bar) ** 2).sum())
    out = {}
    for k in SCALARS:
        vals = [np.array([m[k] for m in groups[lv]], dtype=float) for lv in lam]
        means = np.array([v.mean() for v in vals])
        slope = float((n * (lam - lam_bar) * (means - (n * means).sum() / n.sum())).sum() / sxx)
        dof = int(sum(v.size - 1 for v in vals))
        pooled = math.sqrt(sum(((v - v.mean()) ** 2).sum() for v in vals) / dof) if dof > 0 else math.inf
        out[k] = {"value": best[k]["median"] - slope, "correction": -slope, "slope": slope,
                  "uncertainty": pooled / math.sqrt(sxx), "dof": dof,
                  "points": {f"{lv:g}": float(mu) for lv, mu in zip(lam, means)},
                  "members": {f"{lv:g}": int(c) for lv, c in zip(lam, n)}}
    return out


def final_estimate(best: dict, simexed: dict | None, deconvolved: bool = False) -> dict:
    """The reported value of every scalar with its uncertainty and 68% and 95% half-widths: the SIMEX
    value when the run extrapolates to zero noise (the correction's uncertainty in place of the
    obs_noise term: the observational noise is what it corrects), else the best estimate itself;
    ``how`` says which: ``SIMEX``, ``deconvolved`` (the flows were fitted through the quoted errors,
    so the best estimate is already corrected) or ``raw``."""
    out = {}
    for k in SCALARS:
        b = best[k]
        if simexed:
            keep = [t for t in b["terms"] if t != "obs_noise"]
            terms = {**{t: b["terms"][t] for t in keep}, "simex": simexed[k]["uncertainty"]}
            dof = {**{t: b["term_dof"][t] for t in keep}, "simex": simexed[k]["dof"]}
            out[k] = {"value": simexed[k]["value"], **uncertainty(terms, dof), "how": "SIMEX"}
        else:
            out[k] = {"value": b["median"], **{f: b[f] for f in ("uncertainty", "terms", "dof", "term_dof",
                                                                 "half_width_68", "half_width_95")},
                      "how": "deconvolved" if deconvolved else "raw"}
    return out


def correction_words(how: str) -> str:
    """How the reported values were corrected for the observational noise, as words that follow
    'median over the ... members' ('' for ``raw``)."""
    return {"SIMEX": ", extrapolated to zero observational noise (SIMEX)",
            "deconvolved": ", whose flows were fitted through the stars' quoted errors (df.deconvolve)"}.get(how, "")


def format_final(final: dict, best: dict, truth: dict[str, float] | None = None) -> str:
    """The reported values: raw median, reported value +- the 68% and 95% half-widths (with the degrees
    of freedom of their t quantiles), and the truth and the error in units of the 68% band if known."""
    head = f"{'quantity':10s} {'unit':10s} {'raw':>9s} {'reported':>10s} {'+-68%':>8s} {'+-95%':>8s} {'dof':>4s}"
    if truth:
        head += f" {'truth':>9s} {'error':>9s} {'err/68%':>8s}"
    lines = [head, "-" * len(head)]
    for k, unit in SCALARS.items():
        f = final[k]
        line = (f"{k:10s} {unit:10s} {best[k]['median']:9.4f} {f['value']:10.4f} {f['half_width_68']:8.4f} "
                f"{f['half_width_95']:8.4f} {f['dof']:4d}")
        if truth and k in truth:
            d = f["value"] - truth[k]
            h = f["half_width_68"]
            line += f" {truth[k]:9.4f} {d:+9.4f} {d / h if 0 < h < math.inf else float('nan'):+8.2f}"
        lines.append(line)
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """What ``dpot-hpc run`` and ``summary`` print: the reported values with their bands, then every
    pipeline's median and 16-84 half-width."""
    how = summary["final"]["a_x"]["how"]
    text = (f"Best estimate: median over the {summary['best_from']} members"
            + correction_words(how)
            + ";\nbands: Student's t quantiles (dof) times the combined standard deviation (docs/method.md;\n"
              "how often they contained the true values on mock galaxies: docs/recovery.md, 'Do the bands cover the truth?');\n"
              "accelerations in heliocentric axes (x towards the Galactic centre):\n")
    text += format_final(summary["final"], summary["best"], summary["truth"])
    systematic = format_systematic(summary.get("systematic"))
    text += "\n\n" + systematic if systematic else ""
    return text + "\n\nPer pipeline (median +- 16-84 half-width):\n" + format_pipelines(summary["pipelines"])


def systematic_term(summaries: dict[str, dict], requested: int) -> dict | None:
    """Per scalar, from the calibration runs' summaries (their ``final`` values and bands and ``truth``):
    ``mean_error`` (reported minus true, in the scalar's unit), ``mean_error_sigma`` (its standard error,
    None with one run), ``systematic`` (sqrt(mean_error^2 + mean_error_sigma^2): the size of the bias
    and of its own uncertainty), ``rms_error``, ``covered_68`` and ``covered_95`` (how many of the runs'
    own reported bands contained their truth); plus ``runs`` (their names) and ``requested``. None
    without a finished calibration run."""
    if not summaries:
        return None
    names = sorted(summaries)
    out: dict = {"runs": names, "requested": requested}
    for k in SCALARS:
        e = np.array([summaries[n]["final"][k]["value"] - summaries[n]["truth"][k] for n in names])
        h68 = np.array([summaries[n]["final"][k]["half_width_68"] for n in names])
        h95 = np.array([summaries[n]["final"][k]["half_width_95"] for n in names])
        mean = float(e.mean())
        se = float(e.std(ddof=1) / math.sqrt(len(e))) if len(e) > 1 else None
        out[k] = {"mean_error": mean, "mean_error_sigma": se,
                  "systematic": math.hypot(mean, se) if se is not None else abs(mean),
                  "rms_error": float(np.sqrt(np.mean(e**2))),
                  "covered_68": int((np.abs(e) <= h68).sum()), "covered_95": int((np.abs(e) <= h95).sum())}
    return out


def format_systematic(term: dict | None) -> str:
    """The summary table's lines for the systematic term ('' without one)."""
    if not term:
        return ""
    n = len(term["runs"])
    families = sorted({r.rsplit("-", 1)[0] for r in term["runs"]})
    head = (f"{'quantity':10s} {'unit':10s} {'mean err':>9s} {'+-se':>8s} {'syst':>8s} {'rms err':>8s} "
            f"{'68% cov':>8s} {'95% cov':>8s}")
    lines = [f"Systematic term: the same settings on {n} built-in mock(s) with known truth"
             + (f" ({n} of {term['requested']} finished)" if n < term["requested"] else "")
             + f" ({', '.join(families)}; docs/method.md);\nnot applied to the values above:", head, "-" * len(head)]
    for k, unit in SCALARS.items():
        t = term[k]
        se = f"{t['mean_error_sigma']:8.4f}" if t["mean_error_sigma"] is not None else f"{'-':>8s}"
        lines.append(f"{k:10s} {unit:10s} {t['mean_error']:+9.4f} {se} {t['systematic']:8.4f} {t['rms_error']:8.4f} "
                     f"{t['covered_68']:>5d}/{n:<2d} {t['covered_95']:>5d}/{n:<2d}")
    return "\n".join(lines)
