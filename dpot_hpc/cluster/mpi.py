"""The MPI driver: stages of ensemble members handed out dynamically across ranks.

Every rank runs the same loop. Within a stage, a rank that finishes a member takes the next
unclaimed one (an exclusive-create claim file in the run folder, see ``Claims``), so members of
unequal cost balance themselves; stages are separated by barriers because a cache needs its flows and a
potential its cache. Rank 0 prepares the run folder first, and at the end gathers every potential
member's scalars (``comm.gather``) and writes the summary. One rank binds to one GPU (its rank
on the node modulo the GPUs it sees) or, without GPUs, to its share of the node's cores.

Without mpiexec (or without an MPI library) the same code runs on one rank.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config
from ..data.runfolder import RunFolder
from ..ensemble.members import RunContext, run_member, status
from ..ensemble.plan import STAGES, MemberSpec, stages, write_plan
from ..ensemble.summary import summarize
from ..models.device import pick_device
from ..progress import emit, say


class SerialComm:
    """The part of an mpi4py communicator the driver uses, for a single process without MPI."""

    rank, size = 0, 1

    def Get_rank(self):
        return 0

    def Get_size(self):
        return 1

    def bcast(self, obj, root=0):
        return obj

    def gather(self, obj, root=0):
        return [obj]

    def allgather(self, obj):
        return [obj]

    def Barrier(self):
        pass

    def Abort(self, code=1):
        """Nothing to abort on one process: the caller re-raises the member's exception."""


def world():
    """MPI.COMM_WORLD, or a SerialComm when no MPI library can be loaded."""
    try:
        from mpi4py import MPI

        return MPI.COMM_WORLD
    except (ImportError, RuntimeError) as exc:  # mpi4py without an MPI library raises RuntimeError
        say(f"MPI not available ({exc}); running on one process")
        return SerialComm()


class Claims:
    """Dynamic hand-out of a stage's members through the run folder: a rank takes member i by
    creating the file <run>/.claims/<token>/<stage>/<i> with O_CREAT | O_EXCL, which exactly one
    rank can do. No rank has to serve the others. (An MPI one-sided fetch-and-add on rank 0 was
    the first design; with MPICH's default passive-target progress it stalled a rank until rank 0
    next entered MPI, i.e. finished its member: 40 s lost per rank on an 8-member stage.)
    The token is fresh for every invocation, so claims of a killed run never block a re-run.
    """

    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._next = 0

    def take(self, n: int, rank: int) -> int | None:
        """The next unclaimed member index below n, now claimed by this rank, or None."""
        while self._next < n:
            i = self._next
            self._next += 1
            try:
                fd = os.open(self.root / str(i), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                continue
            os.write(fd, f"rank {rank} pid {os.getpid()}\n".encode())
            os.close(fd)
            return i
        return None

    def finish(self, i: int) -> None:
        (self.root / f"{i}.done").touch()

    def counts(self) -> tuple[int, int]:
        """(members started, members finished) over all ranks."""
        names = [p.name for p in self.root.iterdir()]
        done = sum(n.endswith(".done") for n in names)
        return len(names) - done, done


@dataclass
class Binding:
    device: str
    threads: int
    local_rank: int
    local_size: int


def bind(comm, cfg: Config) -> Binding:
    """One GPU per rank (local rank modulo visible GPUs), or a fair share of CPU threads."""
    if comm.Get_size() > 1:
        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank, local_size = node.Get_rank(), node.Get_size()
        node.Free()
    else:
        local_rank, local_size = 0, 1
    device = pick_device(cfg.run.device, local_rank)
    if device != "cpu":
        torch.cuda.set_device(device)
    cores = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or max(1, (os.cpu_count() or 1) // local_size)
    threads = cfg.run.threads or cores
    torch.set_num_threads(threads)
    return Binding(device, threads, local_rank, local_size)


def _fmt(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 90 else f"{s:.0f} s"


def run_stage(comm, name: str, specs: list[MemberSpec], ctx: RunContext, claims_root: Path, t_run: float) -> dict[str, dict]:
    """Run one stage's members, handed out dynamically; returns this rank's potential scalars."""
    rank = comm.Get_rank()
    claims = Claims(claims_root / name)
    comm.Barrier()  # every rank sees the claims folder before anyone claims
    out = {}
    t0 = time.monotonic()
    n = len(specs)
    while (i := claims.take(n, rank)) is not None:
        spec = specs[i]
        path = spec.path(ctx.folder)
        was = ("done" if path.exists() else "missing") if spec.kind == "cache" else status(path)
        try:
            scalars = run_member(spec, ctx)
        except Exception:
            emit(f"dpot-hpc[rank {rank}]: member {spec.key} failed:\n{traceback.format_exc()}")
            comm.Abort(1)
            raise
        if scalars is not None:
            out[spec.id] = scalars
        claims.finish(i)
        started, done = claims.counts()
        el = time.monotonic() - t0
        eta = el / done * (n - done) if done else 0.0  # at the rate members finished so far
        emit(f"dpot-hpc[rank {rank}] {name} stage: {spec.id} {'was done' if was == 'done' else 'done'}; "
             f"{done}/{n} done, {started - done} running, {n - started} left; stage {_fmt(el)}, "
             f"run {_fmt(time.monotonic() - t_run)}, stage ETA {_fmt(eta)}")
    comm.Barrier()
    return out


def setup(cfg: Config) -> tuple[RunFolder, int]:
    """The run folder set up (config check, mock if needed, prepared sample) and the plan written:
    rank 0's work before any member runs. Returns (run folder, number of members)."""
    folder = RunFolder.of(cfg)
    folder.setup(cfg, log=say)
    return folder, len(write_plan(cfg, folder))


def run_one(cfg: Config, stage: str, index: int) -> dict | None:
    """Run member ``index`` of ``stage`` in this process (a Slurm array task); the run folder must
    have been set up. Finished members are skipped; interrupted ones resume."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    specs = dict(stages(cfg))[stage]
    if not 0 <= index < len(specs):
        raise ValueError(f"stage {stage} has {len(specs)} members (indices 0..{len(specs) - 1}), not {index}")
    folder = RunFolder.of(cfg)
    folder.require_setup()
    folder.check_config(cfg)  # refuses an incompatible folder
    binding = bind(SerialComm(), cfg)
    return run_member(specs[index], RunContext(cfg, folder, binding.device))


def run(cfg: Config, comm=None) -> dict | None:
    """The whole job on every rank of comm; returns the summary on rank 0 (None elsewhere)."""
    comm = comm if comm is not None else world()
    rank, size = comm.Get_rank(), comm.Get_size()
    t_run = time.monotonic()
    result = None
    if rank == 0:
        try:
            folder, n = setup(cfg)
            shutil.rmtree(folder.claims, ignore_errors=True)  # a killed run's claims
            result = ("ok", n, uuid.uuid4().hex)
        except Exception as exc:  # every rank must learn of it, or the others would wait forever
            result = ("error", exc, None)
    result = comm.bcast(result, root=0)
    if result[0] == "error":
        raise result[1]
    binding = bind(comm, cfg)
    ctx = RunContext(cfg, RunFolder.of(cfg), binding.device, echo=True)
    if rank == 0:
        say(f"run folder {ctx.folder.root}: {result[1]} members on {size} rank(s), "
            f"{binding.device}, {binding.threads} thread(s) per rank")
    mine: dict[str, dict] = {}
    timing = {"setup": time.monotonic() - t_run}
    claims_root = ctx.folder.claims / result[2]
    for name, specs in stages(cfg):
        if rank == 0:
            say(f"{name} stage: {len(specs)} members")
        t0 = time.monotonic()
        mine.update(run_stage(comm, name, specs, ctx, claims_root, t_run))
        timing[name] = time.monotonic() - t0
    gathered = comm.gather(mine, root=0)
    if rank != 0:
        return None
    shutil.rmtree(claims_root.parent, ignore_errors=True)
    scalars = {}
    for part in gathered:
        scalars.update(part)
    timing["ranks"] = size
    summary = summarize(cfg, ctx.folder, scalars, timing)
    say(f"finished in {_fmt(time.monotonic() - t_run)}; summary in {ctx.folder.summary_json}")
    return summary
