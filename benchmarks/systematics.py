"""The systematic term (``calibration.realizations``) checked family by family on the coverage runs.

The term is the mean error of the run's own settings on built-in mocks of known truth
(``statistics.systematic_term``). Here, for each family F of the default's coverage runs
(results/coverage_default.json, coverage_heldout.json; their summaries in out/coverage_<label>/, bands
recomputed by the current code), the term is computed from the runs of the *other* families, as a
run on F's kind of galaxy would compute it from mocks that only resemble it, and compared with:

- F's own mean error over its realizations (what the term should predict), with its standard error;
- per realization of F, the rms error as reported and with the term's mean error subtracted;
- how often the reported 68% and 95% bands contain the truth, alone and widened by the term in
  quadrature (sqrt(h68^2 + s^2) and sqrt(h95^2 + (1.96 s)^2), s the term's ``systematic``).

Also the term of the size a run would buy (``--per-family`` R realizations of each other family, drawn
at random from the finished runs, ``--draws`` times): the scatter of its mean error over the draws and
the median of its reported standard error. And every end-to-end calibrated run in out/calibration/*
(a run folder whose summary carries the term), with its own error against the truth.

    python benchmarks/systematics.py

Writes benchmarks/results/systematics.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from runs import HERE, commit, machine, write_json

from dpot_hpc.data.runfolder import RunFolder
from dpot_hpc.ensemble.statistics import systematic_term
from dpot_hpc.ensemble.summary import estimates

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0")
LABELS = ("default", "heldout")


def coverage_runs() -> dict[str, dict[str, dict]]:
    """{family: {'<family>-rNN': summary with bands recomputed by the current code}} of the coverage runs."""
    out: dict[str, dict[str, dict]] = {}
    for label in LABELS:
        result = json.loads((HERE / "results" / f"coverage_{label}.json").read_text())
        for family, entry in result["families"].items():
            runs = {}
            for k in range(entry["n_realizations"]):
                run_dir = HERE / "out" / f"coverage_{label}" / family / f"r{k:02d}"
                summary = json.loads((run_dir / "summary.json").read_text())
                _, cfg = RunFolder.open(run_dir)
                summary.update(estimates(cfg, summary["members"]))
                runs[f"{family}-r{k:02d}"] = summary
            out[family] = runs
    return out


def check(family: str, runs: dict[str, dict], calibration: dict[str, dict]) -> dict:
    """The term from ``calibration`` against the runs of ``family``."""
    term = systematic_term(calibration, len(calibration))
    out = {"calibration_runs": len(calibration), "realizations": len(runs), "scalars": {}}
    for k in SCALARS:
        t = term[k]
        e = np.array([s["final"][k]["value"] - s["truth"][k] for s in runs.values()])
        h68 = np.array([s["final"][k]["half_width_68"] for s in runs.values()])
        h95 = np.array([s["final"][k]["half_width_95"] for s in runs.values()])
        s_ = t["systematic"]
        out["scalars"][k] = {
            "term_mean_error": t["mean_error"], "term_mean_error_sigma": t["mean_error_sigma"], "term_systematic": s_,
            "family_mean_error": float(e.mean()), "family_mean_error_sigma": float(e.std(ddof=1) / math.sqrt(len(e))),
            "rms_error": float(np.sqrt(np.mean(e**2))),
            "rms_error_minus_term": float(np.sqrt(np.mean((e - t["mean_error"]) ** 2))),
            "covered_68": int((abs(e) <= h68).sum()), "covered_95": int((abs(e) <= h95).sum()),
            "covered_68_with_term": int((abs(e) <= np.hypot(h68, s_)).sum()),
            "covered_95_with_term": int((abs(e) <= np.hypot(h95, 1.96 * s_)).sum()),
        }
    return out


def small_terms(family: str, runs: dict[str, dict[str, dict]], per_family: int, draws: int, seed: int = 0) -> dict:
    """The term from ``per_family`` random runs of each other family, ``draws`` times: per scalar the
    standard deviation of its mean error over the draws and the median of its reported standard error."""
    rng = np.random.default_rng(seed)
    others = [f for f in runs if f != family]
    means: dict[str, list] = {k: [] for k in SCALARS}
    ses: dict[str, list] = {k: [] for k in SCALARS}
    for _ in range(draws):
        pick = {}
        for f in others:
            names = sorted(runs[f])
            for i in rng.choice(len(names), size=per_family, replace=False):
                pick[names[i]] = runs[f][names[i]]
        term = systematic_term(pick, len(pick))
        for k in SCALARS:
            means[k].append(term[k]["mean_error"])
            ses[k].append(term[k]["mean_error_sigma"])
    return {"per_family": per_family, "draws": draws,
            "scalars": {k: {"mean_error_mean": float(np.mean(means[k])), "mean_error_sd": float(np.std(means[k])),
                            "median_reported_sigma": float(np.median(ses[k]))} for k in SCALARS}}


def calibrated_runs() -> dict[str, dict]:
    """Every run folder in out/calibration/ whose summary carries a systematic term."""
    out = {}
    for path in sorted((HERE / "out" / "calibration").glob("*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("systematic"):
            term = s["systematic"]
            out[path.parent.name] = {
                "calibration_runs": term["runs"], "wall_s": s["timing_s"],
                "scalars": {k: {"value": s["final"][k]["value"], "truth": s["truth"][k],
                                "error": s["final"][k]["value"] - s["truth"][k],
                                "half_width_68": s["final"][k]["half_width_68"],
                                "half_width_95": s["final"][k]["half_width_95"], **term[k]} for k in SCALARS}}
    return out


def table(result: dict) -> str:
    lines = ["| family | scalar | term from the other families: mean error +- se | family's own mean error +- se "
             "| rms error | rms error minus the term | 68% band covers: alone / with the term | 95%: alone / with "
             f"| term from {result['small']['per_family']} runs per other family: sd over draws (median se) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for family, c in result["families"].items():
        n = c["realizations"]
        for k, r in c["scalars"].items():
            sm = result["small"]["families"][family]["scalars"][k]
            lines.append(f"| {family} | {k} | {r['term_mean_error']:+.4f} +- {r['term_mean_error_sigma']:.4f} "
                         f"| {r['family_mean_error']:+.4f} +- {r['family_mean_error_sigma']:.4f} | {r['rms_error']:.4f} "
                         f"| {r['rms_error_minus_term']:.4f} | {r['covered_68']}/{n} / {r['covered_68_with_term']}/{n} "
                         f"| {r['covered_95']}/{n} / {r['covered_95_with_term']}/{n} "
                         f"| {sm['mean_error_sd']:.4f} ({sm['median_reported_sigma']:.4f}) |")
    for name, run in result["calibrated_runs"].items():
        lines += ["", f"End to end: `{name}` ({len(run['calibration_runs'])} calibration runs: "
                      f"{', '.join(run['calibration_runs'])})", "",
                  "| scalar | error against the truth | 68% (95%) half-width | term: mean error +- se | systematic "
                  "| rms error | calibration runs' 68% / 95% bands covering |", "|---|---|---|---|---|---|---|"]
        m = len(run["calibration_runs"])
        for k, r in run["scalars"].items():
            se = f"{r['mean_error_sigma']:.4f}" if r["mean_error_sigma"] is not None else "-"
            lines.append(f"| {k} | {r['error']:+.4f} | {r['half_width_68']:.4f} ({r['half_width_95']:.4f}) "
                         f"| {r['mean_error']:+.4f} +- {se} | {r['systematic']:.4f} | {r['rms_error']:.4f} "
                         f"| {r['covered_68']}/{m} / {r['covered_95']}/{m} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-family", type=int, default=2)
    ap.add_argument("--draws", type=int, default=2000)
    args = ap.parse_args()
    runs = coverage_runs()
    result = {"commit": commit(), "machine": machine(), "families": {},
              "small": {"per_family": args.per_family, "draws": args.draws, "families": {}}}
    for family in runs:
        calibration = {n: s for f, rs in runs.items() if f != family for n, s in rs.items()}
        result["families"][family] = check(family, runs[family], calibration)
        result["small"]["families"][family] = small_terms(family, runs, args.per_family, args.draws)
    result["calibrated_runs"] = calibrated_runs()
    write_json(HERE / "results" / "systematics.json", result)
    print(table(result))


if __name__ == "__main__":
    main()
