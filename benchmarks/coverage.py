"""Coverage of the reported bands: independent mock realizations (other mock.seed, same settings),
each run through `dpot-hpc run`, and for every scalar the fraction of realizations whose 68% and 95%
bands contain the truth, the mean error in units of the 68% band, the mean error itself, and the root
mean square of the errors over that of the reported standard deviations, sqrt(sum err^2 / sum sigma^2):
near 1 when the reported sigma is the error's true standard deviation on average (sigma^2 is an unbiased
estimate of the variance; the mean of (err / sigma)^2 is not: for 3 degrees of freedom it is 3), below 1
when the bands are wider than the errors, above when narrower.

The value and bands are the run's reported ones (summary.json "final": SIMEX when the run does it,
else the raw median and the pipelines' combined band), recomputed by the current code from the members'
scalars. Runs are resumable: a finished realization is reused.

    python benchmarks/coverage.py --families barred_isothermal thin_thick_lowered --realizations 10 \
        --set mock.n_stars=50000 --set df.max_epochs=30 --label small
    python benchmarks/coverage.py --realizations 1 --label default    # the default run, once per family

Writes benchmarks/results/coverage_<label>.json (a family not run this time is kept from the file, with
its own realizations and commit) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from runs import HERE, commit, finished_run, machine, run_commit, write_json

from dpot_hpc.data.runfolder import RunFolder
from dpot_hpc.ensemble.summary import estimates

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0", "rho_dm")


def run_one(family: str, k: int, settings: list[str], work: Path) -> dict:
    """One realization (resumable): its summary, with the bands recomputed by the current code from the
    members' scalars in it (``summary.estimates``: a finished realization of an older commit is read
    as this commit would report it), its wall time and the commit that trained it."""
    run_dir = work / family / f"r{k:02d}"
    summary, wall = finished_run(run_dir, [f"mock.family={family}", f"mock.seed={1000 + k}", *settings])
    _, cfg = RunFolder.open(run_dir)
    summary.update(estimates(cfg, summary["members"]))
    return {"summary": summary, "wall_s": wall, "run_commit": run_commit(run_dir)}


def errors(summary: dict) -> dict[str, dict]:
    """Per scalar: value, 68% and 95% half-widths, truth, error, and whether each band covers."""
    out = {}
    for k in SCALARS:
        f = summary["final"][k]
        value, h68, h95, sigma = f["value"], f["half_width_68"], f["half_width_95"], f["uncertainty"]
        truth = summary["truth"][k]
        err = value - truth
        out[k] = {"value": value, "truth": truth, "error": err, "uncertainty": sigma, "half_width_68": h68,
                  "half_width_95": h95,
                  "in_68": abs(err) <= h68, "in_95": abs(err) <= h95,
                  "error_over_band": err / h68 if h68 else float("inf"),
                  "raw_median": summary["best"][k]["median"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["barred_isothermal", "thin_thick_lowered"])
    ap.add_argument("--realizations", type=int, default=10)
    ap.add_argument("--set", dest="settings", action="append", default=[])
    ap.add_argument("--label", default="coverage")
    args = ap.parse_args()
    work = HERE / "out" / f"coverage_{args.label}"
    out = HERE / "results" / f"coverage_{args.label}.json"
    result = {"label": args.label, "settings": args.settings, "realizations": args.realizations, "families": {},
              "commit": commit(), "machine": machine()}
    if out.exists():  # keep the families not run this time, as they were measured
        old = json.loads(out.read_text())
        for fam, entry in old["families"].items():
            if fam not in args.families:
                result["families"][fam] = {**entry, "n_realizations": entry.get("n_realizations", old["realizations"]),
                                           "commit": entry.get("commit", old["commit"])}
    for fam in args.families:
        runs = [run_one(fam, k, args.settings, work) for k in range(args.realizations)]
        errs = [errors(r["summary"]) for r in runs]
        stats = {}
        for k in SCALARS:
            e = [x[k] for x in errs]
            stats[k] = {"coverage_68": sum(x["in_68"] for x in e) / len(e), "coverage_95": sum(x["in_95"] for x in e) / len(e),
                        "mean_abs_error_over_band": sum(abs(x["error_over_band"]) for x in e) / len(e),
                        "mean_error": sum(x["error"] for x in e) / len(e),
                        "mean_relative_error": sum(x["error"] / x["truth"] for x in e) / len(e) if all(x["truth"] for x in e) else None,
                        "mean_raw_relative_error": sum((x["raw_median"] - x["truth"]) / x["truth"] for x in e) / len(e)
                        if all(x["truth"] for x in e) else None,
                        "mean_half_width_68": sum(x["half_width_68"] for x in e) / len(e),
                        "rms_error_over_rms_sigma": (sum(x["error"] ** 2 for x in e) / sum(x["uncertainty"] ** 2 for x in e))
                        ** 0.5 if any(x["uncertainty"] > 0 for x in e) else None}
        result["families"][fam] = {"per_scalar": stats, "realizations": errs, "n_realizations": len(runs),
                                   "commit": result["commit"],
                                   "wall_s": [r["wall_s"] for r in runs], "run_commits": [r["run_commit"] for r in runs]}
    write_json(out, result)
    print("| family | scalar | 68% coverage | 95% coverage | mean abs error / 68% band | rms error / rms sigma | mean error | "
          "mean rel. error (raw) |")
    print("|---|---|---|---|---|---|---|---|")
    for fam, r in result["families"].items():
        for k, s in r["per_scalar"].items():
            rel = "" if s["mean_relative_error"] is None else f"{s['mean_relative_error']:+.1%} ({s['mean_raw_relative_error']:+.1%})"
            rms = "-" if s["rms_error_over_rms_sigma"] is None else f"{s['rms_error_over_rms_sigma']:.2f}"
            print(f"| {fam} | {k} | {s['coverage_68']:.0%} | {s['coverage_95']:.0%} | {s['mean_abs_error_over_band']:.2f} | "
                  f"{rms} | {s['mean_error']:+.4f} | {rel} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
