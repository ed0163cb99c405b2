"""Where models run: the one device choice used by the MPI ranks and by ``dpot-hpc selfcheck``."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from ..errors import DpotError


class DeviceError(DpotError, RuntimeError):
    """The requested device is not available."""


@contextlib.contextmanager
def one_cpu_thread():
    """Run the block on one CPU thread, then go back to the caller's count. torch splits a reduction over
    many points (a sum, a mean) among its threads, so the last bits depend on the thread count, which
    the driver's lending of idle ranks' threads changes during a stage (cluster/cores.py); a member must
    come out bit for bit the same whichever rank computes it, with however many threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def pick_device(want: str, local_rank: int = 0, key: str = "run.device") -> str:
    """'cuda:<local_rank modulo visible GPUs>' when want is 'cuda', or 'auto' and a GPU is visible;
    else 'cpu'. Asking for cuda without a GPU is an error naming ``key``."""
    if want == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{key}: cuda requested but torch sees no CUDA device")
    if want in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank % torch.cuda.device_count()}"
    return "cpu"


def native_bfloat16(device: str | torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively: a CUDA device that torch says supports
    bfloat16, or a CPU whose flags (Linux /proc/cpuinfo) name avx512_bf16 or amx_bf16. Elsewhere
    bfloat16 is emulated and slower than float32."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return dev.type == "cpu" and _cpu_has_bfloat16()


@functools.lru_cache(maxsize=1)
def _cpu_has_bfloat16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags
