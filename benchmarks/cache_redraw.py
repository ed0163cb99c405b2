"""The cache stage of a finished run redrawn by an earlier commit and by the current code, from the same
trained flows, back to back on this machine.

Copies the run folder twice without its caches, potentials and summary (the trained flows, the stars
and the configuration stay), lets ``dpot-hpc run`` of BASE (a temporary git worktree) and of the
current code finish each copy (cache and potential stages; an empty torch.compile cache each), and
records the cache stage's wall time and every cache member's, and the recovered scalars: what a change
to drawing the cache points (or to evaluating the flows there) costs or saves, and how far it moves
the results.

    python benchmarks/cache_redraw.py --run runs/example [--base 7743074]

Writes benchmarks/results/cache_redraw.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
#: What the copies keep: the inputs and the finished DF stage.
KEEP = ("config.yaml", "plan.json", "prepared.h5", "mock.h5", "df")


def finish(run: Path, dest: Path, code: Path, cache_dir: Path) -> dict:
    """Copy the DF stage of ``run`` to ``dest``, finish it with the code at ``code``; wall time, stage
    split, cache member times and scalars."""
    dest.mkdir(parents=True)
    for name in KEEP:
        src = run / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)
    env = {**os.environ, "PYTHONPATH": str(code), "TORCHINDUCTOR_CACHE_DIR": str(cache_dir)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "--set", f"run.dir={dest}"], cwd=code, env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    summary = json.loads((dest / "summary.json").read_text())
    members = {}
    for log in sorted((dest / "logs").glob("cache-*.log")):
        m = re.search(r"done in ([0-9.]+)s", log.read_text())
        if m:
            members[log.stem.removeprefix("cache-")] = float(m.group(1))
    return {"wall_s": wall, "stages_s": summary["timing_s"], "cache_members_s": members,
            "scalars": {k: v["median"] for k, v in summary["best"].items()},
            "half_width_68": {k: v["half_width_68"] for k, v in summary["best"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="a finished run folder (its DF stage is reused)")
    ap.add_argument("--base", default="7743074")
    args = ap.parse_args()
    if not (args.run / "df").is_dir():
        sys.exit(f"{args.run}: no df/ folder; give a run folder whose DF stage has finished")
    work = Path(tempfile.mkdtemp(prefix="dpot-redraw-"))
    with checked_out(args.base, work / "base-code") as old:
        base = finish(args.run.resolve(), work / "base", old, work / "inductor-base")
    commit = source_commit()  # the code as the current run starts (+dirty with uncommitted changes)
    current = finish(args.run.resolve(), work / "current", ROOT, work / "inductor-current")
    shift = {k: (current["scalars"][k] - base["scalars"][k]) / base["half_width_68"][k]
             for k in base["scalars"] if base["half_width_68"][k] > 0}
    result = {"base_commit": args.base, "commit": commit, "run": args.run.name,
              "cache_stage_s": {"base": base["stages_s"]["cache"], "current": current["stages_s"]["cache"]},
              "cache_stage_ratio": current["stages_s"]["cache"] / base["stages_s"]["cache"],
              "base": base, "current": current, "shift_over_68_half_width": shift,
              "machine": machine()}
    write_json(HERE / "results" / "cache_redraw.json", result)
    shutil.rmtree(work, ignore_errors=True)
    print("| code | cache stage | cache members | rho(R=R0) | Omega_p |\n|---|---|---|---|---|")
    for k, label in (("base", args.base), ("current", commit)):
        r = result[k]
        ms = ", ".join(f"{v:.1f}" for v in r["cache_members_s"].values())
        print(f"| {label} | {r['stages_s']['cache']:.1f} s | {ms} s | {r['scalars']['rho_R0']:.4f} | "
              f"{r['scalars']['omega_p']:.3f} |")
    print(f"cache stage ratio {result['cache_stage_ratio']:.2f}; largest shift "
          f"{max(abs(v) for v in shift.values()):.3f} of the 68% half-width")


if __name__ == "__main__":
    main()
