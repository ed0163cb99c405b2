"""The default run's wall time against an earlier commit, back to back on this machine (issue 11).

Checks out BASE (default 9773299, main when the speed issue was filed) into a temporary git worktree
and runs `dpot-hpc run` there with its defaults, then runs the current code with the same settings
(the defaults of BASE, given with --set), each alone on the machine, and records the wall times,
the per-stage split from each summary.json and the recovered scalars.

    python benchmarks/default_run_speed.py [--base 9773299]

Writes benchmarks/results/default_run_speed.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runs import checked_out, machine, write_json

from dpot_hpc.bench import source_commit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: The defaults of 9773299 that the current code changed (the rest are the same; config.yaml at 9773299):
#: the affine flow, three flows on the data with a per-flow potential off, no bootstrap members, 3000
#: potential steps at 2e-3 with the reference loss.
BASE_SETTINGS = ["df.learning_rate=0.001", "df.max_epochs=25", "df.patience=6", "df.components=0",
                 "ensemble.df_seed=3", "ensemble.df_seed_potentials=false", "ensemble.potential_seed=2",
                 "ensemble.bootstrap=0", "potential.steps=3000", "potential.learning_rate=0.002",
                 "potential.weighting=none"]


def timed(cmd: list[str], cwd: Path, env: dict) -> float:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="9773299")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dpot-speed-"))
    with checked_out(args.base, work / "base") as old:
        env = {**os.environ, "PYTHONPATH": str(old)}
        t_old = timed([sys.executable, "-m", "dpot_hpc.cli", "run", "--set", f"run.dir={work / 'old'}"], old, env)
        sets = [a for s in [*BASE_SETTINGS, f"run.dir={work / 'new'}"] for a in ("--set", s)]
        # a fresh torch.compile cache: the current code's compilation is timed as on a first run
        env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
               "TORCHINDUCTOR_CACHE_DIR": str(work / "inductor-cache")}
        measured = source_commit()  # the code as the current run starts (+dirty with uncommitted changes)
        t_new = timed([sys.executable, "-m", "dpot_hpc", "run", *sets], ROOT, env)
        s_old = json.loads((work / "old" / "summary.json").read_text())
        s_new = json.loads((work / "new" / "summary.json").read_text())
    result = {
        "base": args.base, "commit": measured,
        "settings_of_base": BASE_SETTINGS, "wall_s": {"base": round(t_old, 1), "current": round(t_new, 1)},
        "ratio": round(t_new / t_old, 3), "stages_s": {"base": s_old["timing_s"], "current": s_new["timing_s"]},
        "scalars": {"base": {k: v["median"] for k, v in s_old["best"].items()},
                    "current": {k: v["median"] for k, v in s_new["best"].items()}, "truth": s_new["truth"]},
        "machine": machine(),
        "compile_cache": "cold (fresh TORCHINDUCTOR_CACHE_DIR for the current run)",
    }
    write_json(HERE / "results" / "default_run_speed.json", result)
    shutil.rmtree(work, ignore_errors=True)
    print("| code | wall | DF stage | potential stage | rho(R=R0) | Omega_p |\n|---|---|---|---|---|---|")
    for k in ("base", "current"):
        st, sc = result["stages_s"][k], result["scalars"][k]
        print(f"| {args.base if k == 'base' else result['commit']} | {result['wall_s'][k]:.0f} s | {st['df']:.0f} s | "
              f"{st['potential']:.0f} s | {sc['rho_R0']:.4f} | {sc['omega_p']:.3f} |")
    print(f"ratio {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
