"""The command line: dpot-hpc run | mock | evaluate."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__
from .catalog import CatalogueError
from .config import ConfigError, load_config
from .members import MemberFileError

USER_ERRORS = (ConfigError, CatalogueError, MemberFileError, FileNotFoundError, ValueError)

config_option = click.option(
    "--config", "-c", "config_path", type=click.Path(dir_okay=False), default=None,
    help="YAML configuration (see config.yaml); defaults apply to every key it leaves out.",
)
set_option = click.option(
    "--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE",
    help="Override one setting, e.g. --set df.n_flows=2 (repeatable).",
)


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
    """The whole job: mock (if needed), DF members, gradient cache, potential members, summary."""
    from .pipeline import RunFolderError, run as run_pipeline
    from .summary import format_table

    cfg = _load(config_path, overrides)
    try:
        result = run_pipeline(cfg)
    except (*USER_ERRORS, RunFolderError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"\nResult (median over {len(result['members'])} potential members; "
               f"accelerations in heliocentric axes, x towards the Galactic centre):")
    click.echo(format_table(result["scalars"], result["truth"]))
    click.echo(f"\nwritten: {Path(cfg.run.dir) / 'result.json'}, {Path(cfg.run.dir) / 'result.h5'}")


@main.command()
@config_option
@set_option
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Output file (default: <run.dir>/mock.h5).")
def mock(config_path, overrides, out):
    """Write the built-in mock catalogue (stars, Gaia-like observables and truth) to HDF5."""
    from .mockfile import write_mock

    cfg = _load(config_path, overrides)
    path = Path(out) if out else Path(cfg.run.dir) / "mock.h5"
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
    import numpy as np

    from .api import load_potential, read_points
    from .checkpoints import atomic_h5

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


if __name__ == "__main__":
    sys.exit(main())
