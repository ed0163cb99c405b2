"""Benchmark: ensemble efficiency of the MPI driver on this machine, split from the machine's own.

The same 8-member potential stage on 1 rank (T1) and on 2 ranks (T2), 1 CPU thread each, and, as
the machine's ceiling, two independent single-process runs of 4 members each started at the same
moment (Tc, the later of the two): two processes on 2 vCPUs share caches and memory bandwidth, so
T1 / (2 T2) mixes the driver's overhead with the machine's. Reported: the plain efficiency
T1 / (2 T2), the machine's ceiling T1 / (2 Tc) and the driver's efficiency against it, Tc / T2.
T is the stage's wall time as the driver reports it in summary.json.
Writes benchmarks/results/ensemble_efficiency.json and prints a Markdown table.

    python benchmarks/ensemble_efficiency.py [--members 8] [--steps 400]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from runs import write_json

HERE = Path(__file__).resolve().parent


def command(ranks: int, run_dir: Path, settings: list[str]) -> list[str]:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    sets = [a for s in [*settings, f"run.dir={run_dir}"] for a in ("--set", s)]
    shutil.rmtree(run_dir, ignore_errors=True)
    return [mpiexec, "-n", str(ranks), sys.executable, "-m", "dpot_hpc", "run", "-q", *sets]


def timing_of(run_dir: Path, wall_s: float) -> dict:
    timing = json.loads((run_dir / "summary.json").read_text())["timing_s"]
    timing["total_wall_s"] = wall_s
    return timing


def run(ranks: int, run_dir: Path, settings: list[str]) -> dict:
    t0 = time.perf_counter()
    p = subprocess.run(command(ranks, run_dir, settings), env={**os.environ, "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-4000:])
    return timing_of(run_dir, time.perf_counter() - t0)


def run_concurrently(run_dirs: list[Path], settings: list[list[str]]) -> list[dict]:
    """Independent single-process runs started at the same moment; their timings."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(command(1, d, s), env={**os.environ, "OMP_NUM_THREADS": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for d, s in zip(run_dirs, settings)]
    out = []
    for d, p in zip(run_dirs, procs):
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(err[-4000:])
        out.append(timing_of(d, time.perf_counter() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    settings = ["mock.n_stars=20000", "ensemble.df_seed=1", f"ensemble.potential_seed={args.members}",
                "df.max_epochs=2", "cache.n_points=20000", f"potential.steps={args.steps}",
                "potential.batch_size=1024", "potential.penalty_points=256", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false", "ensemble.bootstrap=0"]
    work = HERE / "out"
    t1 = run(1, work / "eff_1rank", settings)
    t2 = run(2, work / "eff_2ranks", settings)
    half = [s.replace(f"potential_seed={args.members}", f"potential_seed={args.members // 2}") for s in settings]
    tc_runs = run_concurrently([work / "eff_ceiling_a", work / "eff_ceiling_b"], [half, [*half, "run.seed=7"]])
    tc = max(t["potential"] for t in tc_runs)
    eff = t1["potential"] / (2 * t2["potential"])
    result = {
        "benchmark": "ensemble_efficiency", "stage": "potential", "members": args.members,
        "steps_per_member": args.steps, "threads_per_rank": 1,
        "T1_s": round(t1["potential"], 2), "T2_s": round(t2["potential"], 2), "Tc_s": round(tc, 2),
        "efficiency": round(eff, 3), "machine_ceiling": round(t1["potential"] / (2 * tc), 3),
        "driver_efficiency_vs_ceiling": round(tc / t2["potential"], 3),
        "timing_1rank": t1, "timing_2ranks": t2, "timing_ceiling": tc_runs, "cpu_count": os.cpu_count(),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                 text=True).stdout.strip(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    (HERE / "results").mkdir(exist_ok=True)
    write_json(HERE / "results" / "ensemble_efficiency.json", result)
    print("| stage | members | T1 (1 rank) | T2 (2 ranks) | Tc (2 processes, ceiling) | T1/(2 T2) | T1/(2 Tc) | Tc/T2 |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| potential | {args.members} | {t1['potential']:.1f} s | {t2['potential']:.1f} s | {tc:.1f} s | "
          f"{eff:.3f} | {result['machine_ceiling']:.3f} | {result['driver_efficiency_vs_ceiling']:.3f} |")


if __name__ == "__main__":
    main()
