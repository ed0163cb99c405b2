"""Benchmark: the observational-noise bias and its correction (issue 15) on the built-in mock.

For each family and noise level s (DR3-like errors times s), the same stars (same mock.seed) are run
three ways: without noise (the default run, Cartesian input), with noise through the Gaia path and the
realistic profile (configs/noisy_mock.yaml), whose summary keeps the uncorrected best estimate
(``best``) and reports the SIMEX-corrected value with its band (``final``). Every scalar's error
against the truth is tabulated for each.

    python benchmarks/noise_bias.py [--families barred_isothermal] [--scales 1 2]

Writes benchmarks/results/noise_bias.json and prints a Markdown table (~15 min per noisy run and
~7 min per clean run on 2 cores; finished runs are reused).
"""

from __future__ import annotations

import argparse

from runs import HERE, ROOT, commit, finished_run, machine, run_commit, write_json

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0", "rho_dm")
PROFILE = ROOT / "configs" / "noisy_mock.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["barred_isothermal"])
    ap.add_argument("--scales", nargs="+", type=float, default=[1.0, 2.0])
    ap.add_argument("--seed", type=int, default=1, help="mock.seed: the same stars in every run")
    args = ap.parse_args()
    work = HERE / "out" / "noise_bias"
    result = {"commit": commit(), "machine": machine(), "profile": PROFILE.read_text(), "families": {}}
    rows = []
    for fam in args.families:
        base = [f"mock.family={fam}", f"mock.seed={args.seed}"]
        clean, wall = finished_run(work / fam / "clean", base)
        truth = clean["truth"]
        entry = {"truth": truth, "clean": {"value": {k: clean["final"][k]["value"] for k in SCALARS}, "wall_s": wall,
                                           "run_commit": run_commit(work / fam / "clean")},
                 "noisy": {}}
        for s in args.scales:
            noisy, wall = finished_run(work / fam / f"noise_x{s:g}", [*base, f"mock.noise_scale={s}"], PROFILE)
            entry["noisy"][f"{s:g}"] = {
                "uncorrected": {k: noisy["best"][k]["median"] for k in SCALARS},
                "corrected": {k: noisy["final"][k]["value"] for k in SCALARS},
                "half_width_68": {k: noisy["final"][k]["half_width_68"] for k in SCALARS},
                "half_width_95": {k: noisy["final"][k]["half_width_95"] for k in SCALARS},
                "how": noisy["final"]["a_x"]["how"], "simex": noisy["simex"], "wall_s": wall,
                "run_commit": run_commit(work / fam / f"noise_x{s:g}")}
        result["families"][fam] = entry
        for k in SCALARS:
            line = f"| {fam} | {k} | {truth[k]:.4f} | {entry['clean']['value'][k] - truth[k]:+.4f} |"
            for s in args.scales:
                n = entry["noisy"][f"{s:g}"]
                line += (f" {n['uncorrected'][k] - truth[k]:+.4f} | {n['corrected'][k] - truth[k]:+.4f} "
                         f"+- {n['half_width_68'][k]:.4f} ({n['half_width_95'][k]:.4f}) |")
            rows.append(line)
    out = HERE / "results" / "noise_bias.json"
    write_json(out, result)
    head = "| family | scalar | truth | error without noise |"
    sep = "|---|---|---|---|"
    for s in args.scales:
        head += f" noise x{s:g}: uncorrected | corrected +- 68% (95%) |"
        sep += "---|---|"
    print("\n".join([head, sep, *rows]))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
