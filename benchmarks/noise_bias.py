"""Benchmark: the observational-noise bias and its correction (issue 15) on the built-in mock.

For each family and noise level s (DR3-like errors times s), the same stars (same mock.seed) are run
three ways: without noise (the default run, Cartesian input), with noise through the Gaia path and the
realistic profile (configs/noisy_mock.yaml), whose summary keeps the uncorrected best estimate
(``best``) and reports the SIMEX-corrected value with its band (``final``). Every scalar's error
against the truth is tabulated for each.

    python benchmarks/noise_bias.py [--families barred_isothermal] [--scales 1 2]
    python benchmarks/noise_bias.py --scales 4 --set cuts.parallax_over_error_min=null --tag nocut

``--set`` applies to the noisy runs only, and ``--tag`` names them apart (noise_x4_nocut); each noisy
entry records how many stars its quality cuts kept (``prepared_stars``: the parallax_over_error cut
drops more of the distant stars as the errors grow, which no noise correction undoes) and the share
they removed near the sphere's edge and well inside (``edge_losses``, data.selection). Every run also
records its best-fit gradient cache's errors against the mock's exact DF (``gradients``,
df_accuracy.cache_errors), where the noise's blur shows before it reaches the scalars. The default
ensemble with its flows fitted through the errors, and without (the uncorrected baseline):

    python benchmarks/noise_bias.py --scales 2 --set ensemble.df_seed=0 --set ensemble.obs_noise=0 --set df.deconvolve=true --tag deconv
    python benchmarks/noise_bias.py --scales 2 --set ensemble.df_seed=0 --set ensemble.obs_noise=0 --tag plain

Writes benchmarks/results/noise_bias.json and prints a Markdown table (~15 min per noisy run and
~7 min per clean run on 2 cores; finished runs are reused).
"""

from __future__ import annotations

import argparse
import json

from df_accuracy import cache_errors
from runs import HERE, ROOT, commit, finished_run, machine, run_commit, write_json

from dpot_hpc.data.prepare import read_provenance

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0", "rho_dm")
PROFILE = ROOT / "configs" / "noisy_mock.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["barred_isothermal"])
    ap.add_argument("--scales", nargs="+", type=float, default=[1.0, 2.0])
    ap.add_argument("--seed", type=int, default=1,
                    help="mock.seed: the same stars in every run; seeds other than 1 are kept as FAMILY_seedN")
    ap.add_argument("--set", dest="settings", action="append", default=[], help="KEY=VALUE for the noisy runs")
    ap.add_argument("--tag", default="", help="suffix of the noisy runs' names (with --set)")
    args = ap.parse_args()
    work = HERE / "out" / "noise_bias"
    out = HERE / "results" / "noise_bias.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    result = {"commit": commit(), "machine": machine(), "profile": PROFILE.read_text(),
              "families": old.get("families", {})}  # other families stay
    rows = []
    for fam in args.families:
        base = [f"mock.family={fam}", f"mock.seed={args.seed}"]
        key = fam if args.seed == 1 else f"{fam}_seed{args.seed}"  # other realizations stay apart
        clean, wall = finished_run(work / key / "clean", base)
        truth = clean["truth"]
        entry = {"truth": truth, "clean": {"value": {k: clean["final"][k]["value"] for k in SCALARS}, "wall_s": wall,
                                           "run_commit": run_commit(work / key / "clean"),
                                           "gradients": cache_errors(str(work / key / "clean"))[0]["best_fit"]},
                 "mock_seed": args.seed,
                 "noisy": old.get("families", {}).get(key, {}).get("noisy", {})}  # other scales and tags stay
        names = [f"{s:g}" + (f"_{args.tag}" if args.tag else "") for s in args.scales]
        for s, name in zip(args.scales, names):
            run_dir = work / key / f"noise_x{name}"
            noisy, wall = finished_run(run_dir, [*base, f"mock.noise_scale={s}", *args.settings], PROFILE)
            prov = read_provenance(run_dir / "prepared.h5")
            entry["noisy"][name] = {"settings": args.settings, "prepared_stars": prov["n_stars"],
                "edge_losses": prov.get("edge_losses"),
                "uncorrected": {k: noisy["best"][k]["median"] for k in SCALARS},
                "corrected": {k: noisy["final"][k]["value"] for k in SCALARS},
                "half_width_68": {k: noisy["final"][k]["half_width_68"] for k in SCALARS},
                "half_width_95": {k: noisy["final"][k]["half_width_95"] for k in SCALARS},
                "how": noisy["final"]["a_x"]["how"], "simex": noisy["simex"], "wall_s": wall,
                "gradients": cache_errors(str(run_dir))[0]["best_fit"],
                "run_commit": run_commit(run_dir)}
        result["families"][key] = entry
        for k in SCALARS:
            line = f"| {key} | {k} | {truth[k]:.4f} | {entry['clean']['value'][k] - truth[k]:+.4f} |"
            for name in names:
                n = entry["noisy"][name]
                line += (f" {n['uncorrected'][k] - truth[k]:+.4f} | {n['corrected'][k] - truth[k]:+.4f} "
                         f"+- {n['half_width_68'][k]:.4f} ({n['half_width_95'][k]:.4f}) |")
            rows.append(line)
    write_json(out, result)
    head = "| family | scalar | truth | error without noise |"
    sep = "|---|---|---|---|"
    for name in names:
        head += f" noise x{name}: uncorrected | corrected +- 68% (95%) |"
        sep += "---|---|"
    print("\n".join([head, sep, *rows]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
