"""The command line: dpot-hpc run | setup | member | summary | report | slurm | plan | prepare | mock |
config | evaluate | selfcheck | bench. Errors a user can act on (``DpotError``) are one line without a
traceback (with -v, after it). Every command takes -q (results, warnings and errors only) and -v."""

from __future__ import annotations

import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .api import load_band, load_potential, read_points
from .bench import e2e_split, run_bench, table
from .cluster.mpi import run as run_driver
from .cluster.cores import usable_cpu_count
from .cluster.launch import relaunch, relaunch_command
from .cluster.mpi import run_one, setup as do_setup
from .cluster.slurm import REQUEUE_EXIT, SlurmOptions, render, submit as do_submit
from .config import ConfigError, load_config, render_default_yaml
from .data.h5io import atomic_h5, atomic_write_text
from .data.mockfile import write_mock
from .data.prepare import prepare_sample
from .data.runfolder import RunFolder
from .ensemble.maps import band_sigma
from .ensemble.plan import STAGES, format_plan, plan_rows
from .ensemble.schedule import format_prediction, load_costs, simulate
from .ensemble.statistics import format_summary
from .ensemble.status import format_status, run_status
from .ensemble.summary import summarize
from .errors import DpotError, DpotWarning
from .models.device import pick_device
from .models.training import Interrupted
from .progress import Verbosity, progress_log
from .report import NOTICE as REPORT_NOTICE
from .report import available as report_available
from .report import write_report
from .selfcheck import environment, run_checks


def _env_rank() -> int:
    """This process's MPI rank as the launcher announces it (0 without a launcher)."""
    for key in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """dpot-hpc's own warnings as one line on rank 0; Python's format for everything else."""
    if issubclass(category, DpotWarning):
        if _env_rank() == 0:
            click.echo(f"dpot-hpc: warning: {message}", err=True)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


class _Main(click.Group):
    """The command group: DpotErrors become one 'Error: ...' line and exit status 1 (with -v, after
    their traceback)."""

    def invoke(self, ctx):
        warnings.showwarning = _show_warning
        try:
            return super().invoke(ctx)
        except DpotError as exc:
            if ctx.meta.get(VERBOSITY_KEY) == Verbosity.VERBOSE:
                traceback.print_exc()
            raise click.ClickException(f"config: {exc}" if isinstance(exc, ConfigError) else str(exc)) from None


config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML configuration (see `dpot-hpc config`); defaults apply to every key it leaves out.",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help="Override one setting, e.g. --set ensemble.df_seed=8 (repeatable).",
)


def verbosity_options(f):
    """-q/--quiet and -v/--verbose (every command has both)."""
    f = click.option("--verbose", "-v", is_flag=True,
                     help="More on the terminal: every MPI rank's training lines, and the traceback of an error.")(f)
    return click.option("--quiet", "-q", is_flag=True,
                        help="Only warnings, errors and results on the terminal (member logs are still written).")(f)


def _auto_report(run_dir, verbosity: Verbosity) -> None:
    """The report at the end of `run` and `summary`: a one-line notice without matplotlib, and a line
    (not a failure: the run itself succeeded) if it fails."""
    if not report_available():
        click.echo(f"dpot-hpc: {REPORT_NOTICE}", err=True)
        return
    try:
        write_report(run_dir, log=progress_log(verbosity))
    except Exception as exc:  # noqa: BLE001 - reported, and `dpot-hpc report` shows the traceback
        click.echo(f"dpot-hpc: report failed ({type(exc).__name__}: {exc}); `dpot-hpc report {run_dir}` retries it",
                   err=True)


#: Where the command's verbosity is kept for the group (click's context meta, shared by the tree).
VERBOSITY_KEY = "dpot_hpc.verbosity"


def _verbosity(quiet: bool, verbose: bool) -> Verbosity:
    """The command's verbosity from -q/-v (remembered for the group's error handling)."""
    if quiet and verbose:
        raise click.UsageError("--quiet and --verbose exclude each other")
    v = Verbosity.QUIET if quiet else Verbosity.VERBOSE if verbose else Verbosity.NORMAL
    click.get_current_context().meta[VERBOSITY_KEY] = v
    return v


def _err(msg: str) -> None:
    click.echo(msg, err=True)


@click.group(cls=_Main, context_settings={"max_content_width": 100, "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="dpot-hpc")
def main():
    """Deep Potential: the local Galactic potential, pattern speed, density and accelerations
    from the 6-D phase-space distribution of stars (docs/method.md)."""


@main.command(short_help="The whole job: mock, sample, flows, caches, potentials, summary.")
@config_option
@set_option
@verbosity_options
def run(config_path, overrides, quiet, verbose):
    """The whole job: mock (if needed), prepared sample, DF members, gradient caches, potential
    members, summary. Under mpiexec/srun the members are shared out across the ranks."""
    v = _verbosity(quiet, verbose)  # first: -v shows the traceback of a bad configuration too
    cfg = load_config(config_path, overrides)
    command = relaunch_command(cfg, sys.argv[1:])
    if command is not None:
        relaunch(command)
    summary = run_driver(cfg, verbosity=v)
    if summary is None:  # ranks other than 0
        return
    click.echo("\n" + format_summary(summary))
    folder = RunFolder.of(cfg)
    click.echo(f"\nwritten: {folder.summary_json}, {folder.summary_h5}")
    _auto_report(folder.root, v)


@main.command(short_help="Set up the run folder: config, mock, prepared sample, plan.")
@config_option
@set_option
@verbosity_options
def setup(config_path, overrides, quiet, verbose):
    """Prepare the run folder: config check, mock (if needed), prepared sample, plan.json."""
    v = _verbosity(quiet, verbose)
    cfg = load_config(config_path, overrides)
    folder, n = do_setup(cfg, verbosity=v)
    click.echo(f"{folder.root}: set up, {n} members, catalogue {folder.catalogue}")


@main.command(short_help="Run one member of a set-up run folder (a Slurm array task).")
@config_option
@set_option
@click.option("--stage", required=True, type=click.Choice(STAGES), help="Stage of the member.")
@click.option("--index", required=True, type=int, help="Index of the member within its stage (plan order).")
@verbosity_options
def member(config_path, overrides, stage, index, quiet, verbose):
    """Run one member of a set-up run folder (e.g. a Slurm array task); resumes or skips as needed."""
    v = _verbosity(quiet, verbose)
    cfg = load_config(config_path, overrides)
    try:
        run_one(cfg, stage, index, verbosity=v)
    except Interrupted as exc:
        _err(f"dpot-hpc: {stage} member {index}: {exc}")
        sys.exit(REQUEUE_EXIT)


@main.command(short_help="Write summary.json/h5 from the finished potential members.")
@config_option
@set_option
@verbosity_options
def summary(config_path, overrides, quiet, verbose):
    """Write summary.json/summary.h5 from the finished potential members, print the table and write the
    report (report/, with the plots extra). Trains nothing: a folder whose members are not finished is an
    error."""
    v = _verbosity(quiet, verbose)
    cfg = load_config(config_path, overrides)
    s = summarize(cfg, RunFolder.of(cfg))
    click.echo(format_summary(s))
    _auto_report(RunFolder.of(cfg).root, v)


@main.command(short_help="Write the figures and index.html of a finished run folder.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@verbosity_options
def report(run_dir, quiet, verbose):
    """Write the figures and index.html of a finished run folder to RUN_DIR/report/ (needs the plots
    extra: matplotlib). Works on a run folder copied from elsewhere."""
    v = _verbosity(quiet, verbose)
    if not report_available():
        click.echo(f"dpot-hpc: {REPORT_NOTICE}")
        return
    click.echo(f"report: {write_report(run_dir, log=progress_log(v))}")


@main.command(short_help="Show how far a run folder has got: members done, training, waiting.")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON (for scripts).")
@verbosity_options
def status(run_dir, as_json, quiet, verbose):
    """Show how far the run in RUN_DIR has got: per stage the members done, training and waiting; for
    each training member its epoch or step, its speed, the time left and how long ago its log last
    moved; whether the summary and the calibration runs are written. Reads the folder only: safe
    while the run trains (docs/outputs.md, 'Progress of a run')."""
    _verbosity(quiet, verbose)
    folder, cfg = RunFolder.open(run_dir)
    st = run_status(folder, cfg)
    click.echo(json.dumps(st.to_dict(), indent=1) if as_json else format_status(st))


@main.command(short_help="Render (and --submit) the Slurm job-array chain.")
@config_option
@set_option
@click.option("--account", default=None, help="Slurm account (--account).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_", default="04:00:00", show_default=True,
              help="Time limit per task ([D-]HH:MM:SS, MM:SS or minutes).")
@click.option("--cpus-per-task", default=8, show_default=True, type=click.IntRange(1), help="CPU cores per task.")
@click.option("--gpus-per-task", default=0, show_default=True, type=click.IntRange(0), help="GPUs per task.")
@click.option("--mem", default=None, help="Memory per task (e.g. 32G).")
@click.option("--max-parallel", default=None, type=click.IntRange(1), help="At most K array tasks at once (--array=...%K).")
@click.option("--container", default=None, help="Apptainer image: run each task as `apptainer exec --nv IMAGE dpot-hpc`.")
@click.option("--bind", "binds", multiple=True, help="Apptainer bind mount (repeatable), e.g. /scratch/data.")
@click.option("--signal-margin", default=300, show_default=True, type=click.IntRange(10),
              help="Seconds before the time limit at which a task checkpoints and requeues itself.")
@click.option("--submit", is_flag=True, help="Submit the chain with sbatch and print the job ids.")
@verbosity_options
def slurm(config_path, overrides, account, partition, time_, cpus_per_task, gpus_per_task, mem, max_parallel,
          container, binds, signal_margin, submit, quiet, verbose):
    """Render (and --submit) the job-array chain: setup -> df -> cache -> potential -> summary.
    Tasks that reach their time limit checkpoint and requeue themselves."""
    _verbosity(quiet, verbose)
    cfg = load_config(config_path, overrides)
    RunFolder.of(cfg).write_config(cfg)
    opts = SlurmOptions(account, partition, time_, cpus_per_task, gpus_per_task, mem, max_parallel,
                        container, tuple(binds), signal_margin)
    scripts = render(cfg, opts)
    for name, path in scripts:
        click.echo(f"{name:10s} {path}")
    if submit:
        for name, jid in do_submit(scripts):
            click.echo(f"submitted {name:10s} job {jid}")


@main.command(short_help="Print the ensemble plan and predicted wall times.")
@config_option
@set_option
@click.option("--ranks", type=click.IntRange(1), multiple=True, help="Predict the wall time on this many ranks (repeatable).")
@click.option("--stars", type=click.IntRange(1), default=None, help="Stars in the prepared sample (default: the mock's n_stars).")
@click.option("--costs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON of seconds per member on one rank for the reference sizes: df, cache, cache_per_flow, potential.")
@verbosity_options
def plan(config_path, overrides, ranks, stars, costs, quiet, verbose):
    """Print the ensemble plan (members, seeds, inputs, outputs by stage) and predicted wall times."""
    _verbosity(quiet, verbose)
    cfg = load_config(config_path, overrides)
    click.echo(format_plan(plan_rows(cfg, RunFolder.of(cfg))))
    table = load_costs(costs)
    for n in ranks:
        click.echo("")
        click.echo(format_prediction(simulate(cfg, n, stars or cfg.mock.n_stars, table), n))


@main.command(short_help="Apply the cuts to the catalogue and write the prepared sample.")
@config_option
@set_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run.dir>/prepared.h5).")
@click.option("--noise-seed", type=int, default=None,
              help="Add Gaussian noise from the quoted errors to the observables (gaia format), from this seed.")
@verbosity_options
def prepare(config_path, overrides, out, noise_seed, quiet, verbose):
    """Read the catalogue, apply the cuts and write the prepared sample (the DF stage's input)."""
    log = progress_log(_verbosity(quiet, verbose), "")
    cfg = load_config(config_path, overrides)
    folder = RunFolder.of(cfg)
    path = Path(out) if out else folder.prepared
    if path.exists():
        raise click.ClickException(f"{path} exists; remove it or choose another --out")
    if folder.catalogue_path is None and not folder.mock.exists():
        write_mock(folder.mock, cfg, log=log)
    prepare_sample(cfg, folder.catalogue, path, noise_seed, log=log)


@main.command(short_help="Write the built-in mock catalogue (stars and truth) to HDF5.")
@config_option
@set_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run.dir>/mock.h5).")
@verbosity_options
def mock(config_path, overrides, out, quiet, verbose):
    """Write the built-in mock catalogue (stars, Gaia-like observables and truth) to HDF5."""
    log = progress_log(_verbosity(quiet, verbose), "")
    cfg = load_config(config_path, overrides)
    path = Path(out) if out else RunFolder.of(cfg).mock
    if path.exists():
        raise click.ClickException(f"{path} exists; remove it or choose another --out")
    write_mock(path, cfg, log=log)


@main.command(short_help="Write the documented default configuration (run.yaml).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default="run.yaml", show_default=True,
              help="Where to write it ('-' for the terminal).")
@verbosity_options
def config(out, quiet, verbose):
    """Write the documented default configuration: every key with its unit, range and meaning.
    Edit it and pass it with -c to the other commands."""
    _verbosity(quiet, verbose)
    text = render_default_yaml()
    if out == "-":
        click.echo(text, nl=False)
        return
    if Path(out).exists():
        raise click.ClickException(f"{out} exists; remove it or choose another --out")
    atomic_write_text(out, text)
    click.echo(f"wrote {out}")


@main.command(short_help="Evaluate Phi, a and rho (median, 16-84 band, sigma) at given points.")
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--points", "points", required=True, type=click.Path(dir_okay=False),
              help="HDF5 (dataset x (N,3) or x, y, z) or text file of heliocentric positions in kpc.")
@click.option("--members", default="best", show_default=True,
              help="Which potential members: best (the summary's best estimate), all, a pipeline name, "
                   "or comma-separated member ids.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: <points>.potential.h5).")
@verbosity_options
def evaluate(run_dir, points, members, out, quiet, verbose):
    """Evaluate Phi (zero at the Sun), a and rho of a trained run (or one member file) at given
    points: the median over the members and their 16th and 84th percentiles; for the best estimate of
    a run also its standard deviation (*_sigma: the DF term of the summary's band, from the members
    with their own flow)."""
    _verbosity(quiet, verbose)
    pts = read_points(points)
    chosen = members if members in ("best", "all") or "," not in members else members.split(",")
    pot = load_potential(run_dir, chosen)
    fields = pot.evaluate(pts)
    band = load_band(run_dir) if members == "best" else None  # None for a member file or a folder without config
    sigma = {k: band_sigma(v, band[1]) for k, v in band[0].evaluate(pts).items()} if band else {}
    out = Path(out) if out else Path(str(points) + ".potential.h5")
    units = {"phi": "(km/s)^2", "accel": "km/s/Myr", "rho": "Msun/pc^3"}
    with atomic_h5(out) as f:
        f.create_dataset("x", data=pts).attrs["unit"] = "kpc"
        for k, unit in units.items():
            p16, p50, p84 = np.percentile(fields[k], [16, 50, 84], axis=0)
            for name, data in ((k, np.median(fields[k], axis=0)), (f"{k}_p16", p16), (f"{k}_p84", p84),
                               (f"members/{k}", fields[k])):
                f.create_dataset(name, data=data).attrs["unit"] = unit
            if sigma:
                f.create_dataset(f"{k}_sigma", data=sigma[k]).attrs["unit"] = unit
        if band:
            f.attrs["band_members"] = ",".join(band[0].ids)
        f.attrs["members"] = ",".join(pot.ids)
        f.attrs["omega_p_kms_kpc"] = pot.omega_p.value
        f.attrs["axes"] = "heliocentric Galactic Cartesian (x towards the Galactic centre); phi is 0 at the Sun"
    click.echo(f"wrote {out} ({len(pts)} points, {len(pot.ids)} members: {', '.join(pot.ids)})")


@main.command(short_help="Measure every stage's throughput on this device (JSON + table).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to measure (auto: the GPU when torch sees one).")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="torch CPU threads (0: every CPU this process may run on).")
@click.option("--quick", is_flag=True, help="Fewer steps and a smaller 4x512 batch (seconds instead of minutes).")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False), default=None,
              help="A finished run folder whose wall time per stage to include (e.g. the default run).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="benchmarks/results", show_default=True,
              help="Folder for bench_<device>.json and bench_<device>.md.")
@verbosity_options
def bench(device, threads, quick, run_dir, out_dir, quiet, verbose):
    """Throughput of DF training, the gradient cache and potential training (default sizes and the
    reference implementation's), the potential step's FLOP rate against this device's measured fp32
    matmul rate, and peak memory per stage (docs/benchmarks.md)."""
    dev = pick_device(device, key="--device")
    res = run_bench(dev, threads or usable_cpu_count(), quick, log=progress_log(_verbosity(quiet, verbose), ""))
    if run_dir:
        res["e2e_split_s"] = e2e_split(Path(run_dir))
    name = "cpu" if dev == "cpu" else "cuda"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"bench_{name}.json", json.dumps(res, indent=2) + "\n")
    atomic_write_text(out / f"bench_{name}.md", table(res) + "\n")
    click.echo(table(res))
    click.echo(f"wrote {out / f'bench_{name}.json'}")


@main.command(short_help="Check this installation in seconds (versions, devices, numerics).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to run the numerical checks (auto: the GPU when torch sees one).")
@verbosity_options
def selfcheck(device, quiet, verbose):
    """Quick check of this installation (seconds; ~25 s the first time): versions, devices, MPI library,
    and the exact-mock CBE residual, the Laplacian, a short flow fit, HDF5 checkpoints and whether the
    potential's loss compiles (torch.compile), on DEVICE. Exit status 1 if any fails."""
    v = _verbosity(quiet, verbose)
    dev = pick_device(device, key="--device")
    if v != Verbosity.QUIET:  # the versions and devices: context, not the result
        for line in environment():
            click.echo(line)
    checks = run_checks(dev)
    for c in checks:
        click.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name:<10} {dev:<6} {c.seconds:5.1f} s  {c.detail}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise click.ClickException(f"self-check failed: {', '.join(failed)}")
    click.echo("self-check passed")


if __name__ == "__main__":
    sys.exit(main())
