"""Statistics over ensemble members: per pipeline the median and 16-84 percentile half-width of every
scalar, the best estimate and its combined uncertainty, and plain-text tables of them."""

from __future__ import annotations

import numpy as np

from ..physics.scalars import SCALARS


def ensemble_summary(values: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Per scalar: median, 16th and 84th percentiles, half-width of the 16-84 range, count."""
    out = {}
    for k, v in values.items():
        arr = np.asarray(v, dtype=float)
        p16, p50, p84 = np.percentile(arr, [16, 50, 84])
        out[k] = {"median": float(p50), "p16": float(p16), "p84": float(p84),
                  "half_width": float((p84 - p16) / 2), "n": int(arr.size)}
    return out


def pipeline_of(member_id: str) -> str:
    """'x0_v0-003' -> 'x0_v0'."""
    return member_id.rsplit("-", 1)[0]


def best_member_ids(member_ids: list[str]) -> tuple[list[str], str]:
    """(the members the best estimate is the median over, their description): the potential_seed
    members, or every member when there are none."""
    anchor = [m for m in member_ids if pipeline_of(m) == "potential_seed"]
    return (anchor, "potential_seed") if anchor else (list(member_ids), "all members")


def ensemble_report(member_scalars: dict[str, dict[str, float]]) -> dict:
    """Per pipeline and scalar: median, 16th/84th percentiles and half-width over its members.

    best: the median over the potential_seed members (over all members when there are none),
    with ``combined_half_width`` = the pipelines' 16-84 half-widths added in quadrature (pipelines
    with a single member contribute nothing).
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
        hw = [pipelines[p][k]["half_width"] for p in pipelines if pipelines[p][k]["n"] > 1]
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
