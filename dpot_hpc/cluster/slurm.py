"""Slurm job arrays: one array per stage, chained with --dependency=afterok, then a summary job.

``render`` writes the batch scripts into the run folder's slurm/ folder; ``submit`` sends them with
sbatch and returns the job ids. Every array task runs ``dpot-hpc member --stage S --index
$SLURM_ARRAY_TASK_ID``: one member, one output file, so tasks never write the same file, and a
requeued or repeated task resumes (or skips) its member.

Time limits: each script asks Slurm for SIGUSR1 ``signal_margin_s`` seconds before the limit
(``--signal=B:USR1@margin``), forwards it to the member, which checkpoints and exits with status 75;
the script then requeues its own task (``scontrol requeue``), so a member longer than the time limit
finishes over several allocations and the afterok chain still holds.

Every value that reaches a script is checked or quoted: #SBATCH values must match their Slurm form
(no spaces, newlines or shell syntax), command words are quoted with ``shlex.quote``, and paths are
absolute, so a task started from any folder finds the same run folder.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..data.runfolder import RunFolder
from ..errors import DpotError, DpotWarning
from ..ensemble.plan import stages

#: Exit status of a member that checkpointed at the time-limit signal (EX_TEMPFAIL).
REQUEUE_EXIT = 75

_FORMS = {
    "account": (r"[A-Za-z0-9_.+-]+", "letters, digits and _ . + -"),
    "partition": (r"[A-Za-z0-9_.+-]+(,[A-Za-z0-9_.+-]+)*", "partition names separated by commas"),
    "time": (r"(\d+-\d+(:\d+){0,2}|\d+(:\d+){0,2})", "minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]"),
    "mem": (r"\d+[KMGT]?", "a number with an optional K, M, G or T suffix"),
}


class SlurmError(DpotError):
    """A Slurm option is malformed, or sbatch refused a script."""


@dataclass(frozen=True)
class SlurmOptions:
    """Scheduler settings (None = let the cluster's defaults apply)."""

    account: str | None = None
    partition: str | None = None
    time: str = "04:00:00"
    cpus_per_task: int = 8
    gpus_per_task: int = 0
    mem: str | None = None
    max_parallel: int | None = None  # the %K of --array
    container: str | None = None  # Apptainer image: tasks run `apptainer exec --nv [--bind B] IMAGE dpot-hpc`
    binds: tuple[str, ...] = ()
    signal_margin_s: int = 300

    def check(self) -> None:
        """Raise SlurmError naming the first option whose value is not of its Slurm form."""
        for key, (pattern, form) in _FORMS.items():
            value = getattr(self, key)
            if value is not None and not re.fullmatch(pattern, value):
                raise SlurmError(f"--{key} {value!r}: expected {form}")

    def command(self) -> list[str]:
        """The dpot-hpc command words of every task (inside the container if one is given)."""
        if not self.container:
            return ["dpot-hpc"]
        binds = [w for b in self.binds for w in ("--bind", b)]
        return ["apptainer", "exec", "--nv", *binds, str(Path(self.container).absolute()), "dpot-hpc"]


def _sbatch_path(path: Path, what: str) -> str:
    """An absolute path for an #SBATCH line, which takes no quoting: refuse spaces, % and control characters."""
    text = str(path.absolute())
    if re.search(r"[\s%\x00-\x1f\x7f]", text):
        raise SlurmError(f"{what} {text!r}: a path in an #SBATCH line may not contain spaces, '%' or control "
                         "characters; choose a run.dir without them")
    return text


def _header(name: str, opts: SlurmOptions, folder: RunFolder, array: str | None) -> list[str]:
    logs = _sbatch_path(folder.slurm_logs, "run.dir")
    out = f"{logs}/{name}-%A_%a.out" if array is not None else f"{logs}/{name}-%j.out"
    lines = ["#!/bin/bash", f"#SBATCH --job-name=dpot-{name}", f"#SBATCH --time={opts.time}",
             "#SBATCH --ntasks=1", f"#SBATCH --cpus-per-task={opts.cpus_per_task}"]
    if array is not None:
        lines.append(f"#SBATCH --array={array}")
    lines += [f"#SBATCH --output={out}", "#SBATCH --open-mode=append",
              f"#SBATCH --chdir={_sbatch_path(Path.cwd(), 'the current folder')}"]
    if opts.gpus_per_task:
        lines.append(f"#SBATCH --gpus-per-task={opts.gpus_per_task}")
    for key in ("account", "partition", "mem"):
        if getattr(opts, key):
            lines.append(f"#SBATCH --{key}={getattr(opts, key)}")
    lines += [f"#SBATCH --signal=B:USR1@{opts.signal_margin_s}", "#SBATCH --requeue",
              "set -uo pipefail", 'export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"']
    return lines


def _body(words: list[str]) -> str:
    """Run the command in the background, forward the time-limit signal to it, and requeue this task
    when it checkpointed (exit 75) or was stopped by the signal before it could (exit 138)."""
    return "\n".join([
        f"{' '.join(words)} &",
        "child=$!",
        'trap \'kill -USR1 "$child" 2>/dev/null\' USR1',
        'wait "$child"',
        'while kill -0 "$child" 2>/dev/null; do wait "$child"; done  # a trapped signal interrupts wait',
        'wait "$child"; rc=$?',
        f'if [ "$rc" -eq {REQUEUE_EXIT} ] || [ "$rc" -eq 138 ]; then',
        '  task="${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}${SLURM_ARRAY_TASK_ID:+_$SLURM_ARRAY_TASK_ID}"',
        '  echo "dpot-hpc: stopped before the time limit; requeueing $task"',
        '  scontrol requeue "$task"',
        "  sleep 600  # the requeue ends this allocation",
        "fi",
        'exit "$rc"',
    ])


def render(cfg: Config, opts: SlurmOptions) -> list[tuple[str, Path]]:
    """Write the stage scripts; return [(stage, script path)] in submission order."""
    opts.check()
    folder = RunFolder.of(cfg)
    out_dir = folder.slurm_scripts
    out_dir.mkdir(parents=True, exist_ok=True)
    folder.slurm_logs.mkdir(parents=True, exist_ok=True)
    config = ["-c", str(folder.config.absolute()), "--set", f"run.dir={folder.root.absolute()}"]
    scripts = []

    def words(cmd: str, *extra: str) -> list[str]:
        """The task's command line: every word quoted but the shell variables in ``extra``."""
        return [*map(shlex.quote, [*opts.command(), cmd, *config]), *extra]

    def write(order: int, name: str, array: str | None, comment: str, body: list[str]) -> None:
        path = out_dir / f"{order:02d}-{name}.sbatch"
        path.write_text("\n".join([*_header(name, opts, folder, array), f"# {comment}", _body(body), ""]))
        path.chmod(0o755)
        scripts.append((name, path))

    write(0, "setup", None, "run folder, mock (if needed), prepared sample, plan", words("setup"))
    for i, (name, specs) in enumerate(stages(cfg), start=1):
        if not specs:
            continue
        array = f"0-{len(specs) - 1}" + (f"%{opts.max_parallel}" if opts.max_parallel else "")
        write(i, name, array, f"one {name} member per array task",
              words("member", "--stage", name, "--index", '"$SLURM_ARRAY_TASK_ID"'))
    write(9, "summary", None, "gather the potential members' scalars", words("summary"))
    if cfg.calibration.realizations:
        warnings.warn(f"calibration.realizations = {cfg.calibration.realizations}: the calibration runs are not part of "
                      "this job-array chain; after it, `dpot-hpc run` on the same configuration (in one job, under srun "
                      "for several ranks) fits them and adds the systematic term to the summary", DpotWarning, stacklevel=2)
    return scripts


def submit(scripts: list[tuple[str, Path]], sbatch: str = "sbatch") -> list[tuple[str, str]]:
    """Submit the scripts in order, each after the previous one succeeded; [(stage, job id)]."""
    ids: list[tuple[str, str]] = []
    for name, path in scripts:
        dep = ["--dependency=afterok:" + ids[-1][1]] if ids else []
        try:
            proc = subprocess.run([sbatch, "--parsable", *dep, str(path)], capture_output=True, text=True)
        except FileNotFoundError:
            raise SlurmError(f"{sbatch} not found: submit from a machine with Slurm, or submit {path.parent} by hand") from None
        if proc.returncode != 0:
            raise SlurmError(f"sbatch {path} failed: {proc.stderr.strip()}")
        ids.append((name, proc.stdout.strip().split(";")[0]))
    return ids
