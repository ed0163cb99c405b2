"""Using every core of a workstation without an MPI launcher: `dpot-hpc run` re-launches itself under
the mpiexec of the `mpi` extra (MPICH's, installed next to the Python executable), one rank per core
(or per GPU), so members train side by side with one thread each. Small networks use one core far
better than two threads share it (measured on 2 cores: 62,800 vs 2 x 43,000 DF samples/s per core,
docs/benchmarks.md). Nothing happens under an MPI launcher, in a Slurm job, with run.processes: 1,
or without that mpiexec."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ..config import Config
from .cores import usable_cpu_count

#: Set in the environment of the re-launched ranks (and by any MPI launcher's own variables below).
LAUNCHED = "DPOT_HPC_LAUNCHED"
_LAUNCHER_VARS = ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_JOB_ID")


def local_processes(cfg: Config) -> int:
    """How many ranks to start: run.processes, or one per GPU for cuda, or one per CPU this process may
    keep busy (its affinity mask, ``taskset`` or a container's cpuset, capped by its cgroup's CPU time,
    ``docker run --cpus``)."""
    if cfg.run.processes:
        return cfg.run.processes
    if cfg.run.device in ("auto", "cuda") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return usable_cpu_count()


def relaunch_command(cfg: Config, argv: list[str]) -> list[str] | None:
    """The mpiexec command line that runs these arguments on local ranks, or None to run here."""
    if os.environ.get(LAUNCHED) or any(os.environ.get(v) for v in _LAUNCHER_VARS):
        return None
    n = local_processes(cfg)
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if n <= 1 or not mpiexec.is_file():
        return None
    return [str(mpiexec), "-n", str(n), sys.executable, "-m", "dpot_hpc", *argv]


def relaunch(command: list[str]) -> None:
    """Replace this process by ``command`` (the ranks inherit its terminal and exit status)."""
    os.environ[LAUNCHED] = "1"
    os.execv(command[0], command)
