"""HDF5 files for members: nested state (state_dicts, optimizer and RNG states) and atomic writes.

``save_tree``/``load_tree`` store nested dicts, lists, tensors, arrays and scalars losslessly in an
HDF5 group (tensors keep their torch dtype). ``atomic_h5`` writes a file under a temporary name
and renames it into place, so a killed process never leaves a half-written member file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
from pathlib import Path

import h5py
import numpy as np
import torch

from ..errors import write_failure


def _enc_key(k) -> str:
    if isinstance(k, bool) or not isinstance(k, (int, str)):
        raise TypeError(f"cannot store key {k!r}")
    return f"i:{k}" if isinstance(k, int) else f"s:{k}"


def _dec_key(s: str):
    return int(s[2:]) if s.startswith("i:") else s[2:]


def save_tree(group: h5py.Group, obj) -> None:
    """Store a nested dict/list/tuple of tensors, arrays and JSON scalars into ``group``."""
    if isinstance(obj, dict):
        group.attrs["__kind__"] = "dict"
        items = [(_enc_key(k), v) for k, v in obj.items()]
    elif isinstance(obj, (list, tuple)):
        group.attrs["__kind__"] = "tuple" if isinstance(obj, tuple) else "list"
        group.attrs["__len__"] = len(obj)
        items = [(f"i:{i}", v) for i, v in enumerate(obj)]
    else:
        raise TypeError(f"save_tree needs a dict, list or tuple, got {type(obj)}")
    for name, v in items:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu()
            arr = t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()
            ds = group.create_dataset(name, data=arr)
            ds.attrs["torch_dtype"] = str(t.dtype).replace("torch.", "")
        elif isinstance(v, np.ndarray):
            group.create_dataset(name, data=v)
        elif isinstance(v, (dict, list, tuple)):
            save_tree(group.create_group(name), v)
        else:
            if isinstance(v, (np.integer, np.floating)):
                v = v.item()
            group.attrs["=" + name] = json.dumps(v)


def load_tree(group: h5py.Group):
    """Inverse of save_tree."""
    kind = group.attrs.get("__kind__", "dict")
    out = {}
    for name, item in group.items():
        if isinstance(item, h5py.Dataset):
            arr = item[()]
            if "torch_dtype" in item.attrs:
                dt = getattr(torch, item.attrs["torch_dtype"])
                t = torch.from_numpy(np.array(arr))
                out[_dec_key(name)] = t.view(torch.bfloat16) if dt == torch.bfloat16 else t.to(dt)
            else:
                out[_dec_key(name)] = arr
        else:
            out[_dec_key(name)] = load_tree(item)
    for aname, aval in group.attrs.items():
        if aname.startswith("="):
            out[_dec_key(aname[1:])] = json.loads(aval)
    if kind in ("list", "tuple"):
        seq = [out[i] for i in range(int(group.attrs["__len__"]))]
        return tuple(seq) if kind == "tuple" else seq
    return out


def temp_name(path: Path) -> Path:
    """The temporary name a file is written under before it is renamed into place:
    .<name>.tmp-<host>-<pid>, so a leftover one can be traced to its (killed) writer."""
    return path.with_name(f".{path.name}.tmp-{socket.gethostname()}-{os.getpid()}")


def leftover_writer(path: Path) -> tuple[str, int] | None:
    """(host, pid) of the writer of a temporary file named by ``temp_name``; None for other files."""
    m = re.fullmatch(r"\..+\.tmp-(.+)-(\d+)", path.name)
    return (m.group(1), int(m.group(2))) if m else None


@contextlib.contextmanager
def atomic_h5(path: str | Path):
    """Build an HDF5 file in memory, then write it to a temporary name, fsync and rename it onto
    ``path``: a killed process never leaves a half-written file, and a failed write (disk full,
    read-only folder) is one OutputError naming ``path`` (HDF5 itself never sees the failing disk)."""
    path = Path(path)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        yield f
    _write_atomically(path, buf.getbuffer())


def _write_atomically(path: Path, data) -> None:
    """Write bytes to a temporary file next to ``path``, fsync, rename; OutputError if that fails."""
    tmp = temp_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_failure(path, exc) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically (temporary file, fsync, rename); OutputError if that fails."""
    _write_atomically(Path(path), data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary file, fsync, rename); OutputError if that fails."""
    _write_atomically(Path(path), text.encode("utf-8"))
