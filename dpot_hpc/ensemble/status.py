"""How far a run folder has got (``dpot-hpc status``): every member of the plan done, training (how far,
how fast, when it last wrote) or waiting; per stage the counts; whether the summary and the calibration
runs are written. It only reads the folder (member files are replaced atomically), so it is safe on any
node that sees the folder while the run trains there.

A member is 'training' while its file holds a checkpoint: it is running now, or its run was stopped and
resumes from that checkpoint when run again. The launcher's lock tells the two apart when a `dpot-hpc run`
on this host left it behind (its process is gone); otherwise the age of the member log's last line does
(``looks_stopped``).
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import h5py

from ..config import Config
from ..data.h5io import load_tree
from ..data.runfolder import RunFolder, describe_launcher
from ..progress import format_duration
from .calibration import calibration_ids, finished_calibrations
from .members import MemberFileError, status as member_file_status
from .plan import MemberSpec, stages

#: A progress line of a member log: "<date> <time> epoch 12/30 ..." or "... step 500/1500 ...".
PROGRESS_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (epoch|step) (\d+)/(\d+)\b")
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"
STATES = ("done", "training", "waiting")
#: A training member looks stopped when its log has not moved for this many times its time per epoch or
#: step, and for at least STOPPED_MIN_S seconds (the only bound before its rate is measured).
STOPPED_FACTOR, STOPPED_MIN_S = 10.0, 600.0


@dataclass(frozen=True)
class MemberStatus:
    """One member: stage, id, state ('done', 'training' or 'waiting'); for a training member the
    checkpoint's epoch (df) or step (potential) of how many (``done_units`` of ``total_units``, ``unit``),
    the seconds per unit between its last two progress lines in the log (None before two), and the
    seconds since its log was last written (``idle_s``; None without a log); its log, relative to the
    run folder; ``launcher_gone``: the `dpot-hpc run` holding the folder's lock has no process any more."""

    stage: str
    id: str
    state: str
    unit: str | None = None
    done_units: int | None = None
    total_units: int | None = None
    seconds_per_unit: float | None = None
    idle_s: float | None = None
    log: str | None = None
    launcher_gone: bool = False

    @property
    def seconds_left(self) -> float | None:
        """Training time left at the measured rate, seconds (None when not measured)."""
        if self.seconds_per_unit is None or self.done_units is None or self.total_units is None:
            return None
        return max(self.total_units - self.done_units, 0) * self.seconds_per_unit

    @property
    def looks_stopped(self) -> bool:
        """Training, and its launcher gone, or its log still for STOPPED_FACTOR times its time per unit and
        at least STOPPED_MIN_S: its process has most likely ended (killed, out of time) without finishing."""
        if self.state != "training":
            return False
        if self.launcher_gone:
            return True
        if self.idle_s is None:
            return False
        return self.idle_s > max(STOPPED_FACTOR * (self.seconds_per_unit or 0.0), STOPPED_MIN_S)


def _checkpoint_position(path: Path, unit: str) -> int:
    """The epoch or step of a training member file's checkpoint."""
    try:
        with h5py.File(path, "r") as f:
            return int(load_tree(f["checkpoint/s:state"])[unit])
    except (OSError, KeyError) as exc:
        raise MemberFileError(f"checkpoint in {path} is unreadable ({exc}); move the file away to recompute") from None


def _log_rate(log: Path) -> float | None:
    """Seconds per epoch or step between the log's last two progress lines of one process (no 'resumed'
    line between them), or None."""
    last: list[tuple[datetime, int]] = []
    for line in log.read_text(errors="replace").splitlines():
        if " resumed at " in line:
            last = []
        m = PROGRESS_LINE.match(line)
        if m:
            last = [*last[-1:], (datetime.strptime(m.group(1), LOG_TIME_FORMAT), int(m.group(3)))]
    if len(last) < 2 or last[1][1] <= last[0][1]:
        return None
    return (last[1][0] - last[0][0]).total_seconds() / (last[1][1] - last[0][1])


def member_status(spec: MemberSpec, stage: str, cfg: Config, folder: RunFolder, now: float,
                  launcher_gone: bool = False) -> MemberStatus:
    """What the run folder says about one member (``now``: the time.time() to measure idleness from;
    ``launcher_gone``: the launcher holding the folder is known to have ended)."""
    path, log = spec.path(folder), spec.log_path(folder)
    idle = now - log.stat().st_mtime if log.is_file() else None
    base = dict(stage=stage, id=spec.id, idle_s=idle, log=folder.relative(log) if log.is_file() else None,
                launcher_gone=launcher_gone)
    if spec.kind == "cache":  # written once, at its end
        return MemberStatus(state="done" if path.is_file() else "training" if log.is_file() else "waiting", **base)
    unit, total = ("epoch", cfg.df.max_epochs) if spec.kind == "df" else ("step", cfg.potential.steps)
    if not path.is_file():  # started (its log is there) but not yet at its first checkpoint, or not started
        return MemberStatus(state="training", unit=unit, done_units=0, total_units=total, **base) \
            if log.is_file() else MemberStatus(state="waiting", **base)
    if member_file_status(path) == "done":
        return MemberStatus(state="done", **base)
    return MemberStatus(state="training", unit=unit, done_units=_checkpoint_position(path, unit), total_units=total,
                        seconds_per_unit=_log_rate(log) if log.is_file() else None, **base)


@dataclass(frozen=True)
class RunStatus:
    """A run folder's progress: every member's status in plan order, whether summary.json is written,
    and the calibration runs (names of those with a summary, of how many requested); the launcher
    holding the folder's lock (``RunFolder.launcher``; None when none does)."""

    root: str
    members: list[MemberStatus]
    summary_written: bool
    calibration_done: list[str]
    calibration_requested: int
    launcher: dict | None = None

    def counts(self) -> dict[str, dict[str, int]]:
        """{stage: {state: members}} in plan order."""
        out: dict[str, dict[str, int]] = {}
        for m in self.members:
            out.setdefault(m.stage, dict.fromkeys(STATES, 0))[m.state] += 1
        return out

    def to_dict(self) -> dict:
        return {"run_dir": self.root, "stages": self.counts(), "summary_written": self.summary_written,
                "calibration": {"finished": self.calibration_done, "requested": self.calibration_requested},
                "launcher": self.launcher,
                "members": [{**asdict(m), "seconds_left": m.seconds_left, "looks_stopped": m.looks_stopped}
                            for m in self.members]}


def run_status(folder: RunFolder, cfg: Config, now: float | None = None) -> RunStatus:
    """The progress of a set-up run folder, read from its files (``now``: time.time() by default)."""
    now = time.time() if now is None else now
    launcher = folder.launcher()
    gone = launcher is not None and launcher["alive"] is False
    members = [member_status(s, stage, cfg, folder, now, gone) for stage, specs in stages(cfg) for s in specs]
    return RunStatus(str(folder.root), members, folder.summary_json.is_file(),
                     sorted(finished_calibrations(cfg, folder)), len(calibration_ids(cfg)), launcher)


def format_launcher(launcher: dict | None) -> str:
    """The launcher line: who holds the folder and whether its process is still there."""
    if launcher is None:
        return "no `dpot-hpc run` holds the folder (Slurm array tasks take no lock)"
    alive = {True: "running", False: "gone: running the job again resumes it",
             None: "on another host, not checked"}[launcher["alive"]]
    return f"{describe_launcher(launcher)}: {alive}"


def format_status(st: RunStatus) -> str:
    """The status as the terminal shows it: a line per stage, one per training member, the summary."""
    lines = [f"run folder {st.root}", f"{'launcher':10s} {format_launcher(st.launcher)}"]
    for stage, counts in st.counts().items():
        lines.append(f"{stage:10s} {counts['done']} done, {counts['training']} training, {counts['waiting']} waiting")
        for m in (m for m in st.members if m.stage == stage and m.state == "training"):
            where = f"{m.unit} {m.done_units}/{m.total_units}" if m.unit else "drawing points"
            rate = (f", {m.seconds_per_unit:.2g} s/{m.unit}, about {format_duration(m.seconds_left)} left"
                    if m.seconds_left is not None else "")
            idle = f"; last log line {format_duration(m.idle_s)} ago" if m.idle_s is not None else ""
            stopped = (": stopped (its launcher is gone)" if m.launcher_gone else
                       ": stopped? running the job again resumes it" if m.looks_stopped else "")
            lines.append(f"  {m.id:22s} {where}{rate}{idle}{stopped} ({m.log})")
    lines.append(f"{'summary':10s} {'written' if st.summary_written else 'not written'}")
    if st.calibration_requested:
        lines.append(f"{'calibration':10s} {len(st.calibration_done)} of {st.calibration_requested} runs finished")
    return "\n".join(lines)
