"""What the benchmark scripts share: a finished `dpot-hpc run` (resumable: a run folder with a summary
is reused), the commit measured and the machine it ran on."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from dpot_hpc.bench import cpu_model, source_commit  # noqa: E402
from dpot_hpc.data.h5io import atomic_write_text  # noqa: E402


@contextlib.contextmanager
def checked_out(commit: str, where: Path):
    """A git worktree of ``commit`` at ``where`` (detached) for the block, removed after it."""
    subprocess.run(["git", "worktree", "add", "--detach", str(where), commit], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=ROOT, capture_output=True)


def write_json(path: Path, obj) -> None:
    """A result file, written through a temporary file and a rename."""
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def mean_and_rms(values: list[float]) -> dict[str, float]:
    """{"mean", "rms"} of a list of errors: their mean and root mean square."""
    return {"mean": statistics.fmean(values), "rms": statistics.fmean(v * v for v in values) ** 0.5}


#: The errors a refitting benchmark summarizes (rho relative to the truth).
ERROR_KEYS = ("omega_p", "rho_R0_rel", "a_x", "a_y", "a_z")


def errors_by_variant(rows: list[dict], variants: tuple[str, ...]) -> dict:
    """Per family and variant of rows {"family", "variant", "error": {...}}: realizations ("n"), and per
    error of ``ERROR_KEYS`` its mean and root mean square (``mean_and_rms``)."""
    out: dict = {}
    for fam in sorted({r["family"] for r in rows}):
        out[fam] = {}
        for variant in variants:
            errs = [r["error"] for r in rows if r["family"] == fam and r["variant"] == variant]
            if errs:
                out[fam][variant] = {"n": len(errs), **{k: mean_and_rms([e[k] for e in errs]) for k in ERROR_KEYS}}
    return out


def pool_rows(worker, tasks: list, jobs: int, rows: list[dict], path: Path) -> None:
    """Run ``worker`` (returning a list of row dicts, each with its "run") on every task in ``jobs`` spawned
    processes, appending the rows and saving them to ``path`` after each task (resumable); the file's other
    top-level keys (the script's notes and summaries, rewritten when it finishes) are kept meanwhile, so a
    killed benchmark loses none of them."""
    import multiprocessing as mp

    kept = json.loads(path.read_text()) if path.exists() else {}
    with mp.get_context("spawn").Pool(jobs) as pool:
        for new in pool.imap_unordered(worker, tasks):
            rows.extend(new)
            print(f"{new[0]['run']}: done", flush=True)
            write_json(path, {**kept, "rows": rows, "machine": machine()})


def finished_run(run_dir: Path, settings: list[str], config: Path | None = None) -> tuple[dict, float | None]:
    """(summary.json, wall seconds) of `dpot-hpc run -q [-c config] --set ...` in run_dir; a run that
    already has its summary is not repeated (its wall time is read back, None if unknown)."""
    summary, wall = run_dir / "summary.json", run_dir / "wall_s.txt"
    if not summary.exists():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "commit.txt", commit() + "\n")  # the code that made the run (run_commit)
        sets = [a for s in [*settings, f"run.dir={run_dir}"] for a in ("--set", s)]
        cmd = [sys.executable, "-m", "dpot_hpc", "run", "-q", *(["-c", str(config)] if config else []), *sets]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{run_dir} failed:\n{p.stderr[-3000:]}")
        atomic_write_text(wall, f"{time.perf_counter() - t0:.1f}\n")
    return json.loads(summary.read_text()), float(wall.read_text()) if wall.exists() else None


def run_commit(run_dir: Path) -> str | None:
    """The commit that made a run folder of ``finished_run`` (None for runs made before it was recorded,
    or by hand): a result file reusing older runs says so per run, beside its own ``commit``."""
    path = run_dir / "commit.txt"
    return path.read_text().strip() if path.exists() else None


def commit() -> str:
    """The short hash of the checked-out commit (what a result file measured), '+dirty' with uncommitted
    changes to the package."""
    return source_commit() or "unknown"


def machine() -> dict:
    return {"platform": platform.platform(), "processor": cpu_model(), "cpus": os.cpu_count(),
            "date": time.strftime("%Y-%m-%d")}
