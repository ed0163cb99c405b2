"""Benchmark: ensemble efficiency of the MPI driver on this machine.

The same 8-member potential stage on 1 rank and on 2 ranks (1 CPU thread each):
efficiency = T1 / (2 T2), with T the stage's wall time as the driver reports it in summary.json.
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

HERE = Path(__file__).resolve().parent


def run(ranks: int, run_dir: Path, settings: list[str]) -> dict:
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    sets = [a for s in [*settings, f"run.dir={run_dir}"] for a in ("--set", s)]
    cmd = [mpiexec, "-n", str(ranks), sys.executable, "-m", "dpot_hpc.cli", "run", *sets]
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-4000:])
    timing = json.loads((run_dir / "summary.json").read_text())["timing_s"]
    timing["total_wall_s"] = time.perf_counter() - t0
    return timing


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    settings = ["mock.n_stars=20000", "ensemble.df_seed=1", f"ensemble.potential_seed={args.members}",
                "df.max_epochs=2", "cache.n_points=20000", f"potential.steps={args.steps}",
                "potential.batch_size=1024", "potential.penalty_points=256", "run.threads=1"]
    work = HERE / "out"
    t1 = run(1, work / "eff_1rank", settings)
    t2 = run(2, work / "eff_2ranks", settings)
    eff = t1["potential"] / (2 * t2["potential"])
    result = {
        "benchmark": "ensemble_efficiency", "stage": "potential", "members": args.members,
        "steps_per_member": args.steps, "threads_per_rank": 1,
        "T1_s": round(t1["potential"], 2), "T2_s": round(t2["potential"], 2), "efficiency": round(eff, 3),
        "timing_1rank": t1, "timing_2ranks": t2, "cpu_count": os.cpu_count(),
        "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "ensemble_efficiency.json").write_text(json.dumps(result, indent=2) + "\n")
    print("| stage | members | T(1 rank) | T(2 ranks) | efficiency T1/(2 T2) |")
    print("|---|---|---|---|---|")
    print(f"| potential | {args.members} | {t1['potential']:.1f} s | {t2['potential']:.1f} s | {eff:.3f} |")


if __name__ == "__main__":
    main()
