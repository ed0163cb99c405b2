"""Benchmark: what a profile recovers on the built-in mock families, and how accurate its DF is.

For each family, one `dpot-hpc run` with the profile (config.yaml's defaults, or a profile file such as
configs/accurate.yaml) on the family's mock (mock.seed 1), then: every reported scalar against the
truth (error, error in units of the 68% band), the wall time and its split by stage, and the
gradient errors of the best-fit cache at its own points against the mock's exact DF
(``df_accuracy.cache_errors``: median relative error of grad_x ln f and grad_v ln f, near-plane
slopes), for the bagged mean and for each single flow.

    python benchmarks/recovery.py --label default
    python benchmarks/recovery.py --label accurate --config configs/accurate.yaml
    python benchmarks/recovery.py --label default --families heavy_disc_polytropic   # the held-out family

Writes benchmarks/results/recovery_<label>.json (families accumulate) and prints a Markdown table;
finished runs are reused.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from df_accuracy import cache_errors
from runs import HERE, ROOT, commit, finished_run, machine

SCALARS = {"a_x": "km/s/Myr", "a_y": "km/s/Myr", "a_z": "km/s/Myr", "omega_p": "km/s/kpc", "rho_R0": "Msun/pc^3",
           "rho_dm": "Msun/pc^3"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--families", nargs="+", default=["barred_isothermal", "thin_thick_lowered"])
    ap.add_argument("--set", dest="settings", action="append", default=[])
    args = ap.parse_args()
    config = args.config.resolve() if args.config else None  # the runs start in the repository's root
    out = HERE / "results" / f"recovery_{args.label}.json"
    result = json.loads(out.read_text()) if out.exists() else {"families": {}}
    result.update({"label": args.label, "config": str(config.relative_to(ROOT)) if config else "config.yaml defaults",
                   "settings": args.settings, "commit": commit(), "machine": machine()})
    for fam in args.families:
        run_dir = HERE / "out" / f"recovery_{args.label}" / fam
        summary, wall = finished_run(run_dir, [f"mock.family={fam}", "mock.seed=1", *args.settings], config)
        grads = cache_errors(str(run_dir))
        result["families"][fam] = {
            "wall_s": wall, "stages_s": summary["timing_s"], "truth": summary["truth"],
            "final": {k: {f: summary["final"][k][f] for f in ("value", "half_width_68", "half_width_95", "dof", "how")}
                      for k in SCALARS},
            "best_fit_cache": grads.get("best_fit"), "single_flows": {k: v for k, v in grads.items() if "/flow" in k}}
        out.write_text(json.dumps(result, indent=2) + "\n")
    print("| family | quantity | unit | truth | recovered +- 68% (95%) | error | error / 68% band |")
    print("|---|---|---|---|---|---|---|")
    for fam, r in result["families"].items():
        for k, unit in SCALARS.items():
            f, t = r["final"][k], r["truth"][k]
            rel = f" ({(f['value'] - t) / t:+.1%})" if k in ("a_x", "rho_R0") else ""
            print(f"| {fam} | {k} | {unit} | {t:.4f} | {f['value']:.4f} +- {f['half_width_68']:.4f} "
                  f"({f['half_width_95']:.4f}) | {f['value'] - t:+.4f}{rel} | {(f['value'] - t) / f['half_width_68']:+.2f} |")
    print("\n| family | wall | grad_x ln f error: bagged / single flows (their spread) | grad_v ln f error | "
          "z-slope | v_z-slope |")
    print("|---|---|---|---|---|---|")
    for fam, r in result["families"].items():
        c, singles = r["best_fit_cache"], list(r["single_flows"].values())
        rng = lambda key: f"{min(x[key] for x in singles):.3f}-{max(x[key] for x in singles):.3f}" if singles else "-"  # noqa: E731
        print(f"| {fam} | {r['wall_s'] / 60:.1f} min | {c['gx_err']:.3f} / {rng('gx_err')} ({c['gx_spread']:.3f}) | "
              f"{c['gv_err']:.3f} / {rng('gv_err')} ({c['gv_spread']:.3f}) | {c['slope_z']:.3f} | {c['slope_vz']:.3f} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
