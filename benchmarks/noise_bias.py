"""Benchmark: the observational-noise bias and its correction (issue 15) on the built-in mock.

For each family and noise level s (DR3-like errors times s), the same stars (same mock.seed) are run
three ways: without noise (the default run, Cartesian input); with noise through the Gaia path and the
realistic profile (configs/noisy_mock.yaml: the default ensemble with its flows fitted through the
quoted errors, ``corrected``); and the same without the correction (``df.deconvolve=false``: the
flows fitted to the noisy stars as they are, ``uncorrected``). Every scalar's error against the
truth is tabulated for each, and the corrected run's bands.

    python benchmarks/noise_bias.py [--families barred_isothermal] [--scales 1 2] [--seed 1]
    python benchmarks/noise_bias.py --scales 4 --set cuts.parallax_over_error_min=null --tag nocut

``--set`` applies to the noisy runs only, and ``--tag`` names them apart (noise_x4_nocut). A run
whose settings extrapolate to zero noise instead (SIMEX, the other correction: 2 flows on the data, 2
flows and potentials at each added-noise level) keeps its uncorrected best estimate in its own
summary, so it needs no second run:

    python benchmarks/noise_bias.py --set df.deconvolve=false --set ensemble.df_seed=2 --set ensemble.obs_noise=2 --set "ensemble.obs_noise_levels=[1.0, 2.0]" --tag simex

Each noisy entry records how many stars its quality cuts kept (``prepared_stars``: the
parallax_over_error cut drops more of the distant stars as the errors grow, which no noise correction
undoes) and the share they removed near the sphere's edge and well inside (``edge_losses``,
data.selection). Every run also records its best-fit gradient cache's errors against the mock's exact
DF (``gradients``, df_accuracy.cache_errors), where the noise's blur shows before it reaches the
scalars, and the same flows' mean gradients at the family's evaluation stars, the same points for every
run (``at_true_stars``, df_accuracy.best_fit_at_true_stars: with the slope of fitted against true
gradient per phase-space component, below 1 where the flows are smoother than the DF). Mock seeds other
than 1 (other realizations of the same galaxy) are kept as FAMILY_seedN.

Writes benchmarks/results/noise_bias.json and prints a Markdown table (on 2 cores ~7 min per clean
run, ~8 min per uncorrected and ~20 min per corrected run; finished runs are reused).
"""

from __future__ import annotations

import argparse
import json

import yaml

from df_accuracy import best_fit_at_true_stars, cache_errors
from runs import HERE, ROOT, commit, finished_run, machine, run_commit, write_json

from dpot_hpc.data.prepare import read_provenance

SCALARS = ("a_x", "a_y", "a_z", "omega_p", "rho_R0", "rho_dm")
PROFILE = ROOT / "configs" / "noisy_mock.yaml"


def values(summary: dict, part: str = "final", field: str = "value") -> dict[str, float]:
    """One field of every scalar in a part of a run's summary: the reported ``value`` (or a half-width)
    in ``final``, the raw ``median`` in ``best``."""
    return {k: summary[part][k][field] for k in SCALARS}


def run_record(run_dir) -> dict:
    """What every entry records of a finished run: the commit it ran at, its best-fit cache's gradient
    errors at the cache's own points and its best-fit flows' at the family's evaluation stars."""
    return {"run_commit": run_commit(run_dir), "gradients": cache_errors(str(run_dir))[0]["best_fit"],
            "at_true_stars": best_fit_at_true_stars(str(run_dir))}


def noisy_entry(run_dir, settings: list[str], base: list[str]) -> dict:
    """One noise level's entry: the profile's run in run_dir (with ``settings``), and its uncorrected
    counterpart (the same settings with df.deconvolve=false in run_dir + '_plain') when the run's flows
    were fitted through the errors; a SIMEX or uncorrected run is its own uncorrected counterpart."""
    noisy, wall = finished_run(run_dir, [*base, *settings], PROFILE)
    deconvolved = yaml.safe_load((run_dir / "config.yaml").read_text())["df"]["deconvolve"]
    how = "deconvolved" if deconvolved else noisy["final"]["a_x"]["how"]  # (summaries before 7dbd053 said raw)
    prov = read_provenance(run_dir / "prepared.h5")
    entry = {"settings": settings, "prepared_stars": prov["n_stars"], "edge_losses": prov.get("edge_losses"),
             "corrected": values(noisy),
             "half_width_68": values(noisy, "final", "half_width_68"),
             "half_width_95": values(noisy, "final", "half_width_95"),
             "how": how, "simex": noisy["simex"], "wall_s": wall, **run_record(run_dir)}
    if how == "deconvolved":
        plain_dir = run_dir.with_name(run_dir.name + "_plain")
        plain, plain_wall = finished_run(plain_dir, [*base, *settings, "df.deconvolve=false"], PROFILE)
        entry["uncorrected"] = values(plain)
        entry["uncorrected_run"] = {"half_width_68": values(plain, "final", "half_width_68"),
                                    "wall_s": plain_wall, **run_record(plain_dir)}
    else:
        entry["uncorrected"] = values(noisy, "best", "median")
    return entry


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
              "families": old.get("families", {})}  # other families and realizations stay
    rows = []
    for fam in args.families:
        base = [f"mock.family={fam}", f"mock.seed={args.seed}"]
        key = fam if args.seed == 1 else f"{fam}_seed{args.seed}"
        clean, wall = finished_run(work / key / "clean", base)
        truth = clean["truth"]
        entry = {"truth": truth, "mock_seed": args.seed,
                 "clean": {"value": values(clean), "half_width_68": values(clean, "final", "half_width_68"),
                           "wall_s": wall, **run_record(work / key / "clean")},
                 "noisy": old.get("families", {}).get(key, {}).get("noisy", {})}  # other scales and tags stay
        names = [f"{s:g}" + (f"_{args.tag}" if args.tag else "") for s in args.scales]
        for s, name in zip(args.scales, names):
            entry["noisy"][name] = noisy_entry(work / key / f"noise_x{name}", [f"mock.noise_scale={s}", *args.settings],
                                               base)
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
