"""CPU cores of ranks that have run out of members, lent to the ranks of the same node still training.

At the end of a stage some ranks finish their last member before others (3 flows on 2 ranks: one
rank trains the third alone). A rank with nothing left to claim marks itself idle beside the stage's
claims (``<claims>/<stage>.idle/<host>.<rank>``, holding its thread count) and waits by
polling the folder with sleeps instead of in an MPI collective, which would spin on its core. The
ranks still training read the marks between steps (at most once a second) and share the idle
threads of their node among themselves (``torch.set_num_threads``); the next stage starts with
every rank at its own count again. Files only, like ``Claims``: no rank serves the others. With a
GPU per rank the threads matter little and nothing changes the GPU work.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import torch

#: Seconds between two looks at the idle marks (a training rank) or at the stage's progress (an idle one).
POLL_S = 1.0


class CoreShare:
    """The idle marks of one stage and the thread count of this rank.

    Arguments:
        folder: where the stage's idle marks go (created).
        rank, local_size: this rank and the number of ranks on its node.
        threads: this rank's own thread count (its share of the node's cores).
    """

    def __init__(self, folder: Path, rank: int, local_size: int, threads: int):
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "_")
        self.rank, self.local_size, self.threads = rank, local_size, threads
        self._next_look = 0.0
        torch.set_num_threads(threads)

    def lend(self) -> None:
        """Mark this rank idle for the rest of the stage: its threads go to the node's busy ranks."""
        (self.dir / f"{self.host}.{self.rank}").write_text(f"{self.threads}\n")

    def threads_now(self) -> int:
        """This rank's own threads plus its share of the idle ranks' threads on this node."""
        marks = [p for p in self.dir.iterdir() if p.name.startswith(self.host + ".")]
        busy = max(1, self.local_size - len(marks))
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

