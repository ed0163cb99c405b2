"""The run folder: the one owner of every path of a run, and its setup.

Layout (``RunFolder`` spells every name; nothing else does):
  config.yaml                 the resolved configuration of the run (checked on every re-run)
  plan.json                   the members, their seeds, inputs and outputs, by stage
  mock.h5                     the built-in mock and its truth (when catalogue.path is null)
  prepared.h5                 the prepared sample (cuts, heliocentric Cartesian stars, provenance)
  samples/<member>.h5         re-prepared samples with added noise (obs_noise members)
  df/<member>.h5              DF members            cache/best_fit.h5, cache/<member>.h5  gradient caches
  potential/<member>.h5       potential members     logs/<kind>-<member>.log  one log per member
  logs/slurm/                 Slurm output          slurm/  the generated batch scripts
  .claims/                    the MPI driver's member claims (removed when a run ends)
  .lock                       held by the launcher (`run`, `setup`) while it works: host, pid, start time
  summary.json, summary.h5    per-pipeline statistics, best estimate, combined uncertainty, truth;
                              summary.h5 also the best-estimate fields on two map planes
  report/index.html, report/<figure>.png   the report (``dpot-hpc report``; figures in REPORT_FIGURES)
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import yaml

from ..config import Config, ConfigError, config_from_dict, parse_yaml
from ..errors import DpotError, write_failure
from .h5io import atomic_write_text, leftover_writer
from .provenance import MOCK_SETTINGS, PREPARED_SETTINGS, ProvenanceError, config_differences, same_content, verify
from .mockfile import MockTruth, read_truth, write_mock
from .prepare import prepare_sample

#: The report's figures, report/<name>.png, in the order index.html shows them.
REPORT_FIGURES = ("scalars", "df_check", "maps", "residuals", "learning_curves")


class RunFolderError(DpotError, RuntimeError):
    """The run folder was made with an incompatible configuration, is in use, or is not set up."""


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run, its mock truth, and ``setup``.

    root: the folder (``run.dir``). catalogue_path: the configured catalogue, or None for the
    built-in mock, which lives in the folder as mock.h5.
    """

    root: Path
    catalogue_path: Path | None = None

    @classmethod
    def of(cls, cfg: Config) -> RunFolder:
        """The run folder a configuration describes (nothing is created)."""
        path = cfg.catalogue.path
        return cls(Path(cfg.run.dir), Path(path) if path is not None else None)

    @classmethod
    def open(cls, root: str | Path) -> tuple[RunFolder, Config]:
        """An existing run folder and the configuration in its config.yaml, with run.dir = root (so
        a folder copied from elsewhere, e.g. a cluster, works where it is now)."""
        path = cls(Path(root)).config
        if not path.is_file():
            raise RunFolderError(f"{root} is not a run folder: {path} does not exist")
        try:
            data = parse_yaml(path.read_text(), str(path)) or {}
            data.setdefault("run", {})["dir"] = str(root)
            cfg = config_from_dict(data)
        except (ConfigError, yaml.YAMLError) as exc:
            raise RunFolderError(f"{path} was written by another version of dpot-hpc ({exc})") from None
        return cls.of(cfg), cfg

    # --- paths -----------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def mock(self) -> Path:
        return self.root / "mock.h5"

    @property
    def catalogue(self) -> Path:
        """The input catalogue: the configured file, or the built-in mock."""
        return self.catalogue_path if self.catalogue_path is not None else self.mock

    @property
    def prepared(self) -> Path:
        return self.root / "prepared.h5"

    def sample(self, member_id: str) -> Path:
        """A member's own re-prepared sample (obs_noise)."""
        return self.root / "samples" / f"{member_id}.h5"

    def member(self, kind: str, member_id: str) -> Path:
        """The output file of a member of kind 'df', 'cache' or 'potential'."""
        return self.root / kind / f"{member_id}.h5"

    def member_files(self, kind: str) -> list[Path]:
        """Every file of that member kind present in the folder, sorted by name."""
        return sorted((self.root / kind).glob("*.h5"))

    def log(self, kind: str, member_id: str) -> Path:
        return self.root / "logs" / f"{kind}-{member_id}.log"

    @property
    def slurm_scripts(self) -> Path:
        return self.root / "slurm"

    @property
    def slurm_logs(self) -> Path:
        return self.root / "logs" / "slurm"

    @property
    def claims(self) -> Path:
        return self.root / ".claims"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_h5(self) -> Path:
        return self.root / "summary.h5"

    @property
    def report(self) -> Path:
        """The report's folder."""
        return self.root / "report"

    @property
    def report_index(self) -> Path:
        return self.report / "index.html"

    def report_figure(self, name: str) -> Path:
        """One of the report's PNG figures (``name`` in REPORT_FIGURES)."""
        if name not in REPORT_FIGURES:
            raise KeyError(f"unknown report figure {name!r} (known: {', '.join(REPORT_FIGURES)})")
        return self.report / f"{name}.png"

    def relative(self, path: Path) -> str:
        """A path of the folder as written in plan.json (relative to the folder)."""
        return str(path.relative_to(self.root))

    # --- content ---------------------------------------------------------------------------------
    def truth(self) -> MockTruth | None:
        """The mock's truth when the catalogue is a mock file (built-in or written by `dpot-hpc mock`)."""
        cat = self.catalogue
        return read_truth(cat) if cat.is_file() and h5py.is_hdf5(cat) else None

    def check_config(self, cfg: Config) -> None:
        """Refuse a folder made with an incompatible configuration (or by another version)."""
        if not self.config.exists():
            return
        try:
            old = config_from_dict(parse_yaml(self.config.read_text(encoding="utf-8"), str(self.config)) or {})
        except (ConfigError, yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
            raise RunFolderError(f"{self.config} is unreadable or was written by another version of dpot-hpc "
                                 f"({exc}); use a new run.dir, or repair the file") from None
        diffs = config_differences(old.to_dict(), cfg.to_dict())
        if diffs:
            raise RunFolderError(
                f"run folder {self.root} was made with another configuration; use a new run.dir or the old "
                "settings. Differences:\n  " + "\n  ".join(diffs)
            )

    def write_config(self, cfg: Config) -> None:
        """Create the folder with its config.yaml, or check that an existing one is compatible."""
        self.check_config(cfg)
        if not self.config.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def setup(self, cfg: Config, log) -> None:
        """Check the folder's configuration and the catalogue, draw the built-in mock and prepare the
        sample (each once, each checked when reused), and only then write config.yaml: a setup that
        fails on bad input leaves nothing that would refuse the corrected configuration.
        Call it while holding the lock (``acquire``)."""
        self.check_config(cfg)
        if self.catalogue_path is not None and not self.catalogue_path.is_file():
            raise RunFolderError(f"catalogue {self.catalogue_path} does not exist (catalogue.path)")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.root, exc) from None
        self.remove_leftovers(log)
        if self.catalogue_path is None:
            if self.mock.exists():
                verify(self.mock, cfg, "built-in mock", MOCK_SETTINGS)
            else:
                write_mock(self.mock, cfg, log=log)
        if self.prepared.exists():
            self.check_prepared(cfg)
        else:
            prepare_sample(cfg, self.catalogue, self.prepared, log=log)
        self.write_config(cfg)

    def check_prepared(self, cfg: Config, path: Path | None = None, **identity) -> None:
        """Refuse a prepared sample made from other settings or from a catalogue that has changed since."""
        path = path or self.prepared
        attrs = verify(path, cfg, "prepared sample", PREPARED_SETTINGS, **identity)
        recorded = json.loads(attrs.get("catalogue", "{}"))
        if not same_content(recorded, self.catalogue):
            raise ProvenanceError(
                f"catalogue {self.catalogue} changed since {path} was made from it (sha256 "
                f"{recorded.get('sha256', '?')[:12]}...); move {path} away to prepare the sample again, "
                "or use a new run.dir")

    # --- the launcher's lock -----------------------------------------------------------------------
    def acquire(self, command: str, log=None) -> None:
        """Take the run folder's lock for this launcher, or raise RunFolderError naming the live run
        that holds it. A lock left by a dead process on this host, or by an earlier allocation of this
        same Slurm job (a requeued job), is taken over."""
        me = {"host": socket.gethostname(), "pid": os.getpid(), "command": command,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_failure(self.root, exc) from None
        for _ in range(3):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self.launcher()
                if holder is not None and not _is_stale(holder, me):
                    raise RunFolderError(
                        f"run folder {self.root} is in use by {describe_launcher(holder)}. Wait for it to end; "
                        f"if it is gone (killed, node lost), remove {self.lock_file} and run again.") from None
                if log:
                    log(f"taking over the stale lock of {holder or 'an unreadable lock file'} ({self.lock_file})")
                self.lock_file.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise write_failure(self.lock_file, exc) from None
            with os.fdopen(fd, "w") as fh:
                fh.write(json.dumps(me))
            return
        raise RunFolderError(f"could not take the lock {self.lock_file}: another launcher keeps taking it")

    def release(self) -> None:
        """Give up the lock if this process holds it."""
        holder = self._lock_holder()
        if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
            self.lock_file.unlink(missing_ok=True)

    def launcher(self) -> dict | None:
        """The launcher holding the folder's lock (command, host, pid, started, slurm_job_id) with
        ``alive``: whether its process exists (True or False on this host, None on another host, where
        it cannot be checked); None when no launcher holds it (Slurm array tasks take no lock)."""
        holder = self._lock_holder()
        if holder is None:
            return None
        here = holder.get("host") == socket.gethostname()
        return {**holder, "alive": _alive(int(holder.get("pid", -1))) if here else None}

    def _lock_holder(self) -> dict | None:
        try:
            return json.loads(self.lock_file.read_text())
        except (OSError, ValueError):
            return None

    def remove_leftovers(self, log=None) -> int:
        """Delete temporary files of atomic writes whose writer is gone (this host: its pid is dead;
        another host: older than an hour); return how many."""
        n = 0
        for path in self.root.rglob(".*.tmp-*"):
            writer = leftover_writer(path)
            if writer is None:
                continue
            host, pid = writer
            gone = not _alive(pid) if host == socket.gethostname() else time.time() - path.stat().st_mtime > 3600
            if gone:
                path.unlink(missing_ok=True)
                n += 1
        if n and log:
            log(f"removed {n} temporary file(s) left by killed writers")
        return n

    def require_setup(self) -> None:
        """Raise unless ``setup`` has run (the plan is written last, by the caller of setup)."""
        if not self.plan.exists():
            raise RunFolderError(f"{self.root} is not set up: run `dpot-hpc setup` (or `dpot-hpc run`) first")


def _alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host: a killed process that its parent has not yet
    reaped (a zombie, state Z in /proc/PID/stat; the ranks of a killed MPI job until init collects them)
    counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return process_state(pid) not in ("Z", "X")  # None (no /proc, or it just went): kill's answer stands


def process_state(pid: int) -> str | None:
    """The one-letter state of a process on this host from /proc/PID/stat (R, S, Z, ...); None without it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]  # the field after the command name, which may hold ")"
    except (OSError, IndexError):
        return None


def describe_launcher(holder: dict) -> str:
    """A lock holder in words: "`dpot-hpc run` on host H (pid P, started T[, Slurm job J])"."""
    job = f", Slurm job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    return (f"`dpot-hpc {holder.get('command')}` on host {holder.get('host')} (pid {holder.get('pid')}, "
            f"started {holder.get('started')}{job})")


def _is_stale(holder: dict, me: dict) -> bool:
    """A lock (``RunFolder.launcher``) whose holder is a dead process on this host, or an earlier
    allocation of our Slurm job."""
    if me["slurm_job_id"] and holder.get("slurm_job_id") == me["slurm_job_id"]:
        return True
    if holder.get("host") == me["host"] and holder.get("pid") == me["pid"]:
        return True  # our own, left by an earlier call in this process
    return holder["alive"] is False
