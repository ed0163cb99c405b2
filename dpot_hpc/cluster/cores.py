"""CPU cores: how many threads a rank takes, and the cores of ranks that have run out of members,
lent to the ranks of the same node still training.

A process may run on the CPUs of its affinity mask only (``taskset``, a container's or Slurm's
cpuset, a launcher's binding), and its cgroup may cap the CPU time it gets (``docker run --cpus``, a
Kubernetes limit), either far below the machine's core count: ``usable_cpus`` reads the mask,
``cpu_limit`` the cap, and ``thread_share`` divides a rank's CPUs among the ranks of its node that
share them.

At the end of a stage some ranks finish their last member before others (3 flows on 2 ranks: one
rank trains the third alone). A rank with nothing left to claim marks itself idle beside the stage's
claims (``<claims>/<stage>.idle/<host>.<cpu group>.<rank>``, holding its thread count) and waits by
polling the folder with sleeps instead of in an MPI collective, which would spin on its core. The
ranks still training read the marks between steps (at most once a second) and share the idle
threads of the ranks of their node on the same CPUs among themselves (``torch.set_num_threads``); the next stage starts with
every rank at its own count again. Files only, like ``Claims``: no rank serves the others. With a
GPU per rank the threads matter little and nothing changes the GPU work.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import time
from pathlib import Path

import torch

#: Seconds between two looks at the idle marks (a training rank) or at the stage's progress (an idle one).
POLL_S = 1.0


def usable_cpus() -> frozenset[int]:
    """The CPU ids this process may run on: its affinity mask, or every CPU where the platform has
    no mask (macOS)."""
    try:
        return frozenset(os.sched_getaffinity(0))
    except AttributeError:
        return frozenset(range(os.cpu_count() or 1))


def cpu_limit(root: Path = Path("/sys/fs/cgroup"), proc_cgroup: str | None = None) -> int | None:
    """The CPU time this process's cgroup may use, in whole CPUs rounded up (``docker run --cpus 1.5``:
    2), or None where no cap is set or readable. Reads cgroup v2's ``cpu.max`` or v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` in the process's cgroup and its parents (the tightest
    wins); ``proc_cgroup`` is the text of /proc/self/cgroup (read when None)."""
    if proc_cgroup is None:
        try:
            proc_cgroup = Path("/proc/self/cgroup").read_text()
        except OSError:
            return None
    limits = [c for d in _cgroup_dirs(root, proc_cgroup) if (c := _cpus_in(d)) is not None]
    return min(limits) if limits else None


def _cgroup_dirs(root: Path, proc_cgroup: str) -> list[Path]:
    """The folders of this process's CPU cgroup and of its parents, up to the mount point (a container
    sees its own cgroup at the mount point even where /proc/self/cgroup names the host's path)."""
    dirs = []
    for line in proc_cgroup.splitlines():
        hid, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        if hid == "0" and not controllers:
            mounts = [root]  # v2, unified
        elif "cpu" in controllers.split(","):
            mounts = [root / "cpu", root / "cpu,cpuacct"]  # v1
        else:
            continue
        for mount in mounts:
            here = mount / path.strip("/")
            if not here.is_dir():
                here = mount
            while True:
                dirs.append(here)
                if here == mount:
                    break
                here = here.parent
    return dirs


def _cpus_in(folder: Path) -> int | None:
    """Whole CPUs (rounded up) of the cap set in one cgroup folder, or None."""
    try:
        if (folder / "cpu.max").is_file():
            quota, period = (folder / "cpu.max").read_text().split()[:2]
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
    except (OSError, ValueError):
        return None
    if quota in ("max", "-1") or int(period) <= 0:
        return None
    return max(1, math.ceil(int(quota) / int(period) - 1e-9))


def usable_cpu_count() -> int:
    """How many CPUs this process can keep busy: its affinity mask, capped by its cgroup's CPU time."""
    n, limit = len(usable_cpus()), cpu_limit()
    return min(n, limit) if limit else n


def thread_share(mine: frozenset[int], node: list[frozenset[int]], limit: int | None = None) -> int:
    """Threads for a rank that may run on the CPUs ``mine``, given the CPU sets of every rank of its
    node (``node``, its own included): its CPUs (at most ``limit``, the cgroup's cap) divided among the
    ranks whose sets overlap it, at least 1. Unbound ranks (each may use every CPU) share the node
    evenly; ranks a launcher bound to a core or a socket take what they were given, shared with the
    ranks bound to the same CPUs."""
    sharing = sum(1 for other in node if other & mine) or 1
    cpus = min(len(mine), limit) if limit else len(mine)
    return max(1, cpus // sharing)


def cpu_group(cpus: frozenset[int]) -> str:
    """A short name of a CPU set: ranks lend threads only within the same set (a rank bound to
    other CPUs could not run the extra threads)."""
    return hashlib.sha1(",".join(map(str, sorted(cpus))).encode()).hexdigest()[:10]


class CoreShare:
    """The idle marks of one stage and the thread count of this rank.

    Arguments:
        folder: where the stage's idle marks go (created).
        rank: this rank.
        sharing: the ranks of its node that may run on the same CPUs (itself included).
        threads: this rank's own thread count (its share of those CPUs).
        group: the name of those CPUs (``cpu_group``); ranks lend threads only within a group.
    """

    def __init__(self, folder: Path, rank: int, sharing: int, threads: int, group: str = "all"):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = f"{socket.gethostname().replace('/', '_')}.{group}."
        self.rank, self.sharing, self.threads = rank, sharing, threads
        self._next_look = 0.0
        torch.set_num_threads(threads)

    def lend(self) -> None:
        """Mark this rank idle for the rest of the stage: its threads go to the node's busy ranks."""
        (self.dir / f"{self.prefix}{self.rank}").write_text(f"{self.threads}\n")

    def threads_now(self) -> int:
        """This rank's own threads plus its share of the idle threads of its node's ranks on the same CPUs."""
        marks = [p for p in self.dir.iterdir() if p.name.startswith(self.prefix)]
        busy = max(1, self.sharing - len(marks))
        spare = sum(int(p.read_text() or 0) for p in marks)
        return self.threads + spare // busy

    def rebalance(self) -> None:
        """Between training steps: take this rank's share of idle threads (at most once per POLL_S)."""
        now = time.monotonic()
        if now >= self._next_look:
            self._next_look = now + POLL_S
            want = self.threads_now()
            if want != torch.get_num_threads():
                torch.set_num_threads(want)

    def wait(self, finished) -> None:
        """Sleep until ``finished()`` is true (every member of the stage done, or one failed)."""
        while not finished():
            time.sleep(POLL_S)

    def close(self) -> None:
        """End of the stage: back to this rank's own thread count."""
        torch.set_num_threads(self.threads)

