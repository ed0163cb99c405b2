"""Seeds derived from the run seed and a name: every member gets its own, stable across machines,
processes and the order work is done in."""

from __future__ import annotations

import hashlib

import numpy as np


def derived_seed(run_seed: int, name: str) -> int:
    """A seed (0 <= seed < 2^62) from the run seed and a name, by SHA-256 and numpy's SeedSequence."""
    words = np.frombuffer(hashlib.sha256(name.encode()).digest()[:16], dtype=np.uint32)
    ss = np.random.SeedSequence([int(run_seed), *map(int, words)])
    return int(ss.generate_state(1, np.uint64)[0] % (2**62))
