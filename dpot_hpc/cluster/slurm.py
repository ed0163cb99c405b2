"""Slurm job arrays: one array per stage, chained with --dependency=afterok, then a summary job.

``render`` writes the batch scripts into <run.dir>/slurm/; ``submit`` sends them with sbatch and
returns the job ids. Every array task runs ``dpot-hpc member --stage S --index $SLURM_ARRAY_TASK_ID``:
one member, one output file, so tasks never write the same file, and a requeued or repeated task
resumes (or skips) its member.
"""

from __future__ import annotations

import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..data.runfolder import RunFolder
from ..ensemble.plan import stages


@dataclass(frozen=True)
class SlurmOptions:
    """Scheduler settings (None = let the cluster's defaults apply)."""

    account: str | None = None
    partition: str | None = None
    time: str = "04:00:00"
    cpus_per_task: int = 8
    gpus_per_task: int = 0
    mem: str | None = None
    max_parallel: int | None = None  # the %K of --array
    command: str = "dpot-hpc"  # e.g. "apptainer exec --nv --bind /data dpot.sif dpot-hpc"
    extra: tuple[str, ...] = ()  # more #SBATCH lines, e.g. "--qos=normal"


def _header(name: str, opts: SlurmOptions, folder: RunFolder, array: str | None) -> list[str]:
    logs = folder.slurm_logs.resolve()
    lines = ["#!/bin/bash", f"#SBATCH --job-name=dpot-{name}", f"#SBATCH --time={opts.time}",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={opts.cpus_per_task}"]
    if array is not None:
        lines.append(f"#SBATCH --array={array}")
        lines.append(f"#SBATCH --output={logs}/{name}-%A_%a.out")
    else:
        lines.append(f"#SBATCH --output={logs}/{name}-%j.out")
    if opts.gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={opts.gpus_per_task}")
    for key in ("account", "partition", "mem"):
        if getattr(opts, key):
            lines.append(f"#SBATCH --{key}={getattr(opts, key)}")
    lines += [f"#SBATCH {e}" for e in opts.extra]
    lines += ["#SBATCH --requeue", "set -euo pipefail", 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"']
    return lines


def render(cfg: Config, opts: SlurmOptions) -> list[tuple[str, Path]]:
    """Write the stage scripts; return [(stage, script path)] in submission order."""
    folder = RunFolder.of(cfg)
    out_dir = folder.slurm_scripts
    out_dir.mkdir(parents=True, exist_ok=True)
    folder.slurm_logs.mkdir(parents=True, exist_ok=True)
    conf = shlex.quote(str(folder.config.resolve()))
    cmd = opts.command
    scripts = []

    def write(order: int, name: str, array: str | None, body: str) -> None:
        path = out_dir / f"{order:02d}-{name}.sbatch"
        path.write_text("\n".join([*_header(name, opts, folder, array), body, ""]))
        path.chmod(0o755)
        scripts.append((name, path))

    write(0, "setup", None, f"# run folder, mock (if needed), prepared sample, plan\n{cmd} setup -c {conf}")
    for i, (name, specs) in enumerate(stages(cfg), start=1):
        if not specs:
            continue
        array = f"0-{len(specs) - 1}" + (f"%{opts.max_parallel}" if opts.max_parallel else "")
        write(i, name, array, f"# one {name} member per array task\n"
                              f"{cmd} member -c {conf} --stage {name} --index \"$SLURM_ARRAY_TASK_ID\"")
    write(9, "summary", None, f"# gather the potential members' scalars\n{cmd} summary -c {conf}")
    return scripts


def submit(scripts: list[tuple[str, Path]], sbatch: str = "sbatch") -> list[tuple[str, str]]:
    """Submit the scripts in order, each after the previous one succeeded; [(stage, job id)]."""
    ids: list[tuple[str, str]] = []
    for name, path in scripts:
        dep = ["--dependency=afterok:" + ids[-1][1]] if ids else []
        proc = subprocess.run([sbatch, "--parsable", *dep, str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"sbatch {path} failed: {proc.stderr.strip()}")
        ids.append((name, proc.stdout.strip().split(";")[0]))
    return ids
