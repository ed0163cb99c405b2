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

import dataclasses
import os
import shutil
import signal
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config
from ..errors import DpotError, InputError, write_failure
from ..data.runfolder import RunFolder
from ..ensemble.calibration import calibration_configs
from ..ensemble.members import RunContext, check_member_inputs, run_member, status
from ..ensemble.plan import STAGES, MemberSpec, stages, write_plan
from ..ensemble.summary import summarize
from ..models.device import pick_device
from ..progress import Verbosity, emit, format_duration, progress_log, say
from .cores import CoreShare, cpu_group, cpu_limit, thread_share, usable_cpus


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


def world():
    """MPI.COMM_WORLD, or a SerialComm when no MPI library can be loaded."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as exc:  # mpi4py without an MPI library raises RuntimeError
        say(f"MPI not available ({exc}); running on one process")
        return SerialComm()
    comm = MPI.COMM_WORLD
    launched = max(int(os.environ.get(v, "1") or 1) for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
    if comm.Get_size() == 1 and launched > 1:
        raise InputError(f"started as one of {launched} ranks, but MPI sees one: the launcher and mpi4py's MPI library "
                         "do not match (e.g. srun --mpi=pmi2 for MPICH); every rank would run alone")
    return comm


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

    def fail(self) -> None:
        """Tell the other ranks that a member of this stage failed: they take no further member."""
        (self.root / "failed").touch()

    def failed(self) -> bool:
        return (self.root / "failed").exists()

    def counts(self) -> tuple[int, int]:
        """(members started, members finished) over all ranks."""
        names = [p.name for p in self.root.iterdir() if p.name != "failed"]
        done = sum(n.endswith(".done") for n in names)
        return len(names) - done, done


class MemberFailed(DpotError):
    """Members of a stage failed (on any rank); the message has one line per failed member."""


@dataclass
class Binding:
    """Where a rank trains: its device, its torch thread count, its node-local rank, and the ranks of
    its node that share its CPUs (itself included) with those CPUs' name."""

    device: str
    threads: int
    local_rank: int
    sharing: int = 1
    cpu_group: str = "all"


def bind(comm, cfg: Config) -> Binding:
    """One GPU per rank (local rank modulo visible GPUs), or a fair share of the CPUs this rank may
    run on: SLURM_CPUS_PER_TASK if set, else its affinity mask (capped by its cgroup's CPU time)
    divided among the node's ranks that share it (``cores.thread_share``); ``run.threads`` overrides."""
    cpus = usable_cpus()
    if comm.Get_size() > 1:
        from mpi4py import MPI

        node = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank = node.Get_rank()
        node_cpus = node.allgather(cpus)
        node.Free()
    else:
        local_rank, node_cpus = 0, [cpus]
    device = pick_device(cfg.run.device, local_rank)
    if device != "cpu":
        torch.cuda.set_device(device)
    cores = int(os.environ.get("SLURM_CPUS_PER_TASK", 0)) or thread_share(cpus, node_cpus, cpu_limit())
    threads = cfg.run.threads or cores
    torch.set_num_threads(threads)
    return Binding(device, threads, local_rank, sharing=sum(1 for c in node_cpus if c == cpus),
                   cpu_group=cpu_group(cpus))


def run_stage(comm, name: str, specs: list[MemberSpec], ctx: RunContext, claims_root: Path, t_run: float,
              binding: Binding, verbosity: Verbosity = Verbosity.NORMAL) -> dict[str, dict]:
    """Run one stage's members, handed out dynamically; returns this rank's potential scalars.

    A rank with no member left lends its CPU threads to the ranks of its node on the same CPUs still
    training (``CoreShare``) and waits for the stage's end by polling the claims, not in a spinning MPI call.

    A member that fails stops this rank's work on the stage and tells the other ranks (a marker in
    the claims folder), which finish the member they are on and take no other; at the end of the
    stage every rank learns every failure (allgather) and raises MemberFailed. A user error (bad
    input, corrupt file, full disk) is one line; anything else is a bug and also prints its traceback.
    """
    rank = comm.Get_rank()
    failure = None
    try:
        claims = Claims(claims_root / name)
        share = CoreShare(claims_root / f"{name}.idle", rank, binding.sharing, binding.threads, binding.cpu_group)
    except OSError as exc:
        claims, share, failure = None, None, f"rank {rank}: {write_failure(claims_root / name, exc)}"
    comm.Barrier()  # every rank sees the claims folder before anyone claims
    out = {}
    t0 = time.monotonic()
    n = len(specs)
    if share is not None:
        ctx = dataclasses.replace(ctx, between=share.rebalance)
    while failure is None and not claims.failed() and (i := claims.take(n, rank)) is not None:
        spec = specs[i]
        path = spec.path(ctx.folder)
        try:
            was = ("done" if path.exists() else "missing") if spec.kind == "cache" else status(path)
            scalars = run_member(spec, ctx)
        except DpotError as exc:
            failure = f"{spec.key} (rank {rank}): {exc}"
        except Exception as exc:  # a bug: keep the traceback
            emit(f"dpot-hpc[rank {rank}]: member {spec.key} failed:\n{traceback.format_exc()}")
            failure = f"{spec.key} (rank {rank}): {type(exc).__name__}: {exc} (a bug: traceback above)"
        if failure is not None:
            claims.fail()
            break
        if scalars is not None:
            out[spec.id] = scalars
        claims.finish(i)
        started, done = claims.counts()
        el = time.monotonic() - t0
        eta = el / done * (n - done) if done else 0.0  # at the rate members finished so far
        if verbosity >= Verbosity.NORMAL:
            emit(f"dpot-hpc[rank {rank}] {name} stage: {spec.id} {'was done' if was == 'done' else 'done'}; "
                 f"{done}/{n} done, {started - done} running, {n - started} left; stage {format_duration(el)}, "
                 f"run {format_duration(time.monotonic() - t_run)}, stage ETA {format_duration(eta)}")
    if share is not None:
        share.lend()
        share.wait(lambda: claims.failed() or claims.counts()[1] >= n)
        share.close()
    failures = [f for f in comm.allgather(failure) if f is not None]
    if failures:
        raise MemberFailed(f"{name} stage failed: " + "; ".join(failures))
    return out


def setup(cfg: Config, verbosity: Verbosity = Verbosity.NORMAL) -> tuple[RunFolder, int]:
    """Set up the run folder under its lock (config check, leftovers removed, mock if needed, prepared
    sample, every planned member's inputs checked) and write the plan. Returns (folder, member count)."""
    folder = RunFolder.of(cfg)
    folder.acquire("setup", log=progress_log(verbosity))
    try:
        return _setup_locked(cfg, folder, verbosity)
    finally:
        folder.release()


def _setup_locked(cfg: Config, folder: RunFolder, verbosity: Verbosity) -> tuple[RunFolder, int]:
    folder.setup(cfg, log=progress_log(verbosity))
    check_member_inputs(cfg, folder)
    return folder, len(write_plan(cfg, folder))


class _TimeLimit:
    """SIGUSR1 (Slurm's time-limit warning, forwarded by the job script) as a stop request."""

    def __init__(self):
        self.requested = False
        signal.signal(signal.SIGUSR1, self._handler)

    def _handler(self, signum, frame) -> None:
        self.requested = True

    def __call__(self) -> bool:
        return self.requested


def run_one(cfg: Config, stage: str, index: int, verbosity: Verbosity = Verbosity.NORMAL) -> dict | None:
    """Run member ``index`` of ``stage`` in this process (a Slurm array task); the run folder must
    have been set up. Finished members are skipped; interrupted ones resume. On SIGUSR1 a training
    member checkpoints and raises Interrupted (the job script then requeues the task)."""
    if stage not in STAGES:
        raise InputError(f"--stage {stage!r}: unknown stage (stages: {', '.join(STAGES)})")
    specs = dict(stages(cfg))[stage]
    if not 0 <= index < len(specs):
        raise InputError(f"--index {index}: stage {stage} has {len(specs)} members (indices 0..{len(specs) - 1})")
    folder = RunFolder.of(cfg)
    folder.require_setup()
    folder.check_config(cfg)  # refuses an incompatible folder
    binding = bind(SerialComm(), cfg)
    ctx = RunContext(cfg, folder, binding.device, echo=verbosity >= Verbosity.NORMAL, stop=_TimeLimit())
    spec = specs[index]
    was = status(spec.path(folder)) if spec.kind != "cache" else None
    scalars = run_member(spec, ctx)
    if was == "done" and verbosity >= Verbosity.NORMAL:
        say(f"{spec.key} was already done: skipped")
    return scalars


def run(cfg: Config, comm=None, verbosity: Verbosity = Verbosity.NORMAL) -> dict | None:
    """The whole job on every rank of comm; returns the summary on rank 0 (None elsewhere).

    Rank 0 holds the run folder's lock from setup to summary, so a second launcher on the same
    folder is refused while this one is alive; the other ranks join this run."""
    comm = comm if comm is not None else world()
    rank = comm.Get_rank()
    folder = RunFolder.of(cfg)
    log = progress_log(verbosity)
    t_run = time.monotonic()
    result = None
    if rank == 0:
        try:
            folder.acquire("run", log=log)
            result = ("ok", None, uuid.uuid4().hex)
            _, n = _setup_locked(cfg, folder, verbosity)
            shutil.rmtree(folder.claims, ignore_errors=True)  # a killed run's claims (we hold the lock)
            result = ("ok", n, result[2])
        except Exception as exc:  # every rank must learn of it, or the others would wait forever
            if result is not None:
                folder.release()
            result = ("error", exc, None)
    result = comm.bcast(result, root=0)
    if result[0] == "error":
        raise result[1]
    try:
        summary = _run_stages(cfg, comm, folder, result[1], result[2], verbosity, t_run)
        if cfg.calibration.realizations:
            summary = _calibrate(cfg, comm, folder, summary, verbosity)
        return summary
    finally:
        if rank == 0:
            folder.release()


def _calibrate(cfg: Config, comm, folder: RunFolder, summary: dict | None, verbosity: Verbosity) -> dict | None:
    """The calibration runs (``ensemble.calibration``), one after the other on every rank (a finished one,
    with its summary.json, is not run again), then the run's summary again with their systematic term;
    returns it on rank 0 (None elsewhere)."""
    rank = comm.Get_rank()
    log = progress_log(verbosity)
    t0 = time.monotonic()
    try:
        subs = ("ok", calibration_configs(cfg, folder)) if rank == 0 else None
    except Exception as exc:  # every rank must learn of it
        subs = ("error", exc)
    subs = comm.bcast(subs, root=0)
    if subs[0] == "error":
        raise subs[1]
    for i, sub in enumerate(subs[1], 1):
        done = RunFolder.of(sub).summary_json.is_file()
        if rank == 0:
            log(f"calibration run {i}/{len(subs[1])}: {sub.mock.family}, {sub.mock.n_stars} stars, in {sub.run.dir}"
                + (" (finished)" if done else ""))
        if not done:
            run(sub, comm, verbosity)
    if rank != 0:
        return None
    timing = {**summary["timing_s"], "calibration": time.monotonic() - t0}
    summary = summarize(cfg, folder, timing=timing)
    log(f"calibration: {len(subs[1])} run(s) in {format_duration(timing['calibration'])}; systematic term in {folder.summary_json}")
    return summary


def _run_stages(cfg: Config, comm, folder: RunFolder, n: int, token: str, verbosity: Verbosity,
                t_run: float) -> dict | None:
    rank, size = comm.Get_rank(), comm.Get_size()
    log = progress_log(verbosity)
    binding = bind(comm, cfg)
    echo = verbosity >= Verbosity.VERBOSE or (verbosity >= Verbosity.NORMAL and rank == 0)
    ctx = RunContext(cfg, folder, binding.device, echo=echo)
    if rank == 0:
        log(f"run folder {folder.root}: {n} members on {size} rank(s), "
            f"{binding.device}, {binding.threads} thread(s) per rank")
    mine: dict[str, dict] = {}
    timing = {"setup": time.monotonic() - t_run}
    claims_root = folder.claims / token
    for name, specs in stages(cfg):
        if rank == 0:
            log(f"{name} stage: {len(specs)} members")
        t0 = time.monotonic()
        mine.update(run_stage(comm, name, specs, ctx, claims_root, t_run, binding, verbosity))
        timing[name] = time.monotonic() - t0
    gathered = comm.gather(mine, root=0)
    if rank != 0:
        return None
    shutil.rmtree(claims_root.parent, ignore_errors=True)
    scalars = {}
    for part in gathered:
        scalars.update(part)
    timing["ranks"] = size
    summary = summarize(cfg, folder, scalars, timing)
    log(f"finished in {format_duration(time.monotonic() - t_run)}; summary in {folder.summary_json}")
    return summary
