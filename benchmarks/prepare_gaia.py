"""Benchmark: `dpot-hpc prepare` on a 5.6-million-row Gaia-like FITS table made from the mock.

Writes benchmarks/results/prepare_gaia.json and prints a Markdown table. Wall time and peak
memory (max RSS of the child process) of the whole command, on this machine.

    python benchmarks/prepare_gaia.py [--rows 5600000] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from runs import write_json

HERE = Path(__file__).resolve().parent


def make_fits(path: Path, rows: int, seed: int = 1) -> None:
    """Gaia-like FITS from the built-in mock (10% of rows without a radial velocity)."""
    from astropy.table import Table

    from dpot_hpc.config import load_config
    from dpot_hpc.physics.gaia import helio_to_observables
    from dpot_hpc.physics.mock import sample
    from dpot_hpc.data.mockfile import mock_galaxy

    mock = mock_galaxy(load_config(None))
    parts = []
    chunk = 1_000_000
    for i, start in enumerate(range(0, rows, chunk)):
        n = min(chunk, rows - start)
        s = sample(mock, n, seed + i)
        x, v = s.x_h.numpy(), s.v_h.numpy()
        obs = helio_to_observables(x, v)
        rng = np.random.default_rng(seed + i)
        obs["radial_velocity"][rng.random(n) < 0.1] = np.nan
        obs["parallax_error"] = np.full(n, 0.02)
        obs["pmra_error"] = np.full(n, 0.02)
        obs["pmdec_error"] = np.full(n, 0.02)
        obs["radial_velocity_error"] = np.full(n, 1.0)
        obs["phot_g_mean_mag"] = rng.uniform(-1, 4, n) + 5 * np.log10(100 * np.linalg.norm(x, axis=1))
        obs["ruwe"] = rng.gamma(20.0, 1.0 / 19.0, n)
        obs["source_id"] = np.arange(start, start + n, dtype=np.int64)
        parts.append(obs)
        print(f"made {start + n}/{rows} rows", file=sys.stderr)
    table = Table({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    tmp = path.with_suffix(".tmp.fits")
    table.write(tmp, overwrite=True)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=5_600_000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    work = HERE / "out"
    work.mkdir(exist_ok=True)
    fits = work / f"gaia_mock_{args.rows}.fits"
    if not fits.exists():
        make_fits(fits, args.rows)
    out = work / "prepared_bench.h5"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "dpot_hpc.cli", "prepare", "--set", f"catalogue.path={fits}",
           "--set", "catalogue.format=gaia", "--set", f"run.threads={args.threads}", "--set", f"run.dir={work}",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    prov_line = [ln for ln in proc.stderr.splitlines() if "stars kept" in ln][-1]
    result = {
        "benchmark": "prepare_gaia", "rows": args.rows, "input_bytes": fits.stat().st_size,
        "wall_s": round(wall, 2), "peak_rss_gb": round(peak_gb, 3), "summary": prov_line,
        "cpu_count": os.cpu_count(), "threads": args.threads, "python": platform.python_version(),
        "machine": platform.machine(), "date": time.strftime("%Y-%m-%d"),
    }
    res_dir = HERE / "results"
    res_dir.mkdir(exist_ok=True)
    write_json(res_dir / "prepare_gaia.json", result)
    print("| rows | input | wall time | peak memory | kept |")
    print("|---|---|---|---|---|")
    print(f"| {args.rows:,} | {fits.stat().st_size / 1e9:.2f} GB FITS | {wall:.1f} s | {peak_gb:.2f} GB | {prov_line} |")
    print(proc.stderr, file=sys.stderr)


if __name__ == "__main__":
    main()
