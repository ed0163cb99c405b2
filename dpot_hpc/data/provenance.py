"""What a file of a run was made from, stamped into its attributes, and checked before it is reused.

Every HDF5 file a run writes (mock.h5, prepared.h5, samples, member files, caches) carries the run's
configuration (JSON), the dpot-hpc version and its own identity (member id, seed, the catalogue's
fingerprint). ``verify`` refuses a file whose record differs from what this run would have written,
naming the file and the differences: a member file copied in from another run is never used silently.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py

from .._version import __version__
from ..config import Config, ConfigError, config_from_dict
from ..errors import DpotError

#: Config keys that may change between invocations on the same run folder (not part of a file's record;
#: the calibration runs are run folders of their own, so a finished run can gain a systematic term).
RUNTIME_KEYS = {("run", "threads"), ("run", "device"), ("run", "dir"), ("run", "processes"), ("calibration",)}


class ProvenanceError(DpotError):
    """A file exists but was made from other inputs than this run's, by another version, or is unreadable."""


#: The config sections a member file does not depend on, by member kind: flows and gradient caches are
#: made before any potential (and flows before the cache), so the flows and caches of one run, copied
#: into a new run folder, serve a refit of the potential with other potential settings there.
INDEPENDENT_SECTIONS = {"df": {("cache",), ("potential",)}, "cache": {("potential",)}}


def config_differences(a: dict, b: dict, prefix: tuple = (), ignore=frozenset()) -> list[str]:
    """'key.path: A in the folder, B now' for every setting that differs (runtime keys and the key
    paths in ``ignore`` excepted)."""
    out = []
    for k in sorted(set(a) | set(b)):
        path = (*prefix, k)
        if path in RUNTIME_KEYS or path in ignore:
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, path, ignore)
        elif va != vb:
            out.append(f"{'.'.join(path)}: {va!r} in the folder, {vb!r} now")
    return out


#: The settings the shared inputs depend on (member files and caches record the whole configuration).
MOCK_SETTINGS = ("mock", "frame", "catalogue.r_max_kpc", "summary")
PREPARED_SETTINGS = ("catalogue", "cuts", "frame")


def settings(cfg: Config, keys: tuple[str, ...] | None = None) -> dict:
    """The configuration as nested dicts, or only the given sections / dotted keys of it."""
    full = cfg.to_dict()
    if keys is None:
        return full
    out: dict = {}
    for key in keys:
        head, _, tail = key.partition(".")
        if tail:
            out.setdefault(head, {})[tail] = full[head][tail]
        else:
            out[head] = full[head]
    return out


def with_defaults(recorded: dict, keys: tuple[str, ...] | None = None) -> dict:
    """A file's recorded configuration with the settings it lacks at their defaults, as the run folder's
    config.yaml is read: a file written before a setting existed matches a run that leaves it at its
    default. A record this version cannot read is returned as it is (its differences are then named)."""
    try:
        return settings(config_from_dict(recorded), keys)
    except ConfigError:
        return recorded


def stamp(attrs: h5py.AttributeManager, cfg: Config, keys: tuple[str, ...] | None = None, **identity) -> None:
    """Record the run's configuration (all of it, or the ``keys`` the file depends on), the version
    and the file's identity (member_id, seed, ...)."""
    attrs["config"] = json.dumps(settings(cfg, keys))
    attrs["version"] = __version__
    for k, v in identity.items():
        attrs[k] = v


def read_attrs(path: Path) -> dict:
    """All attributes of an HDF5 file; ProvenanceError naming the file if it cannot be read."""
    try:
        with h5py.File(path, "r") as f:
            return dict(f.attrs)
    except (OSError, KeyError) as exc:
        raise ProvenanceError(f"{path} is unreadable ({exc}): it is truncated or corrupt; move it away to "
                              "recompute it") from None


def verify(path: Path, cfg: Config, what: str, keys: tuple[str, ...] | None = None, ignore=frozenset(),
           **identity) -> dict:
    """Check that ``path`` is this run's ``what`` (same configuration, or the same ``keys`` of it, less the
    key paths in ``ignore``; version and identity); return its attrs."""
    attrs = read_attrs(path)
    problems = []
    if attrs.get("version") != __version__:
        problems.append(f"made by dpot-hpc {attrs.get('version', '(unknown)')}, this is {__version__}")
    for k, v in identity.items():
        if k not in attrs or attrs[k] != v:
            problems.append(f"{k} {attrs.get(k, '(none)')!r} in the file, {v!r} for this run")
    if "config" not in attrs:
        problems.append("it holds no record of its configuration")
    else:
        problems += config_differences(with_defaults(json.loads(attrs["config"]), keys), settings(cfg, keys),
                                       ignore=ignore)
    if problems:
        shown = "; ".join(problems[:6]) + ("; ..." if len(problems) > 6 else "")
        raise ProvenanceError(f"{path} is not this run's {what} ({shown}): move it away to recompute it, or use "
                              "the run folder it belongs to")
    return attrs


def file_sha256(path: Path, block: int = 1 << 24) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(path: Path) -> dict:
    """The identity of an input file: absolute path, size, modification time (ns) and SHA-256."""
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
            "sha256": file_sha256(path)}


def same_content(recorded: dict, path: Path) -> bool:
    """Whether ``path`` still has the content ``recorded`` by ``fingerprint`` (size and mtime unchanged,
    or else the same SHA-256)."""
    st = os.stat(path)
    if st.st_size == recorded.get("bytes") and st.st_mtime_ns == recorded.get("mtime_ns"):
        return True
    return st.st_size == recorded.get("bytes") and file_sha256(path) == recorded.get("sha256")
