"""Which of the flows' gradients carry each scalar's error.

On finished realizations of the coverage benchmark (benchmarks/out/coverage_<label>/<family>/rNN), the
potential is retrained at the run's settings (potential seed 7) on the points of the run's best-fit
cache with: the flows' mean gradients of ln f (as the run had them), the same with some components
replaced by the mock's exact gradients, and the exact gradients throughout. One seed and the same points
for every variant, so the differences between variants are those of the gradients plus what the
potential's training makes of them: one refit's rho(R=R0) scatters by about 1.7% over potential seeds
(docs/recovery.md, 'Mixtures of flows'), so a single realization resolves differences of several
points, the mean over realizations smaller ones. Points where the truth has f = 0 (beyond a lowered or
polytropic DF's velocity edge; ~0.1%) are left out of every variant. Per family and variant: the mean
and root mean square over the realizations of every scalar's error.

    python benchmarks/gradient_attribution.py --families barred_isothermal thin_thick_lowered --realizations 6

``--variants vertical`` replaces one position derivative at a time, d ln f/dz also only in one region
(inside or beyond the velocity edge of a lowered-isothermal component, ``df_accuracy.edge_depth``, or
within 0.2 kpc of the plane); ``--runs DIR... --cache NAME`` takes any finished mock runs and the named
cache (e.g. a df_seed member's: one flow on the stars themselves) instead of the coverage runs' best fit.

Runs every (family, realization) in its own process, ``--jobs`` at a time, one thread each; finished
rows are kept in benchmarks/results/gradient_attribution.json, or gradient_attribution_<tag>.json with
``--tag`` (resumable; each row names the commit that computed it and the one that trained its run), and
a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from runs import HERE, commit, errors_by_variant, machine, pool_rows, run_commit, write_json

from df_accuracy import _caches_with_truth, edge_depth  # noqa: E402
from dpot_hpc.data.mockfile import mock_galaxy, truth_on_grid  # noqa: E402
from dpot_hpc.data.runfolder import RunFolder  # noqa: E402
from dpot_hpc.ensemble.members import member_scalars  # noqa: E402
from dpot_hpc.models.potential import PotentialNet  # noqa: E402
from dpot_hpc.models.potential_training import train_potential  # noqa: E402
from dpot_hpc.physics.frames import helio_positions_to_galcen  # noqa: E402

RESULTS = HERE / "results" / "gradient_attribution.json"
#: variant -> (the components (of x, y, z, vx, vy, vz) that take the exact gradient of ln f, the region
#: where they take it: None everywhere, else a key of ``region``)
VARIANTS: dict[str, tuple[tuple[int, ...], str | None]] = {
    "flows": ((), None), "exact grad_x": ((0, 1, 2), None), "exact grad_v": ((3, 4, 5), None),
    "exact d/dv_x": ((3,), None), "exact d/dv_y": ((4,), None), "exact d/dv_z": ((5,), None),
    "exact": ((0, 1, 2, 3, 4, 5), None)}
VERTICAL_VARIANTS: dict[str, tuple[tuple[int, ...], str | None]] = {
    "flows": ((), None), "exact d/dx": ((0,), None), "exact d/dy": ((1,), None), "exact d/dz": ((2,), None),
    "exact d/dz inside the edge": ((2,), "inside_edge"), "exact d/dz beyond the edge": ((2,), "beyond_edge"),
    "exact d/dz within 0.2 kpc of the plane": ((2,), "near_plane"), "exact grad_x": ((0, 1, 2), None)}
NEAR_PLANE_KPC = 0.2
SCALARS = ("omega_p", "rho_R0", "a_x", "a_y", "a_z")
POTENTIAL_SEED = 7


def refit(cfg, truth: dict, w: torch.Tensor, g: torch.Tensor) -> tuple[dict[str, float], dict[str, float], PotentialNet]:
    """(scalars, errors against the truth, rho also relative, the network) of a potential trained at the
    run's settings (seed POTENTIAL_SEED) on points w (N, 6) with gradients of ln f g (N, 6)."""
    phi, omega_p, _ = train_potential({"x": w[:, :3], "v": w[:, 3:], "grad_x": g[:, :3], "grad_v": g[:, 3:]},
                                      cfg.potential, cfg.frame.sun(), seed=POTENTIAL_SEED,
                                      length_scale_kpc=cfg.catalogue.r_max_kpc)
    sc = member_scalars(phi, omega_p, cfg, truth["rho_baryons"], cfg.frame.sun())
    err = {k: sc[k] - truth["scalars"][k] for k in SCALARS}
    err["rho_R0_rel"] = err["rho_R0"] / truth["scalars"]["rho_R0"]
    return sc, err, phi


def regions(names: set[str], family: str, ev: dict, cfg) -> dict[str, torch.Tensor]:
    """Masks (N,) of the cache points ev["w"] in each named region: inside_edge / beyond_edge (psi > 0 / <= 0
    of ``df_accuracy.edge_depth``, computed once for both), near_plane (Galactocentric |Z| < NEAR_PLANE_KPC)."""
    out = {}
    if "near_plane" in names:
        z_kpc = helio_positions_to_galcen(ev["w"][:, :3].double(), cfg.frame.sun())[:, 2]
        out["near_plane"] = z_kpc.abs() < NEAR_PLANE_KPC
    if names & {"inside_edge", "beyond_edge"}:
        try:
            psi = edge_depth(family, ev)
        except SystemExit as e:  # no velocity edge: say so in the parent process, not by ending a pool worker
            raise ValueError(str(e)) from None
        out.update(inside_edge=psi > 0, beyond_edge=psi <= 0)
    return out


def one_realization(task: tuple[str, str, str, dict]) -> list[dict]:
    """Every variant's scalars and errors on one finished run folder: task (family, run folder, cache name,
    variants)."""
    torch.set_num_threads(1)
    family, run_dir, cache, variants = task
    _, cfg = RunFolder.open(run_dir)
    truth = truth_on_grid(mock_galaxy(cfg), cfg)
    found = [(m, ev) for name, m, _, _, ev in _caches_with_truth(run_dir) if name == cache]
    if not found:  # (a ValueError reaches the parent process; a SystemExit would end the pool's worker)
        raise ValueError(f"{run_dir}: no cache {cache!r}")
    (mean, ev), = found
    exact = ev["grad"].to(mean)
    ok = exact.abs().sum(-1) > 0
    masks = regions({where for _, where in variants.values() if where}, family, ev, cfg)
    rows = []
    for variant, (comps, where) in variants.items():
        g = mean.clone()
        at = ok if where is None else masks[where] & ok
        for c in comps:
            g[at, c] = exact[at, c]
        t0 = time.perf_counter()
        sc, err, _ = refit(cfg, truth, ev["w"][ok], g[ok])
        rows.append({"family": family, "run": run_dir, "cache": cache, "variant": variant, "points": int(ok.sum()),
                     "replaced": int(at.sum()) if comps else 0, "scalars": {k: sc[k] for k in SCALARS},
                     "error": err, "wall_s": time.perf_counter() - t0,
                     "run_commit": run_commit(Path(run_dir)), "commit": commit()})
    return rows


def summarize(rows: list[dict]) -> dict:
    """Per family and variant: realizations, and per error the mean and the root mean square."""
    return errors_by_variant(rows, tuple(dict.fromkeys(r["variant"] for r in rows)))


def table(summary: dict, what: str = "gradients") -> str:
    """Markdown table of ``summarize``'s output; ``what`` heads the variant column."""
    lines = [f"| family | {what} | n | Omega_p error, mean (rms) km/s/kpc | rho(R=R0) error, mean (rms) | "
             "a_x rms | a_y rms | a_z rms (km/s/Myr) |", "|---|---|---|---|---|---|---|---|"]
    for fam, variants in summary.items():
        for v, s in variants.items():
            lines.append(f"| {fam} | {v} | {s['n']} | {s['omega_p']['mean']:+.3f} ({s['omega_p']['rms']:.3f}) | "
                         f"{s['rho_R0_rel']['mean']:+.1%} ({s['rho_R0_rel']['rms']:.1%}) | {s['a_x']['rms']:.4f} | "
                         f"{s['a_y']['rms']:.4f} | {s['a_z']['rms']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", nargs="+", default=["barred_isothermal", "thin_thick_lowered"])
    ap.add_argument("--realizations", type=int, default=6)
    ap.add_argument("--label", default="default", help="which coverage benchmark's runs (coverage_<label>)")
    ap.add_argument("--runs", nargs="+", type=Path, help="finished mock run folders instead of the coverage runs")
    ap.add_argument("--cache", default="best_fit", help="the cache whose points and gradients are refitted")
    ap.add_argument("--variants", choices=("components", "vertical"), default="components")
    ap.add_argument("--tag", help="results in gradient_attribution_<tag>.json")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    results = RESULTS.with_name(f"gradient_attribution_{args.tag}.json") if args.tag else RESULTS
    variants = VERTICAL_VARIANTS if args.variants == "vertical" else VARIANTS
    old = json.loads(results.read_text()) if results.exists() else {"rows": []}
    rows = old["rows"]
    done = {r["run"] for r in rows}
    runs = args.runs or [HERE / "out" / f"coverage_{args.label}" / fam / f"r{k:02d}"
                         for fam in args.families for k in range(args.realizations)]
    tasks = []
    for run_dir in runs:
        if not (run_dir / "summary.json").exists():
            raise SystemExit(f"{run_dir}: no finished run (for the coverage runs: python benchmarks/coverage.py "
                             f"--label {args.label} --families ... --realizations {args.realizations} first)")
        if str(run_dir) not in done:
            tasks.append((RunFolder.open(run_dir)[1].mock.family, str(run_dir), args.cache, variants))
    pool_rows(one_realization, tasks, args.jobs, rows, results)
    summary = summarize(rows)
    write_json(results, {"summary": summary, "rows": rows, "potential_seed": POTENTIAL_SEED,
                         "commits": sorted({r["commit"] for r in rows}), "machine": old.get("machine", machine())
                         if not tasks else machine()})
    print(table(summary))


if __name__ == "__main__":
    main()
