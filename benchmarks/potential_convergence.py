"""The potential stage's own error against its optimisation budget, and what a change of the potential's
settings does to finished runs.

- ``exact``: on the best-fit cache points of finished runs on the built-in mocks, the potential trained
  (potential seed 7, ``gradient_attribution.refit``) on the mock's exact gradients of ln f with each variant of the potential settings
  (``key=value,...`` of config.yaml's ``potential`` section). No flow is in these fits, so their error
  is the potential stage's own: what the network and the optimiser leave. Points where the truth has
  f = 0 (beyond a lowered or polytropic DF's velocity edge) are left out.
- ``paired``: every potential member of each finished run retrained with the variant's settings on its own
  gradient cache with its own seed, and the run's estimates (best value, 68% and 95% bands) recomputed
  by the current code (``ensemble.summary.estimates``); against the run's summary as it was.

Rows are kept in benchmarks/results/potential_convergence.json (resumable: a (mode, run, variant) row is
computed once; each row names the commit that computed it and the one that trained its run); Markdown
tables are printed. One thread per process, ``--jobs`` processes.

    cd benchmarks
    python potential_convergence.py exact --runs out/eiv/*/r0? \\
        --variants steps=1500,learning_rate=0.006 steps=3000,learning_rate=0.006 steps=1500,learning_rate=0.012
    python potential_convergence.py paired --runs out/eiv/*/r0? out/noise_bias/*/clean --variants learning_rate=0.012

(out/eiv: the runs of errors_in_variables.py; out/noise_bias/*/clean: noise_bias.py's runs without noise.)
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import h5py
import numpy as np
import torch

from runs import HERE, commit, errors_by_variant, machine, mean_and_rms, pool_rows, run_commit, write_json

from df_accuracy import _caches_with_truth  # noqa: E402
from dpot_hpc.data.cache import read_cache  # noqa: E402
from dpot_hpc.data.mockfile import mock_galaxy, truth_on_grid  # noqa: E402
from dpot_hpc.data.runfolder import RunFolder  # noqa: E402
from dpot_hpc.ensemble.maps import member_fields, plane_points, truth_fields  # noqa: E402
from dpot_hpc.ensemble.members import member_scalars  # noqa: E402
from dpot_hpc.ensemble.summary import estimates  # noqa: E402
from dpot_hpc.models.potential_training import train_potential  # noqa: E402
from gradient_attribution import POTENTIAL_SEED, refit, table  # noqa: E402
from paired import error  # noqa: E402
from recovery import Z_BINS_KPC, height_bins  # noqa: E402

RESULTS = HERE / "results" / "potential_convergence.json"
SCALARS = ("omega_p", "rho_R0", "a_x", "a_y", "a_z")


def with_variant(cfg, variant: str):
    """The run's configuration with the potential settings of ``variant`` ('key=value,...'; a list value
    in brackets, e.g. hidden=[64,64,64]) changed."""
    pot = cfg.potential
    for kv in filter(None, re.split(r",(?![^\[]*\])", variant)):
        key, value = kv.split("=", 1)
        try:
            value = json.loads(value)
        except json.JSONDecodeError:  # a word, e.g. weighting=none
            pass
        pot = pot.model_copy(update={key: value})
    return cfg.model_copy(update={"potential": type(pot).model_validate(pot.model_dump())})


def exact_rows(task: tuple[str, list[str]]) -> list[dict]:
    """One run's ``exact`` rows: the potential trained on the exact gradients under each variant."""
    torch.set_num_threads(1)
    key, variants = task
    run_dir = str(HERE / key)
    folder, cfg = RunFolder.open(run_dir)
    truth = truth_on_grid(mock_galaxy(cfg), cfg)
    (g, w), = [(ev["grad"].to(m), ev["w"]) for name, m, _, _, ev in _caches_with_truth(run_dir) if name == "best_fit"]
    ok = g.abs().sum(-1) > 0
    g, w = g[ok], w[ok]
    mock_truth, rows = folder.truth(), []
    for variant in variants:
        _, err, phi = refit(with_variant(cfg, variant), truth, w, g)
        rows.append({"mode": "exact", "run": key, "family": cfg.mock.family, "variant": variant, "error": err,
                     "rho_map": exact_map_errors(phi, mock_truth, cfg),
                     "commit": commit(), "run_commit": run_commit(Path(run_dir))})
    return rows


def exact_map_errors(phi, truth, cfg) -> list[dict]:
    """One potential's rho on the summary's xz map plane (``maps.plane_points``) against the mock's: the
    median |relative error| in the bins of |z| of ``recovery.height_bins``."""
    pts = plane_points("xz", cfg.cache.r_max_kpc, cfg.summary.grid_spacing_kpc)
    x = pts[np.linalg.norm(pts, axis=-1) < cfg.cache.r_max_kpc]
    rel = member_fields([phi], x)["rho"][0] / truth_fields(truth, x)["rho"] - 1
    return [{"z_kpc": z_kpc, "median_abs_rel_error": float(np.median(np.abs(rel[k])))} for z_kpc, k in height_bins(x[:, 2])]


def exact_map_table(rows: list[dict]) -> str:
    """The exact rows' rho map errors by |z| (rows computed before the map was recorded are left out)."""
    out = ["| run | variant | " + " | ".join(f"{lo}-{hi} kpc" for lo, hi in Z_BINS_KPC) + " |",
           "|---|---|" + "---|" * len(Z_BINS_KPC)]
    out += [f"| {r['run']} | {r['variant']} | " + " | ".join(f"{b['median_abs_rel_error']:.1%}" for b in r["rho_map"]) + " |"
            for r in rows if "rho_map" in r]
    return "\n".join(out)


def paired_rows(task: tuple[str, list[str]]) -> list[dict]:
    """One run's ``paired`` rows: every potential member retrained under each variant, estimates recomputed."""
    torch.set_num_threads(1)
    key, variants = task
    run = HERE / key
    _, cfg = RunFolder.open(run)
    summary = json.loads((run / "summary.json").read_text())
    members = []
    for path in sorted((run / "potential").glob("*.h5")):
        with h5py.File(path, "r") as f:
            members.append((str(f.attrs["member_id"]), int(f.attrs["seed"])))
    cache_of = {mid: "best_fit" if mid.startswith("potential_seed") else mid for mid, _ in members}
    caches = {name: read_cache(run / "cache" / f"{name}.h5") for name in set(cache_of.values())}  # each read once
    rows = []
    for variant in variants:
        c = with_variant(cfg, variant)
        new = {}
        for mid, seed in members:
            cache = caches[cache_of[mid]]
            old = summary["members"][mid]
            rho_baryons = old["rho_R0"] - old["rho_dm"]  # as the run had it (rho_dm = rho - baryons)
            phi, omega_p, _ = train_potential(cache, c.potential, c.frame.sun(), seed, c.catalogue.r_max_kpc)
            new[mid] = member_scalars(phi, omega_p, c, rho_baryons, c.frame.sun())
        rows.append({"mode": "paired", "run": key, "family": cfg.mock.family, "variant": variant,
                     "truth": summary["truth"], "old": summary["final"], "new": estimates(c, new)["final"],
                     "commit": commit(), "run_commit": run_commit(run)})
    return rows


def exact_table(rows: list[dict]) -> str:
    return table(errors_by_variant(rows, tuple(dict.fromkeys(r["variant"] for r in rows))), "potential settings")


def paired_summary(rows: list[dict]) -> dict:
    """Per variant, family (and 'all') and scalar: mean and rms error of the runs as they were and as
    refitted, in how many the refit is closer, and how often each one's 68% and 95% bands cover the truth."""
    out: dict = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        vr = [r for r in rows if r["variant"] == variant]
        for fam in [*sorted({r["family"] for r in vr}), "all"]:
            fr = [r for r in vr if fam in ("all", r["family"])]
            d = out.setdefault(variant, {}).setdefault(fam, {"n": len(fr)})
            for k in SCALARS:
                e = {w: [error({"final": r[w], "truth": r["truth"]}, k) for r in fr] for w in ("old", "new")}
                cover = {f"{w}_{b}": sum(abs(r[w][k]["value"] - r["truth"][k]) <= r[w][k][f"half_width_{b}"] for r in fr)
                         for w in ("old", "new") for b in ("68", "95")}
                d[k] = {**{f"{w}_{m}": v for w in ("old", "new") for m, v in mean_and_rms(e[w]).items()},
                        "new_closer": sum(abs(b) < abs(a) for a, b in zip(e["old"], e["new"])), **cover}
    return out


def paired_table(summary: dict) -> str:
    out = ["| variant | family | runs | scalar | as run: mean (rms) | refitted: mean (rms) | refit closer "
           "| 68% covers: as run / refitted | 95%: as run / refitted |", "|---|---|---|---|---|---|---|---|---|"]
    for variant, fams in summary.items():
        for fam, d in fams.items():
            for k in SCALARS:
                s, pct = d[k], k == "rho_R0"
                f = (lambda x: f"{100 * x:+.2f}%") if pct else (lambda x: f"{x:+.4f}")
                g = (lambda x: f"{100 * x:.2f}%") if pct else (lambda x: f"{x:.4f}")
                out.append(f"| {variant} | {fam} | {d['n']} | {k} | {f(s['old_mean'])} ({g(s['old_rms'])}) "
                           f"| {f(s['new_mean'])} ({g(s['new_rms'])}) | {s['new_closer']}/{d['n']} "
                           f"| {s['old_68']}/{s['new_68']} | {s['old_95']}/{s['new_95']} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=("exact", "paired"))
    ap.add_argument("--runs", nargs="+", required=True, help="finished run folders on the built-in mocks, under benchmarks/")
    ap.add_argument("--variants", nargs="+", required=True, help="potential settings, key=value,... each")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"rows": []}
    rows = old["rows"]
    done = {(r["mode"], r["run"], r["variant"]) for r in rows}
    tasks = []
    for run in args.runs:
        path = Path(run).resolve()
        if not (path / "summary.json").exists() or not path.is_relative_to(HERE):
            raise SystemExit(f"{run}: not a finished run folder under {HERE} (no summary.json)")
        key = str(path.relative_to(HERE))  # rows name runs relative to benchmarks/
        todo = [v for v in args.variants if (args.mode, key, v) not in done]
        if todo:
            tasks.append((key, todo))
    if tasks:
        pool_rows(exact_rows if args.mode == "exact" else paired_rows, tasks, args.jobs, rows, RESULTS)
    paired = [r for r in rows if r["mode"] == "paired"]
    write_json(RESULTS, {**({"notes": old["notes"]} if "notes" in old else {}), "potential_seed_exact": POTENTIAL_SEED,
                         "paired_summary": paired_summary(paired) if paired else {}, "rows": rows, "commits": sorted({r["commit"] for r in rows}),
                         "machine": machine() if tasks else old.get("machine", machine())})
    exact = [r for r in rows if r["mode"] == "exact"]
    print(exact_table(exact) + "\n\nrho map (xz plane), median |relative error| by |z|:\n\n" + exact_map_table(exact)
          if args.mode == "exact" else paired_table(paired_summary(paired)))


if __name__ == "__main__":
    main()
