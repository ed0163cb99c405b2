"""Benchmark: what other potential settings do to finished runs, end to end, on the same flows.

For each finished run folder on a built-in mock (a default run, a recovery.py or coverage.py run), its
df/ and cache/ are copied into a sibling folder ``<run>-<name>`` and `dpot-hpc run` fits the potential
there with the run's settings plus ``--set`` (flows and caches are not checked against the potential's
settings: docs/outputs.md, 'Refitting the potential on trained flows'). Both runs' reported scalars
against the mock's truth, and their density maps' errors by height (``recovery.map_errors``), go to
benchmarks/results/refit_<label>.json (resumable: a finished refit folder is reused) with a Markdown table.
The potential members' training noise is small next to a change of settings (the potential seeds' spread),
so one realization already separates them; whether the change helps needs several.

    python benchmarks/refit.py --label lsq_start --name zero --set potential.least_squares_start=false \\
        benchmarks/out/recovery_accurate/thin_thick_lowered benchmarks/out/recovery_accurate/barred_isothermal
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from recovery import SCALARS, map_errors
from runs import HERE, ROOT, commit, machine, run_commit, write_json

from dpot_hpc.data.h5io import atomic_write_text  # noqa: E402


def refit(base: Path, name: str, settings: list[str]) -> Path:
    """The refit folder of ``base`` with ``settings``, run to its summary (reused when finished)."""
    out = base.parent / f"{base.name}-{name}"
    if not (out / "summary.json").exists():
        out.mkdir(exist_ok=True)
        for part in ("df", "cache"):
            if not (out / part).exists():
                shutil.copytree(base / part, out / part)
        atomic_write_text(out / "commit.txt", commit() + "\n")
        shutil.copy(base / "config.yaml", out / "base_config.yaml")  # the run's own settings, then the change
        sets = [a for s in [*settings, f"run.dir={out}"] for a in ("--set", s)]
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "-q", "-c", str(out / "base_config.yaml"), *sets],
                           cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{out} failed:\n{p.stderr[-3000:]}")
        atomic_write_text(out / "wall_s.txt", f"{time.perf_counter() - t0:.1f}\n")
    return out


def scored(run: Path) -> dict:
    """A finished run's reported scalars, their errors against the mock's truth and its map's errors."""
    s = json.loads((run / "summary.json").read_text())
    return {"run_commit": run_commit(run), "potential_s": s["timing_s"]["potential"],
            "final": {k: {f: s["final"][k][f] for f in ("value", "half_width_68", "half_width_95")} for k in SCALARS},
            "error": {k: s["final"][k]["value"] - s["truth"][k] for k in SCALARS},
            "rho_map": map_errors(run / "summary.h5")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True)
    ap.add_argument("--name", required=True, help="suffix of the refit folders")
    ap.add_argument("--set", dest="settings", action="append", default=[], required=True)
    ap.add_argument("runs", nargs="+", type=Path)
    args = ap.parse_args()
    out = HERE / "results" / f"refit_{args.label}.json"
    result = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    result.update({"label": args.label, "settings": args.settings, "commit": commit(), "machine": machine()})
    for base in args.runs:
        base = base.resolve()
        truth = json.loads((base / "summary.json").read_text())["truth"]
        cfg = yaml.safe_load((base / "config.yaml").read_text())
        result["runs"][str(base.relative_to(ROOT) if base.is_relative_to(ROOT) else base)] = {
            "family": cfg["mock"]["family"], "mock_seed": cfg["mock"]["seed"], "n_stars": cfg["mock"]["n_stars"],
            "truth": {k: truth[k] for k in SCALARS}, "base": scored(base), "refit": scored(refit(base, args.name, args.settings))}
        write_json(out, result)
    print(f"{' '.join(args.settings)} against the runs as they were (error; rho relative; map: median |error| by |z|)\n")
    print("| run | family (seed) | variant | omega_p | rho_R0 | a_x | a_y | a_z | map 0-0.1 | 0.1-0.3 | 0.3-0.6 | 0.6-0.9 kpc |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in result["runs"].items():
        for variant in ("base", "refit"):
            e, t, m = r[variant]["error"], r["truth"], r[variant]["rho_map"]
            print(f"| {Path(key).name} | {r['family']} ({r['mock_seed']}) | {variant} | {e['omega_p']:+.3f} | "
                  f"{e['rho_R0'] / t['rho_R0']:+.1%} | {e['a_x']:+.4f} | {e['a_y']:+.4f} | {e['a_z']:+.4f} | "
                  + " | ".join(f"{b['median_abs_rel_error']:.1%}" for b in m) + " |")


if __name__ == "__main__":
    main()
