"""Paired comparison of two coverage benchmarks run on the same realizations (same mock seeds, same run
seed, settings that differ only by the `--set`s of one of them), e.g. a candidate flow against the default:

    python benchmarks/paired.py default rotated

Per family and scalar, over the realizations both labels have finished (out/coverage_<label>/<family>/rNN):
the mean and root mean square of each one's error against the truth, and in how many realizations B is
closer; per run also the median errors of the best-fit cache's gradients of ln f against the mock's
exact ones (``df_accuracy.cache_errors``, at the cache's own points). Writes
benchmarks/results/paired_<A>_<B>.json and prints a Markdown table. Pairing removes the realizations'
own scatter (the mock's stars), which dominates a difference between unpaired means over a few runs.
A label whose run folders are not on this machine is read from the errors its
results/coverage_<label>.json recorded (no gradient errors then).
"""

from __future__ import annotations

import argparse
import json

from runs import HERE, commit, machine, mean_and_rms, write_json

from df_accuracy import cache_errors  # noqa: E402

SCALARS = ("omega_p", "rho_R0", "a_x", "a_y", "a_z")


def finished(label: str, family: str) -> dict[str, dict]:
    """{realization folder name: its summary} of one coverage label and family."""
    root = HERE / "out" / f"coverage_{label}" / family
    return {d.name: json.loads((d / "summary.json").read_text()) for d in sorted(root.glob("r*"))
            if (d / "summary.json").exists()}


def relative(k: str, err: float, truth: float) -> float:
    """An error as this comparison reports it: relative for rho_R0, as it is for the others."""
    return err / truth if k == "rho_R0" else err


def error(summary: dict, k: str) -> float:
    """The reported value's error against the truth (relative for rho_R0)."""
    return relative(k, summary["final"][k]["value"] - summary["truth"][k], summary["truth"][k])


def errors(label: str, family: str) -> tuple[dict[str, dict[str, float]], bool]:
    """({realization folder name: {scalar: error}}, whether the runs' folders are here): from the run
    folders, or, where they are gone (runs of another machine), from the errors that
    results/coverage_<label>.json recorded for them (realization k is folder rNN, NN = k)."""
    runs = finished(label, family)
    if runs:
        return {r: {k: error(s, k) for k in SCALARS} for r, s in runs.items()}, True
    path = HERE / "results" / f"coverage_{label}.json"
    entry = json.loads(path.read_text())["families"].get(family) if path.exists() else None
    if entry is None:
        return {}, False
    return {f"r{i:02d}": {k: relative(k, x[k]["error"], x[k]["truth"]) for k in SCALARS}
            for i, x in enumerate(entry["realizations"])}, False


def compare(a: str, b: str, family: str) -> dict | None:
    (ra, dirs_a), (rb, dirs_b) = errors(a, family), errors(b, family)
    common = sorted(set(ra) & set(rb))
    if not common:
        return None
    out: dict = {"realizations": common, "scalars": {}, "gradients": {}}
    for k in SCALARS:
        ea, eb = [ra[r][k] for r in common], [rb[r][k] for r in common]
        out["scalars"][k] = {a: mean_and_rms(ea), b: mean_and_rms(eb),
                             "b_closer": sum(abs(y) < abs(x) for x, y in zip(ea, eb)), "errors": {a: ea, b: eb}}
    for label, here in ((a, dirs_a), (b, dirs_b)):
        if not here:  # the cache points are gone with the runs
            out["gradients"][label] = None
            continue
        per_run = [cache_errors(str(HERE / "out" / f"coverage_{label}" / family / r))[0]["best_fit"] for r in common]
        out["gradients"][label] = {m: [p[m] for p in per_run] for m in ("gx_err", "gv_err")}
    return out


def table(a: str, b: str, result: dict) -> str:
    lines = [f"| family | realizations | quantity | {a}: mean (rms) | {b}: mean (rms) | {b} closer |", "|---|---|---|---|---|---|"]
    for fam, r in result["families"].items():
        n = len(r["realizations"])
        for m, name in (("gx_err", "grad_x ln f median error"), ("gv_err", "grad_v ln f median error")):
            ga, gb = (None if r["gradients"][x] is None else r["gradients"][x][m] for x in (a, b))
            closer = "-" if ga is None or gb is None else f"{sum(y < x for x, y in zip(ga, gb))}/{n}"
            lines.append(f"| {fam} | {n} | {name} | {'-' if ga is None else f'{sum(ga) / n:.3f}'} | "
                         f"{'-' if gb is None else f'{sum(gb) / n:.3f}'} | {closer} |")
        for k, s in r["scalars"].items():
            fmt = (lambda v: f"{v:+.1%}") if k == "rho_R0" else (lambda v: f"{v:+.4f}")
            rms = (lambda v: f"{v:.1%}") if k == "rho_R0" else (lambda v: f"{v:.4f}")
            lines.append(f"| {fam} | {n} | {k} error | {fmt(s[a]['mean'])} ({rms(s[a]['rms'])}) | "
                         f"{fmt(s[b]['mean'])} ({rms(s[b]['rms'])}) | {s['b_closer']}/{n} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="coverage label of the baseline (out/coverage_<a>)")
    ap.add_argument("b", help="coverage label of the candidate")
    ap.add_argument("--families", nargs="+", default=["barred_isothermal", "thin_thick_lowered"])
    args = ap.parse_args()
    result = {"a": args.a, "b": args.b, "families": {}, "commit": commit(), "machine": machine()}
    for fam in args.families:
        r = compare(args.a, args.b, fam)
        if r:
            result["families"][fam] = r
    write_json(HERE / "results" / f"paired_{args.a}_{args.b}.json", result)
    print(table(args.a, args.b, result))


if __name__ == "__main__":
    main()
