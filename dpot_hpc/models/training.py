"""What every training loop shares: the cosine learning-rate schedule, and checkpoints that hold the
weights, the optimizer, the random generator and the loop's own state, so that a killed run resumed
from its last checkpoint ends exactly where an uninterrupted one does."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, TypeVar

import torch

M = TypeVar("M", bound=torch.nn.Module)


def seeded(seed: int, build: Callable[[], M]) -> M:
    """``build()`` with torch's global generator seeded by ``seed`` (and restored after): a model whose
    initial weights depend only on the seed, whatever ran before."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def cosine_lr(base: float, step: int, total: int) -> float:
    """Learning rate at ``step`` of ``total``: cosine decay from ``base`` to 0 (and 0 after total)."""
    return base * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))


def set_cosine_lr(optimizer: torch.optim.Optimizer, step: int, total: int) -> float:
    """Set every parameter group's rate from its ``base_lr``; returns the first group's rate."""
    for g in optimizer.param_groups:
        g["lr"] = cosine_lr(g["base_lr"], step, total)
    return optimizer.param_groups[0]["lr"]


class Interrupted(Exception):
    """Training stopped on request (e.g. Slurm's time-limit signal) right after writing a checkpoint;
    running the member again resumes from it."""


#: A stop request: a function the training loop asks after every step (potential) or epoch (DF).
StopRequest = Callable[[], bool]


def never() -> bool:
    """The default stop request: never stop early."""
    return False


def nothing() -> None:
    """The default work between steps: none."""


@dataclass(frozen=True)
class LoopHooks:
    """What a training loop gets from whoever runs it, beyond its data and settings: where to write
    checkpoints (``checkpoint(payload)``), the payload of the last one to resume from, the member's log,
    the torch device, the stop request (e.g. Slurm's time-limit signal) and ``between()``, called
    between steps (potential) or epochs (DF), where the MPI driver hands over the threads of ranks
    that ran out of members. The defaults train once, silently, on the CPU, without checkpoints."""

    checkpoint: Callable[[dict], None] | None = None
    resume: dict | None = None
    log: Callable[[str], None] | None = None
    device: str = "cpu"
    stop: StopRequest = never
    between: Callable[[], None] = nothing


@dataclass
class LoopState:
    """Position of a training loop: optimizer steps taken, the history rows, whether it finished."""

    step: int = 0
    history: list = field(default_factory=list)
    done: bool = False


class Resumable:
    """The parts of a training run a checkpoint must hold to continue bit-for-bit.

    ``payload(**extra)`` is what a checkpoint stores; ``restore(payload)`` puts it back into the
    model, the optimizer, the generator and ``state`` (a LoopState or subclass), and returns the
    payload for the caller's own extras.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, rng: torch.Generator,
                 state: LoopState):
        self.model, self.optimizer, self.rng, self.state = model, optimizer, rng, state

    def payload(self, **extra) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.get_state(), "state": dict(self.state.__dict__), **extra}

    def restore(self, payload: dict) -> dict:
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.rng.set_state(payload["rng"])
        self.state = type(self.state)(**payload["state"])
        return payload
