"""The default run inside the container image, its potential loss compiled (the image's g++) and eager
(TORCHDYNAMO_DISABLE=1), back to back on this machine (issue 11).

Each run is a fresh container (`podman run --rm`), so torch.compile starts with an empty cache, as on
a first job on a cluster node. Needs root podman and the image built by docker/podman_check.sh
(which keeps it when given a tag; the CPU torch wheel in the image stands for the CUDA one).

    bash docker/podman_check.sh localhost/dpot-hpc:bench
    python benchmarks/container_run.py --image localhost/dpot-hpc:bench

Writes benchmarks/results/container_run.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runs import HERE, commit, machine, write_json

PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
RUNOPTS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", "--network", "host"]
MODES = {"compiled": [], "eager": ["-e", "TORCHDYNAMO_DISABLE=1"]}


def run_in_image(image: str, work: Path, mode: str) -> dict:
    """The default run in a fresh container; its wall time, per-stage times and scalars."""
    out = work / mode
    out.mkdir()
    out.chmod(0o777)  # the image runs as uid 1000 (mkdir's mode would be cut by the umask)
    cmd = [*PODMAN, "run", "--rm", *RUNOPTS, *MODES[mode], "-v", f"{out}:/out", image, "run", "--set", "run.dir=/out/run"]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"{mode} run failed:\n{p.stderr[-3000:]}")
    summary = json.loads((out / "run" / "summary.json").read_text())
    logs = sorted((out / "run" / "logs").glob("potential-*.log"))
    eager_logged = any("training eagerly" in f.read_text() for f in logs)
    return {"wall_s": round(wall, 1), "stages_s": {k: round(v, 1) for k, v in summary["timing_s"].items()},
            "potential_logs_say_eager": eager_logged,
            "scalars": {k: v["median"] for k, v in summary["best"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="localhost/dpot-hpc:bench")
    args = ap.parse_args()
    if subprocess.run([*PODMAN, "image", "exists", args.image]).returncode != 0:
        sys.exit(f"no image {args.image}: build it with bash docker/podman_check.sh {args.image}")
    work = Path(tempfile.mkdtemp(prefix="dpot-container-"))
    try:
        runs = {mode: run_in_image(args.image, work, mode) for mode in MODES}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"commit": commit(), "image": args.image, "runs": runs,
              "potential_stage_ratio_eager_over_compiled": round(
                  runs["eager"]["stages_s"]["potential"] / runs["compiled"]["stages_s"]["potential"], 2),
              "wall_ratio_compiled_over_eager": round(runs["compiled"]["wall_s"] / runs["eager"]["wall_s"], 3),
              "machine": machine(), "date": time.strftime("%Y-%m-%d"),
              "how": "dpot-hpc run (defaults, built-in mock) in a fresh container each, compiled first, then "
                     "eager (TORCHDYNAMO_DISABLE=1), back to back; cold torch.compile cache"}
    write_json(HERE / "results" / "container_run.json", result)
    print("| potential loss | wall s | DF stage s | cache s | potential stage s | rho(R=R0) | Omega_p |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in runs.items():
        st, sc = r["stages_s"], r["scalars"]
        print(f"| {mode} | {r['wall_s']} | {st['df']} | {st['cache']} | {st['potential']} | "
              f"{sc['rho_R0']:.4f} | {sc['omega_p']:.3f} |")


if __name__ == "__main__":
    main()
