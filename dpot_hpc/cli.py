"""The command line: dpot-hpc run | plan | prepare | setup | member | summary | report | slurm | mock | evaluate | selfcheck."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from ._version import __version__
from .api import load_potential, read_points
from .cluster.mpi import run as run_driver
from .cluster.mpi import run_one, setup as do_setup
from .cluster.slurm import SlurmOptions, render, submit as do_submit
from .config import ConfigError, load_config
from .data.h5io import atomic_h5
from .data.mockfile import write_mock
from .data.prepare import prepare_sample
from .data.runfolder import RunFolder, RunFolderError
from .data.tables import CatalogueError
from .ensemble.members import MemberFileError
from .ensemble.plan import STAGES, format_plan, plan_rows
from .ensemble.schedule import format_prediction, load_costs, simulate
from .ensemble.statistics import format_pipelines, format_table
from .ensemble.summary import summarize
from .models.device import pick_device
from .report import NOTICE as REPORT_NOTICE
from .report import available as report_available
from .report import write_report
from .selfcheck import environment, run_checks

USER_ERRORS = (ConfigError, CatalogueError, MemberFileError, RunFolderError, FileNotFoundError, ValueError)

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML configuration (see config.yaml); defaults apply to every key it leaves out.",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help="Override one setting, e.g. --set ensemble.df_seed=8 (repeatable).",
)


def _auto_report(run_dir) -> None:
    """The report at the end of `run` and `summary`: a one-line notice without matplotlib, and a line
    (not a failure: the run itself succeeded) if it fails."""
    if not report_available():
        click.echo(f"dpot-hpc: {REPORT_NOTICE}", err=True)
        return
    try:
        write_report(run_dir)
    except Exception as exc:  # noqa: BLE001 - reported, and `dpot-hpc report` shows the traceback
        click.echo(f"dpot-hpc: report failed ({type(exc).__name__}: {exc}); `dpot-hpc report {run_dir}` retries it",
                   err=True)


def _load(config_path, overrides):
    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        raise click.ClickException(f"config: {exc}") from None


@click.group()
@click.version_option(__version__, prog_name="dpot-hpc")
def main():
    """Deep Potential: the local Galactic potential, pattern speed, density and accelerations
    from the 6-D phase-space distribution of stars."""


@main.command()
@config_option
@set_option
def run(config_path, overrides):
    """The whole job: mock (if needed), prepared sample, DF members, gradient caches, potential
    members, summary. Under mpiexec/srun the members are shared out across the ranks."""
    cfg = _load(config_path, overrides)
    try:
        summary = run_driver(cfg)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    if summary is None:  # ranks other than 0
        return
    click.echo(f"\nBest estimate: median over the {summary['best_from']} members, +- the pipelines' 16-84 "
               "half-widths in quadrature\n(accelerations in heliocentric axes, x towards the Galactic centre):")
    click.echo(format_table(summary["best"], summary["truth"]))
    click.echo("\nPer pipeline (median +- 16-84 half-width):")
    click.echo(format_pipelines(summary["pipelines"]))
    folder = RunFolder.of(cfg)
    click.echo(f"\nwritten: {folder.summary_json}, {folder.summary_h5}")
    _auto_report(folder.root)


@main.command()
@config_option
@set_option
def setup(config_path, overrides):
    """Prepare the run folder: config check, mock (if needed), prepared sample, plan.json."""
    cfg = _load(config_path, overrides)
    try:
        folder, n = do_setup(cfg)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{folder.root}: set up, {n} members, catalogue {folder.catalogue}")


@main.command()
@config_option
@set_option
@click.option("--stage", required=True, type=click.Choice(STAGES), help="Stage of the member.")
@click.option("--index", required=True, type=int, help="Index of the member within its stage (plan order).")
def member(config_path, overrides, stage, index):
    """Run one member of a set-up run folder (e.g. a Slurm array task); resumes or skips as needed."""
    cfg = _load(config_path, overrides)
    try:
        run_one(cfg, stage, index)
    except (*USER_ERRORS, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@config_option
@set_option
def summary(config_path, overrides):
    """Write summary.json/summary.h5 from the finished potential members and print the table."""
    cfg = _load(config_path, overrides)
    try:
        s = summarize(cfg, RunFolder.of(cfg))
    except (*USER_ERRORS, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_table(s["best"], s["truth"]))
    click.echo(format_pipelines(s["pipelines"]))
    _auto_report(RunFolder.of(cfg).root)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
def report(run_dir):
    """Write the figures and index.html of a finished run folder to RUN_DIR/report/ (needs the plots
    extra: matplotlib). Works on a run folder copied from elsewhere."""
    if not report_available():
        click.echo(f"dpot-hpc: {REPORT_NOTICE}")
        return
    try:
        path = write_report(run_dir)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"report: {path}")


@main.command()
@config_option
@set_option
@click.option("--account", default=None, help="Slurm account (--account).")
@click.option("--partition", default=None, help="Slurm partition.")
@click.option("--time", "time_", default="04:00:00", show_default=True, help="Time limit per task.")
@click.option("--cpus-per-task", default=8, show_default=True, type=int)
@click.option("--gpus-per-task", default=0, show_default=True, type=int)
@click.option("--mem", default=None, help="Memory per task (e.g. 32G).")
@click.option("--max-parallel", default=None, type=int, help="At most K array tasks at once (--array=...%K).")
@click.option("--container", default=None, help="Apptainer image: run each task as `apptainer exec --nv IMAGE dpot-hpc`.")
@click.option("--bind", "binds", multiple=True, help="Apptainer bind mount (repeatable), e.g. /scratch/data.")
@click.option("--submit", is_flag=True, help="Submit the chain with sbatch and print the job ids.")
def slurm(config_path, overrides, account, partition, time_, cpus_per_task, gpus_per_task, mem, max_parallel,
          container, binds, submit):
    """Render (and --submit) the job-array chain: setup -> df -> cache -> potential -> summary."""
    cfg = _load(config_path, overrides)
    command = "dpot-hpc"
    if container:
        bind_args = "".join(f" --bind {b}" for b in binds)
        command = f"apptainer exec --nv{bind_args} {container} dpot-hpc"
    try:
        RunFolder.of(cfg).write_config(cfg)
    except RunFolderError as exc:
        raise click.ClickException(str(exc)) from None
    opts = SlurmOptions(account, partition, time_, cpus_per_task, gpus_per_task, mem, max_parallel, command)
    scripts = render(cfg, opts)
    for name, path in scripts:
        click.echo(f"{name:10s} {path}")
    if submit:
        try:
            ids = do_submit(scripts)
        except (RuntimeError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        for name, jid in ids:
            click.echo(f"submitted {name:10s} job {jid}")


@main.command()
@config_option
@set_option
@click.option("--ranks", type=int, multiple=True, help="Predict the wall time on this many ranks (repeatable).")
@click.option("--stars", type=int, default=None, help="Stars in the prepared sample (default: the mock's n_stars).")
@click.option("--costs", type=click.Path(exists=True, dir_okay=False), default=None,
              help="JSON of seconds per member on one rank for the reference sizes: df, cache, cache_per_flow, potential.")
def plan(config_path, overrides, ranks, stars, costs):
    """Print the ensemble plan (members, seeds, inputs, outputs by stage) and predicted wall times."""
    cfg = _load(config_path, overrides)
    click.echo(format_plan(plan_rows(cfg, RunFolder.of(cfg))))
    try:
        table = load_costs(costs)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for n in ranks:
        if n < 1:
            raise click.ClickException("--ranks: expected a positive number of ranks")
        click.echo("")
        click.echo(format_prediction(simulate(cfg, n, stars or cfg.mock.n_stars, table), n))


@main.command()
@config_option
@set_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run.dir>/prepared.h5).")
@click.option("--noise-seed", type=int, default=None,
              help="Add Gaussian noise from the quoted errors to the observables (gaia format), from this seed.")
def prepare(config_path, overrides, out, noise_seed):
    """Read the catalogue, apply the cuts and write the prepared sample (the DF stage's input)."""
    cfg = _load(config_path, overrides)
    folder = RunFolder.of(cfg)
    path = Path(out) if out else folder.prepared
    if path.exists():
        raise click.ClickException(f"{path} exists; remove it or choose another --out")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if folder.catalogue_path is None and not folder.mock.exists():
            write_mock(folder.mock, cfg, log=lambda m: click.echo(m, err=True))
        prepare_sample(cfg, folder.catalogue, path, noise_seed, log=lambda m: click.echo(m, err=True))
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@config_option
@set_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run.dir>/mock.h5).")
def mock(config_path, overrides, out):
    """Write the built-in mock catalogue (stars, Gaia-like observables and truth) to HDF5."""
    cfg = _load(config_path, overrides)
    path = Path(out) if out else RunFolder.of(cfg).mock
    if path.exists():
        raise click.ClickException(f"{path} exists; remove it or choose another --out")
    write_mock(path, cfg, log=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--points", "points", required=True, type=click.Path(dir_okay=False),
              help="HDF5 (dataset x (N,3) or x, y, z) or text file of heliocentric positions in kpc.")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output HDF5 (default: <points>.potential.h5).")
def evaluate(run_dir, points, out):
    """Evaluate Phi, a and rho of a trained run (ensemble median) or member file at given points."""
    try:
        pts = read_points(points)
        pot = load_potential(run_dir)
        fields = pot.evaluate(pts)
    except USER_ERRORS as exc:
        raise click.ClickException(str(exc)) from None
    out = Path(out) if out else Path(str(points) + ".potential.h5")
    units = {"phi": "(km/s)^2", "accel": "km/s/Myr", "rho": "Msun/pc^3"}
    with atomic_h5(out) as f:
        f.create_dataset("x", data=pts).attrs["unit"] = "kpc"
        for k, unit in units.items():
            f.create_dataset(k, data=np.median(fields[k], axis=0)).attrs["unit"] = unit
            f.create_dataset(f"members/{k}", data=fields[k]).attrs["unit"] = unit
        f.attrs["members"] = ",".join(pot.ids)
        f.attrs["omega_p_kms_kpc"] = pot.omega_p.value
        f.attrs["axes"] = "heliocentric Galactic Cartesian (x towards the Galactic centre)"
    click.echo(f"wrote {out} ({len(pts)} points, {len(pot.ids)} members)")


@main.command()
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where to run the numerical checks (auto: the GPU when torch sees one).")
def selfcheck(device):
    """Quick check of this installation (seconds): versions, devices, MPI library, and the exact-mock
    CBE residual, the Laplacian, a short flow fit and HDF5 checkpoints on DEVICE. Exit status 1 if any fails."""
    try:
        dev = pick_device(device, key="--device")
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
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
