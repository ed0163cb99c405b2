"""Fault injection: kill `dpot-hpc run` (SIGKILL to its whole process group) at random moments and
restart it each time; the final summary and every file of the run must be bit-identical to an
uninterrupted run, with no temporary file or lock left behind.

Writes benchmarks/results/faults.json (every kill: seconds after its start and the stage the run was
in) and prints a table. Tiny configuration, one CPU thread; about 10 minutes on 2 cores.

    python benchmarks/faults.py [--kills 24] [--seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from runs import write_json

HERE = Path(__file__).resolve().parent
SETTINGS = ["mock.n_stars=6000", "ensemble.df_seed=2", "ensemble.potential_seed=2", "ensemble.bootstrap=1",
            "ensemble.x0_v0=1", "df.transforms=2", "df.hidden=[32, 32]", "df.max_epochs=6", "df.batch_size=256",
            "cache.n_points=3000", "potential.hidden=[32, 32]", "potential.steps=600", "potential.batch_size=512",
            "potential.penalty_points=64", "potential.checkpoint_every_steps=50", "summary.grid_spacing_kpc=0.05",
            "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false"]


def command(run_dir: Path) -> list[str]:
    sets = [a for s in [*SETTINGS, f"run.dir={run_dir}"] for a in ("--set", s)]
    return [sys.executable, "-m", "dpot_hpc", "run", *sets]


def _without_mtime(value):
    """A JSON value with every 'mtime_ns' entry left out (recursively)."""
    if isinstance(value, dict):
        return {k: _without_mtime(v) for k, v in value.items() if k != "mtime_ns"}
    if isinstance(value, list):
        return [_without_mtime(v) for v in value]
    return value


def fingerprint(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of the run, byte for byte, except: summary.json without its wall-time record,
    and prepared.h5 by its datasets and attributes without the catalogue's modification time (the
    reference and the faulted run each draw their own mock.h5, at different times; its content, size and
    sha256 are compared)."""
    out = {}
    for p in sorted(run_dir.rglob("*")):
        if not p.is_file() or "logs" in p.parts:
            continue
        if p.name == "prepared.h5":
            h = hashlib.sha256()
            with h5py.File(p, "r") as f:
                for name in sorted(f):
                    h.update(name.encode() + f[name][()].tobytes())
                for k in sorted(f.attrs):
                    try:
                        v = json.dumps(_without_mtime(json.loads(f.attrs[k])), sort_keys=True)
                    except (TypeError, ValueError):
                        v = str(f.attrs[k])
                    h.update(k.encode() + v.encode())
            out[str(p.relative_to(run_dir))] = h.hexdigest()
            continue
        data = p.read_bytes()
        if p.name == "summary.json":
            s = json.loads(data)
            s.pop("timing_s")
            data = json.dumps(s, sort_keys=True).encode()
        out[str(p.relative_to(run_dir))] = hashlib.sha256(data).hexdigest()
    return out


def stage_of(log: str) -> str:
    """The last stage the run announced before it was killed."""
    stage = "startup"
    for line in log.splitlines():
        if "mock: drawing" in line:
            stage = "mock"
        elif "prepare:" in line:
            stage = "prepare"
        for s in ("df", "cache", "potential"):
            if line.startswith(f"dpot-hpc: {s} stage"):
                stage = s
        if "finished in" in line:
            stage = "finished"
    return stage


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import random

    rng = random.Random(args.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    work = Path(tempfile.mkdtemp(prefix="dpot-faults-"))
    # both runs in the same folder (its path is part of every file's record): the reference first,
    # then moved aside
    ref_dir, run_dir = work / "reference", work / "run"
    t0 = time.perf_counter()
    p = subprocess.run(command(run_dir), env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    t_ref = time.perf_counter() - t0
    run_dir.rename(ref_dir)
    kills = []
    while len(kills) < args.kills:
        delay = rng.uniform(0.5, max(2.0, t_ref / 6))
        log = work / "attempt.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(command(run_dir), env=env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                kills.append({"after_s": round(delay, 2), "stage": stage_of(log.read_text())})
                continue
        if proc.returncode != 0:
            sys.exit(f"run failed after a restart:\n{log.read_text()[-3000:]}")
        break  # finished before the kill: the remaining kills have nothing left to interrupt
    p = subprocess.run(command(run_dir), env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(p.stderr[-3000:])
    ref, got = fingerprint(ref_dir), fingerprint(run_dir)
    differ = sorted(k for k in set(ref) | set(got) if ref.get(k) != got.get(k))
    leftovers = [str(q.relative_to(run_dir)) for q in run_dir.rglob("*") if ".tmp-" in q.name or q.name == ".lock"]
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                                 text=True).stdout.strip(),
        "settings": SETTINGS, "reference_wall_s": round(t_ref, 1), "kills": kills,
        "kills_by_stage": {s: sum(k["stage"] == s for k in kills) for s in dict.fromkeys(k["stage"] for k in kills)},
        "files_compared": len(ref), "files_differing": differ, "leftover_files": leftovers,
        "bit_identical": not differ, "clean": not leftovers,
    }
    out = HERE / "results" / "faults.json"
    write_json(out, result)
    print(f"| kills | by stage | files compared | differing | leftovers |\n|---|---|---|---|---|\n"
          f"| {len(kills)} | {result['kills_by_stage']} | {len(ref)} | {len(differ)} | {len(leftovers)} |")
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    if differ or leftovers:
        sys.exit(1)


if __name__ == "__main__":
    main()
