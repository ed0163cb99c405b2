"""Ensemble members: the unit of work. A DF member trains one flow; a cache member draws points from
flows and stores their gradients; a potential member trains one Phi(x) + Omega_p on a cache. Each has an id, a seed derived from the run seed and the id,
its inputs and exactly one output file, which holds the training checkpoint while it runs and the
final result when done (always rewritten atomically).

Member file attrs: kind ("df" | "potential"), member_id, seed, status ("training" | "done"), wall_s,
config (JSON of the run config), version. Groups: /model (weights: the best ones once done),
/checkpoint (only while training), /history (training record). Potential members also store
omega_p_kms_kpc and scalars (JSON) once done.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from . import __version__
from .checkpoints import atomic_h5, load_tree, save_tree
from .cache import build_cache, read_cache, write_cache
from .config import Config, DFSection, PotentialSection, sun_frame
from .ensemble import MemberSpec, cache_flows, potential_cache
from .frames import SunFrame
from .fit_df import build_flow, train_flow
from .fit_potential import build_potential, train_potential
from .flows import Flow
from .potential import PotentialNet, evaluate
from .progress import MemberLog
from .summary import evaluation_grid, scalars_from_fields


class MemberFileError(RuntimeError):
    """A member file exists but belongs to another member or is unreadable."""


def status(path: Path) -> str:
    """'missing', 'training' or 'done'."""
    if not Path(path).exists():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["status"])
    except (OSError, KeyError) as exc:
        raise MemberFileError(f"member file {path} is unreadable ({exc}); move it away to recompute") from None


def _read_resume(path: Path, spec: MemberSpec, seed: int) -> dict | None:
    if status(path) != "training":
        return None
    with h5py.File(path, "r") as f:
        if f.attrs["member_id"] != spec.id or int(f.attrs["seed"]) != seed:
            raise MemberFileError(f"member file {path} belongs to {f.attrs['member_id']} (seed {f.attrs['seed']})")
        return load_tree(f["checkpoint"])


def _write_member(path: Path, spec: MemberSpec, seed: int, cfg: Config, status_: str, model: dict,
                  checkpoint: dict | None, history: list, extra: dict) -> None:
    """Write a member file atomically (a checkpoint while training, the result when done)."""
    with atomic_h5(path) as f:
        f.attrs.update({"kind": spec.kind, "member_id": spec.id, "pipeline": spec.pipeline, "index": spec.index,
                        "seed": seed, "status": status_, "config": json.dumps(cfg.to_dict()), "version": __version__})
        for k, v in extra.items():
            f.attrs[k] = v
        save_tree(f.create_group("model"), model)
        if checkpoint is not None:
            save_tree(f.create_group("checkpoint"), checkpoint)
        if history:
            f.create_dataset("history", data=np.asarray(history, dtype=np.float64))


# --- DF members ---------------------------------------------------------------
def run_df_member(spec: MemberSpec, cfg: Config, run_dir: Path, stars: torch.Tensor, device: str = "cpu",
                  echo: bool = True) -> Path:
    """Train (or resume, or skip if done) one DF member on stars (N, 6); returns its file."""
    path = spec.path(run_dir)
    seed = spec.seed(cfg.run.seed)
    if status(path) == "done":
        return path
    log = MemberLog(spec.log_path(run_dir), f"df {spec.id}", echo=echo)
    try:
        resume = _read_resume(path, spec, seed)
        log(f"{'resuming' if resume else 'training'} flow on {stars.shape[0]} stars (seed {seed})")
        arch = {"transforms": cfg.df.transforms, "hidden": json.dumps(list(cfg.df.hidden)),
                "r_max_kpc": cfg.catalogue.r_max_kpc, "n_stars": stars.shape[0]}

        def checkpoint(payload: dict) -> None:
            _write_member(path, spec, seed, cfg, "training", payload["model"], payload,
                          payload["state"]["history"], arch)

        flow, state = train_flow(stars, cfg.df, seed, cfg.catalogue.r_max_kpc, checkpoint, resume, log, device)
        _write_member(path, spec, seed, cfg, "done", flow.state_dict(), None, state.history,
                      {**arch, "best_val_loss": state.best_val, "best_epoch": state.best_epoch})
        log(f"done: {path}")
    finally:
        log.close()
    return path


def load_flow(path: Path) -> Flow:
    """The trained flow of a finished DF member file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "df" or f.attrs.get("status") != "done":
            raise MemberFileError(f"{path} is not a finished DF member")
        df = DFSection(transforms=int(f.attrs["transforms"]), hidden=json.loads(f.attrs["hidden"]))
        flow = build_flow(df, int(f.attrs["seed"]), float(f.attrs["r_max_kpc"]))
        flow.load_state_dict(load_tree(f["model"]))
    return flow.eval()


# --- potential members ----------------------------------------------------------
def member_scalars(phi: PotentialNet, omega_p: float, cfg: Config, rho_baryons, sun: SunFrame | None = None) -> dict[str, float]:
    """The reported scalars of one trained potential on the evaluation grid."""
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    fields = evaluate(phi, grid)
    s = scalars_from_fields(grid, fields["accel"], fields["rho"], rho_baryons, sun or sun_frame(cfg), cfg.summary)
    s["omega_p"] = float(omega_p)
    return s


def run_potential_member(spec: MemberSpec, cfg: Config, run_dir: Path, cache: dict[str, torch.Tensor],
                         rho_baryons, device: str = "cpu", echo: bool = True, sun: SunFrame | None = None) -> Path:
    """Train (or resume, or skip if done) one potential member on a gradient cache; returns its file.

    sun: the Sun's frame for the rotation term and the scalars (default: the config's).
    """
    path = spec.path(run_dir)
    seed = spec.seed(cfg.run.seed)
    if status(path) == "done":
        return path
    log = MemberLog(spec.log_path(run_dir), f"potential {spec.id}", echo=echo)
    sun = sun or sun_frame(cfg)
    try:
        resume = _read_resume(path, spec, seed)
        log(f"{'resuming' if resume else 'training'} potential on {cache['x'].shape[0]} cache points (seed {seed})")
        arch = {"hidden": json.dumps(list(cfg.potential.hidden)), "length_scale_kpc": cfg.catalogue.r_max_kpc,
                "phi_scale_kms2": cfg.potential.phi_scale_kms2, "sun": json.dumps(asdict(sun))}

        def checkpoint(payload: dict) -> None:
            _write_member(path, spec, seed, cfg, "training", payload["model"], payload,
                          payload["state"]["history"], arch)

        phi, omega_p, state = train_potential(cache, cfg.potential, sun, seed, cfg.catalogue.r_max_kpc,
                                              checkpoint, resume, log, device)
        scalars = member_scalars(phi, omega_p, cfg, rho_baryons, sun)
        _write_member(path, spec, seed, cfg, "done", phi.state_dict(), None, state.history,
                      {**arch, "omega_p_kms_kpc": omega_p, "scalars": json.dumps(scalars)})
        log("done: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items()))
    finally:
        log.close()
    return path


def load_potential_member(path: Path) -> tuple[PotentialNet, float, dict]:
    """(network, Omega_p [km/s/kpc], scalars) of a finished potential member file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "potential" or f.attrs.get("status") != "done":
            raise MemberFileError(f"{path} is not a finished potential member")
        pot = PotentialSection(hidden=json.loads(f.attrs["hidden"]), phi_scale_kms2=float(f.attrs["phi_scale_kms2"]))
        phi = build_potential(pot, 0, float(f.attrs["length_scale_kpc"]))
        phi.load_state_dict(load_tree(f["model"]))
        return phi.eval(), float(f.attrs["omega_p_kms_kpc"]), json.loads(f.attrs["scalars"])


# --- cache members ----------------------------------------------------------------
def run_cache_member(spec: MemberSpec, cfg: Config, run_dir: Path, echo: bool = True) -> Path:
    """Build (or skip if present) one gradient cache from its flows."""
    path = spec.path(run_dir)
    if path.exists():
        return path
    log = MemberLog(spec.log_path(run_dir), f"cache {spec.id}", echo=echo)
    try:
        t0 = time.monotonic()
        flows_spec = cache_flows(cfg, spec)
        log(f"drawing {cfg.cache.n_points} points from {len(flows_spec)} flow(s)")
        flows = [load_flow(s.path(run_dir)) for s in flows_spec]
        seed = spec.seed(cfg.run.seed)
        cache = build_cache(flows, cfg.cache.n_points, cfg.cache.r_max_kpc, seed, cfg.cache.batch_size)
        write_cache(path, cache, [s.id for s in flows_spec], seed, cfg.cache.r_max_kpc)
        log(f"done in {time.monotonic() - t0:.1f}s: {path}")
    finally:
        log.close()
    return path


# --- running any member -------------------------------------------------------------
@dataclass
class RunContext:
    """What members of one run share: config, folder, device, inputs (loaded lazily)."""

    cfg: Config
    run_dir: Path
    catalogue: Path
    device: str = "cpu"
    echo: bool = True
    _stars: torch.Tensor | None = field(default=None, repr=False)

    def stars(self) -> torch.Tensor:
        from .prepare import read_prepared

        if self._stars is None:
            self._stars = read_prepared(self.run_dir / "prepared.h5")[0]
        return self._stars


def df_member_stars(spec: MemberSpec, ctx: RunContext) -> torch.Tensor:
    """The stars a DF member trains on (its pipeline decides how they are resampled)."""
    from .prepare import bootstrap_indices, prepare_sample, read_prepared

    seed = spec.seed(ctx.cfg.run.seed)
    if spec.pipeline == "df_seed":
        return ctx.stars()
    if spec.pipeline == "bootstrap":
        stars = ctx.stars()
        return stars[torch.from_numpy(bootstrap_indices(stars.shape[0], seed))]
    if spec.pipeline == "obs_noise":
        path = ctx.run_dir / "samples" / f"{spec.id}.h5"
        if not path.exists():
            prepare_sample(ctx.cfg, ctx.catalogue, path, noise_seed=seed, log=lambda m: None)
        return read_prepared(path)[0]
    raise ValueError(f"no DF data for pipeline {spec.pipeline!r}")


def potential_sun(spec: MemberSpec, cfg: Config) -> SunFrame:
    """The config's frame, or for x0_v0 members one drawn from the frame uncertainties."""
    from .prepare import draw_sun

    return draw_sun(cfg, spec.seed(cfg.run.seed)) if spec.pipeline == "x0_v0" else sun_frame(cfg)


def baryon_density(cfg: Config, cat_path: Path, sun: SunFrame | None = None):
    """(baryon density for rho_DM, its source): a number (Msun/pc^3) or, for the mock, its own
    disc + bulge on the evaluation grid."""
    from .constants import MSUN_PER_KPC3_TO_MSUN_PER_PC3, RHO_BARYON_MPH15_MSUN_PC3
    from .frames import helio_to_galcen
    from .galaxy import GalaxyModel

    if cfg.summary.rho_baryon_msun_pc3 is not None:
        return cfg.summary.rho_baryon_msun_pc3, "summary.rho_baryon_msun_pc3"
    galaxy = None
    if h5py.is_hdf5(cat_path):
        with h5py.File(cat_path, "r") as f:
            if "truth" in f:
                galaxy = GalaxyModel(**json.loads(f["truth"].attrs["galaxy"]))
    if galaxy is None:
        return RHO_BARYON_MPH15_MSUN_PC3, "McKee, Parravano & Hollenbach 2015 (ApJ 814, 13)"
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    x_gc = helio_to_galcen(grid, torch.zeros_like(grid), sun or sun_frame(cfg))[0]
    return galaxy.rho_baryons(x_gc) * MSUN_PER_KPC3_TO_MSUN_PER_PC3, "the mock's own disc + bulge"


def run_member(spec: MemberSpec, ctx: RunContext) -> dict | None:
    """Run (or resume, or skip) any member; potential members return their scalars."""
    if spec.kind == "df":
        if status(spec.path(ctx.run_dir)) != "done":
            run_df_member(spec, ctx.cfg, ctx.run_dir, df_member_stars(spec, ctx), ctx.device, ctx.echo)
        return None
    if spec.kind == "cache":
        run_cache_member(spec, ctx.cfg, ctx.run_dir, ctx.echo)
        return None
    path = spec.path(ctx.run_dir)
    if status(path) != "done":
        sun = potential_sun(spec, ctx.cfg)
        cache = read_cache(potential_cache(spec).path(ctx.run_dir))
        rho_b, _ = baryon_density(ctx.cfg, ctx.catalogue, sun)
        run_potential_member(spec, ctx.cfg, ctx.run_dir, cache, rho_b, ctx.device, ctx.echo, sun)
    return load_potential_member(path)[2]
