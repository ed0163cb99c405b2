"""Benchmark: what a profile recovers on the built-in mock families, and how accurate its DF is.

For each family, one `dpot-hpc run` with the profile (config.yaml's defaults, or a profile file such as
configs/accurate.yaml) on the family's mock (mock.seed 1), then: every reported scalar against the
truth (error, error in units of the 68% band), the wall time and its split by stage, and the
gradient errors of the best-fit cache at its own points against the mock's exact DF
(``df_accuracy.cache_errors``: median relative error of grad_x ln f and grad_v ln f, near-plane
slopes), for the bagged mean and for each single flow, how that error falls with the number of flows
averaged when the profile has flows on the data besides the bootstrap ones (``df_accuracy.averaging``),
and the density map against the truth by height (``map_errors``: how far the map's rho_sigma can be
trusted away from the plane).

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

import numpy as np
from df_accuracy import cache_errors
from runs import HERE, ROOT, commit, finished_run, machine, run_commit, write_json

from dpot_hpc.ensemble.maps import read_maps

SCALARS = {"a_x": "km/s/Myr", "a_y": "km/s/Myr", "a_z": "km/s/Myr", "omega_p": "km/s/kpc", "rho_R0": "Msun/pc^3",
           "rho_dm": "Msun/pc^3"}


#: Height bins [kpc] of the density map's errors (the xz plane through the Sun).
Z_BINS_KPC = ((0.0, 0.1), (0.1, 0.3), (0.3, 0.6), (0.6, 0.9))


def height_bins(z_kpc: np.ndarray) -> list[tuple[list[float], np.ndarray]]:
    """([lo, hi], mask of the points with lo <= |z| < hi) for each bin of ``Z_BINS_KPC``."""
    z = np.abs(z_kpc)
    return [([lo, hi], (z >= lo - 1e-9) & (z < hi - 1e-9)) for lo, hi in Z_BINS_KPC]


def map_errors(summary_h5: Path) -> list[dict]:
    """The rho map of summary.h5 against the truth in bins of |z| on the xz plane: the median relative
    error, the median rho_sigma / rho_truth, and the fractions of points with |error| < 1 and 2 sigma."""
    maps = read_maps(summary_h5)
    if maps is None:
        raise SystemExit(f"{summary_h5}: no maps with rho_sigma (summarise it again: dpot-hpc summary)")
    xz = maps[0]["xz"]
    rel = xz["rho_rel_error"]
    pull = (xz["rho"] - xz["rho_truth"]) / xz["rho_sigma"]
    rows = []
    for z_kpc, in_bin in height_bins(xz["x"][..., 2]):
        k = in_bin & np.isfinite(rel)
        rows.append({"z_kpc": z_kpc, "points": int(k.sum()), "median_abs_rel_error": float(np.median(np.abs(rel[k]))),
                     "median_rel_sigma": float(np.median(xz["rho_sigma"][k] / xz["rho_truth"][k])),
                     "within_1_sigma": float(np.mean(np.abs(pull[k]) < 1)),
                     "within_2_sigma": float(np.mean(np.abs(pull[k]) < 2))})
    return rows


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
        grads, averaged = cache_errors(str(run_dir))
        result["families"][fam] = {
            "run_commit": run_commit(run_dir), "wall_s": wall, "stages_s": summary["timing_s"], "truth": summary["truth"],
            "final": {k: {f: summary["final"][k][f] for f in ("value", "half_width_68", "half_width_95", "dof", "how")}
                      for k in SCALARS},
            "rho_map": map_errors(run_dir / "summary.h5"), "best_fit_cache": grads.get("best_fit"),
            "single_flows": {k: v for k, v in grads.items() if "/flow" in k}, "averaging": averaged}
        write_json(out, result)
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
        c, singles = r["best_fit_cache"] or {}, list(r["single_flows"].values())
        rng = lambda key: f"{min(x[key] for x in singles):.3f}-{max(x[key] for x in singles):.3f}" if singles else "-"  # noqa: E731
        num = lambda key: f"{c[key]:.3f}" if key in c else "-"  # noqa: E731  (no best-fit cache, or one flow: no spread)
        wall = f"{r['wall_s'] / 60:.1f} min" if r["wall_s"] else "-"
        print(f"| {fam} | {wall} | {num('gx_err')} / {rng('gx_err')} ({num('gx_spread')}) | "
              f"{num('gv_err')} / {rng('gv_err')} ({num('gv_spread')}) | {num('slope_z')} | {num('slope_vz')} |")
    averaged = {fam: r["averaging"] for fam, r in result["families"].items() if r.get("averaging")}
    if averaged:
        print("\n| family | best-fit cache: the mean of | grad_x ln f error | grad_v ln f error | z-slope |")
        print("|---|---|---|---|---|")
        for fam, a in averaged.items():
            for key, m in a.items():
                if key.startswith("mean_of_"):
                    what = key[len("mean_of_"):].replace("_df_seed", " flows on the data").replace("_bootstrap",
                                                                                              " bootstrap flows")
                    print(f"| {fam} | {what.replace('_', ' ')} | {m['gx_err']:.3f} | {m['gv_err']:.3f} | {m['slope_z']:.3f} |")
        for fam, a in averaged.items():
            print(f"{fam}: the flows' training noise is {a['gx_training_share']:.0%} (grad_x) and "
                  f"{a['gv_training_share']:.0%} (grad_v) of the bootstrap flows' variance")
    print("\n| family | rho map, abs z in kpc | median abs relative error | median sigma / truth | "
          "within 1 sigma | within 2 sigma |")
    print("|---|---|---|---|---|---|")
    for fam, r in result["families"].items():
        for b in r.get("rho_map", []):
            print(f"| {fam} | {b['z_kpc'][0]:g}-{b['z_kpc'][1]:g} | {b['median_abs_rel_error']:.1%} | "
                  f"{b['median_rel_sigma']:.1%} | {b['within_1_sigma']:.0%} | {b['within_2_sigma']:.0%} |")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
