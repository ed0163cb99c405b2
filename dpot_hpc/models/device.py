"""Where models run: the one device choice used by the MPI ranks and by ``dpot-hpc selfcheck``."""

from __future__ import annotations

import torch

from ..errors import DpotError


class DeviceError(DpotError, RuntimeError):
    """The requested device is not available."""


def pick_device(want: str, local_rank: int = 0, key: str = "run.device") -> str:
    """'cuda:<local_rank modulo visible GPUs>' when want is 'cuda', or 'auto' and a GPU is visible;
    else 'cpu'. Asking for cuda without a GPU is an error naming ``key``."""
    if want == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key}: cuda requested but torch sees no CUDA device")
    if want in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"
