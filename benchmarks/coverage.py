"""Coverage of the reported bands: independent mock realizations (other mock.seed, same settings),
each run through `dpot-hpc run`, and for every scalar the fraction of realizations whose 68% and 95%
bands contain the truth, the mean error in units of the 68% band, and the mean error itself.

The value and bands are the run's reported ones (summary.json "final": SIMEX when the run does it,
else the raw median and the pipelines' combined band). Runs are
resumable: a finished realization is reused.

    python benchmarks/coverage.py --families barred_isothermal thin_thick_lowered --realizations 10 \
        --set mock.n_stars=50000 --set df.max_epochs=30 --label small
    python benchmarks/coverage.py --realizations 1 --label default    # the default run, once per family

Writes benchmarks/results/coverage_<label>.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from runs import HERE, commit, finished_run, machine, write_json

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0", "rho_dm")


def run_one(family: str, k: int, settings: list[str], work: Path, resummarise: bool) -> dict:
    """One realization (resumable): its summary and wall time. ``resummarise``: write the summary of a
    finished realization again with the current code (e.g. after a change to the bands)."""
    run_dir = work / family / f"r{k:02d}"
    if resummarise and (run_dir / "summary.json").exists():
        subprocess.run([sys.executable, "-m", "dpot_hpc", "summary", "-c", str(run_dir / "config.yaml")], check=True,
                       capture_output=True)
    summary, wall = finished_run(run_dir, [f"mock.family={family}", f"mock.seed={1000 + k}", *settings])
    return {"summary": summary, "wall_s": wall}


def errors(summary: dict) -> dict[str, dict]:
    """Per scalar: value, 68% and 95% half-widths, truth, error, and whether each band covers."""
    out = {}
    for k in SCALARS:
        f = summary["final"][k]
        value, h68, h95 = f["value"], f["half_width_68"], f["half_width_95"]
        truth = summary["truth"][k]
        err = value - truth
        out[k] = {"value": value, "truth": truth, "error": err, "half_width_68": h68, "half_width_95": h95,
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
    ap.add_argument("--resummarise", action="store_true", help="summarise finished realizations again first")
    args = ap.parse_args()
    work = HERE / "out" / f"coverage_{args.label}"
    result = {"label": args.label, "settings": args.settings, "realizations": args.realizations, "families": {},
              "commit": commit(), "machine": machine()}
    for fam in args.families:
        runs = [run_one(fam, k, args.settings, work, args.resummarise) for k in range(args.realizations)]
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
                        "mean_half_width_68": sum(x["half_width_68"] for x in e) / len(e)}
        result["families"][fam] = {"per_scalar": stats, "realizations": errs,
                                   "wall_s": [r["wall_s"] for r in runs]}
    out = HERE / "results" / f"coverage_{args.label}.json"
    write_json(out, result)
    print("| family | scalar | 68% coverage | 95% coverage | mean abs error / 68% band | mean error | mean rel. error (raw) |")
    print("|---|---|---|---|---|---|---|")
    for fam, r in result["families"].items():
        for k, s in r["per_scalar"].items():
            rel = "" if s["mean_relative_error"] is None else f"{s['mean_relative_error']:+.1%} ({s['mean_raw_relative_error']:+.1%})"
            print(f"| {fam} | {k} | {s['coverage_68']:.0%} | {s['coverage_95']:.0%} | {s['mean_abs_error_over_band']:.2f} | "
                  f"{s['mean_error']:+.4f} | {rel} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
