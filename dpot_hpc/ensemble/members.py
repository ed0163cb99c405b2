"""Ensemble members: the unit of work. A DF member trains one flow; a cache member draws points from
flows and stores their gradients; a potential member trains one Phi(x) + Omega_p on a cache. Each has
an id, a seed derived from the run seed and the id, its inputs and exactly one output file, which holds
the training checkpoint while it runs and the final result when done (always rewritten atomically).

Member file attrs: kind ("df" | "potential"), member_id, pipeline, index, seed, status ("training" |
"done"), config (JSON of the run config), version. Groups: /model (weights: the best ones once done),
/checkpoint (only while training), /history (training record). Potential members also store
omega_p_kms_kpc, sun (JSON) and scalars (JSON) once done.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch

from ..config import Config, DFSection, PotentialSection
from ..constants import RHO_BARYON_MPH15_MSUN_PC3
from ..errors import DpotError
from ..data.cache import build_cache, read_cache, write_cache
from ..data.h5io import atomic_h5, load_tree, save_tree
from ..data.prepare import bootstrap_indices, check_columns, prepare_sample, read_observed_errors, read_prepared
from ..data.provenance import INDEPENDENT_SECTIONS, stamp, verify
from ..data.mockfile import MockTruth
from ..data.runfolder import RunFolder
from ..models.device import one_cpu_thread
from ..models.df_training import build_flow, bfloat16_epochs, train_flow
from ..models.flows import Flow
from ..models.potential import PotentialNet, evaluate
from ..models.potential_training import build_potential, train_potential
from ..models.training import Interrupted, LoopHooks, StopRequest, never, nothing
from ..physics.frames import SunFrame
from ..physics.gaia import ObservedErrors
from ..physics.scalars import evaluation_grid, scalars_from_fields
from ..progress import MemberLog
from .plan import MemberSpec, cache_flows, noise_level, potential_cache


class MemberFileError(DpotError, RuntimeError):
    """A member file exists but belongs to another member or is unreadable."""


@dataclass
class RunContext:
    """What the members of one run share: configuration, run folder, device, whether logs echo to
    the terminal, and the prepared stars (read once, on first use)."""

    cfg: Config
    folder: RunFolder
    device: str = "cpu"
    echo: bool = True
    stop: StopRequest = never
    between: Callable[[], None] = nothing
    _stars: torch.Tensor | None = field(default=None, repr=False)
    _errors: ObservedErrors | None = field(default=None, repr=False)

    def stars(self) -> torch.Tensor:
        """The prepared sample (N, 6): x, y, z [kpc], vx, vy, vz [km/s], heliocentric."""
        if self._stars is None:
            self._stars = read_prepared(self.folder.prepared)[0]
        return self._stars

    def observed_errors(self) -> ObservedErrors:
        """The prepared stars' noisy observables, quoted errors and line-of-sight directions."""
        if self._errors is None:
            self._errors = read_observed_errors(self.folder.prepared)
        return self._errors


@dataclass(frozen=True)
class PotentialMember:
    """A finished potential member: its network, pattern speed (km/s/kpc), scalars, Sun and the
    radius around the Sun (kpc) inside which it was fitted (the cache's, None where unknown)."""

    id: str
    net: PotentialNet
    omega_p_kms_kpc: float
    scalars: dict[str, float]
    sun: SunFrame
    fit_radius_kpc: float | None = None


def status(path: Path) -> str:
    """'missing', 'training' or 'done'."""
    if not Path(path).exists():
        return "missing"
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["status"])
    except (OSError, KeyError) as exc:
        raise MemberFileError(f"member file {path} is unreadable ({exc}); move it away to recompute") from None


def verified(spec: MemberSpec, cfg: Config, folder: RunFolder) -> str:
    """The member's status ('missing', 'training', 'done'), after checking that an existing file is this
    run's (same configuration, version, member id and seed): a file copied in from another run is refused,
    except that flows and caches are not judged by the settings of the stages after them
    (``INDEPENDENT_SECTIONS``)."""
    path = spec.path(folder)
    if not path.exists():
        return "missing"
    attrs = verify(path, cfg, f"{spec.kind} member {spec.id}", ignore=INDEPENDENT_SECTIONS.get(spec.kind, frozenset()),
                   member_id=spec.id, seed=spec.seed(cfg.run.seed))
    return str(attrs.get("status", "done"))


def _read_resume(path: Path) -> dict:
    try:
        with h5py.File(path, "r") as f:
            return load_tree(f["checkpoint"])
    except (OSError, KeyError) as exc:
        raise MemberFileError(f"checkpoint in {path} is unreadable ({exc}); move the file away to recompute") from None


def _write_member(path: Path, spec: MemberSpec, seed: int, cfg: Config, status_: str, model: dict,
                  checkpoint: dict | None, history: list, extra: dict) -> None:
    """Write a member file atomically (a checkpoint while training, the result when done)."""
    with atomic_h5(path) as f:
        stamp(f.attrs, cfg, kind=spec.kind, member_id=spec.id, pipeline=spec.pipeline, index=spec.index, seed=seed,
              status=status_)
        for k, v in extra.items():
            f.attrs[k] = v
        save_tree(f.create_group("model"), model)
        if checkpoint is not None:
            save_tree(f.create_group("checkpoint"), checkpoint)
        if history:
            f.create_dataset("history", data=np.asarray(history, dtype=np.float64))


#: What a member's training returns: (final weights, history rows, attrs of the finished file, log line).
Trained = tuple[dict, list, dict, str]


def _train_member(spec: MemberSpec, ctx: RunContext, what: str, arch: dict,
                  train: Callable[[int, Callable[[dict], None], dict | None, MemberLog], Trained]) -> Path:
    """The frame every trained member shares: skip if done, resume from its checkpoint, write a
    checkpoint whenever ``train`` asks, and the finished file at the end; logs to the member's log."""
    path = spec.path(ctx.folder)
    seed = spec.seed(ctx.cfg.run.seed)
    state = verified(spec, ctx.cfg, ctx.folder)
    if state == "done":
        return path
    log = MemberLog(spec.log_path(ctx.folder), f"{spec.kind} {spec.id}", echo=ctx.echo)
    try:
        resume = _read_resume(path) if state == "training" else None
        log(f"{'resuming' if resume else 'training'} {what} (seed {seed})")

        def checkpoint(payload: dict) -> None:
            _write_member(path, spec, seed, ctx.cfg, "training", payload["model"], payload,
                          payload["state"]["history"], arch)

        try:
            model, history, attrs, done = train(seed, checkpoint, resume, log)
        except Interrupted as exc:
            log(f"interrupted: {exc}")
            raise
        _write_member(path, spec, seed, ctx.cfg, "done", model, None, history, {**arch, **attrs})
        log(done)
    finally:
        log.close()
    return path


# --- DF members ---------------------------------------------------------------
def run_df_member(spec: MemberSpec, ctx: RunContext, stars: torch.Tensor, errors: ObservedErrors | None = None) -> Path:
    """Train (or resume, or skip if done) one DF member on stars (N, 6), through their observational
    errors when ``errors`` are given (``df.deconvolve``); returns its file."""
    cfg = ctx.cfg
    arch = {"transforms": cfg.df.transforms, "components": cfg.df.components, "hidden": json.dumps(list(cfg.df.hidden)),
            "populations": cfg.df.populations, "rotate_velocities": cfg.df.rotate_velocities,
            "r_max_kpc": cfg.catalogue.r_max_kpc, "n_stars": stars.shape[0]}

    def train(seed, checkpoint, resume, log) -> Trained:
        flow, state = train_flow(stars, cfg.df, seed, cfg.catalogue.r_max_kpc,
                                 LoopHooks(checkpoint, resume, log, ctx.device, ctx.stop, ctx.between), cfg.frame.sun(),
                                 errors)
        attrs = {"best_val_loss": state.best_val, "best_epoch": state.best_epoch,
                 "bfloat16_epochs": bfloat16_epochs(cfg.df, ctx.device, deconvolve=errors is not None)}
        return flow.state_dict(), state.history, attrs, f"done: {spec.path(ctx.folder)}"

    return _train_member(spec, ctx, f"flow on {stars.shape[0]} stars", arch, train)


def load_flow(path: Path) -> Flow:
    """The trained flow of a finished DF member file."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "df" or f.attrs.get("status") != "done":
            raise MemberFileError(f"{path} is not a finished DF member")
        df = DFSection(transforms=int(f.attrs["transforms"]), components=int(f.attrs["components"]),
                       hidden=json.loads(f.attrs["hidden"]), populations=int(f.attrs.get("populations", 1)),
                       rotate_velocities=bool(f.attrs.get("rotate_velocities", False)))
        flow = build_flow(df, int(f.attrs["seed"]), float(f.attrs["r_max_kpc"]), SunFrame())  # frame: from the file
        flow.load_state_dict(load_tree(f["model"]))
    return flow.eval()


def df_member_data(spec: MemberSpec, ctx: RunContext) -> tuple[torch.Tensor, ObservedErrors | None]:
    """The stars a DF member trains on (its pipeline decides how they are resampled) and, with
    ``df.deconvolve``, their observables and errors (else None)."""
    seed = spec.seed(ctx.cfg.run.seed)
    errors = ctx.observed_errors() if ctx.cfg.df.deconvolve else None
    if spec.pipeline == "df_seed":
        return ctx.stars(), errors
    if spec.pipeline == "bootstrap":
        rows = torch.from_numpy(bootstrap_indices(ctx.stars().shape[0], seed))
        return ctx.stars()[rows], None if errors is None else errors.rows(rows)
    if noise_level(spec.pipeline):
        path = ctx.folder.sample(spec.id)
        if path.exists():
            ctx.folder.check_prepared(ctx.cfg, path, noise_seed=seed)
        else:
            prepare_sample(ctx.cfg, ctx.folder.catalogue, path, noise_seed=seed, log=lambda m: None,
                           noise_scale=math.sqrt(noise_level(spec.pipeline)))
        return read_prepared(path)[0], None  # (config: never with df.deconvolve)
    raise ValueError(f"no DF data for pipeline {spec.pipeline!r}")


# --- cache members ----------------------------------------------------------------
def run_cache_member(spec: MemberSpec, ctx: RunContext) -> Path:
    """Build (or skip if present) one gradient cache from its flows."""
    cfg, path = ctx.cfg, spec.path(ctx.folder)
    if verified(spec, ctx.cfg, ctx.folder) != "missing":
        return path
    log = MemberLog(spec.log_path(ctx.folder), f"cache {spec.id}", echo=ctx.echo)
    try:
        t0 = time.monotonic()
        flows_spec = cache_flows(cfg, spec)
        log(f"drawing {cfg.cache.n_points} points from {len(flows_spec)} flow(s)")
        for s in flows_spec:
            if verified(s, ctx.cfg, ctx.folder) != "done":
                raise MemberFileError(f"{s.path(ctx.folder)}: DF member {s.id} is not finished; run its stage first")
        flows = [load_flow(s.path(ctx.folder)) for s in flows_spec]
        seed = spec.seed(cfg.run.seed)
        cache = build_cache(flows, cfg.cache.n_points, cfg.cache.r_max_kpc, seed, cfg.cache.batch_size, ctx.between)
        write_cache(path, cache, [s.id for s in flows_spec], cfg, spec.id, seed)
        log(f"done in {time.monotonic() - t0:.1f}s: {path}")
    finally:
        log.close()
    return path


# --- potential members ----------------------------------------------------------
def member_scalars(phi: PotentialNet, omega_p: float, cfg: Config, rho_baryons, sun: SunFrame) -> dict[str, float]:
    """The reported scalars of one trained potential on the evaluation grid, on one CPU thread (their means
    over the grid's points would otherwise vary in the last bits with the rank's thread count, which the
    lending of idle ranks' threads changes: ``one_cpu_thread``)."""
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    with one_cpu_thread():
        fields = evaluate(phi, grid)
        s = scalars_from_fields(grid, fields["accel"], fields["rho"], rho_baryons, sun, cfg.summary)
    s["omega_p"] = float(omega_p)
    return s


def baryon_density(cfg: Config, truth: MockTruth | None, sun: SunFrame) -> tuple[torch.Tensor | float, str]:
    """(baryon density for rho_DM, its source): summary.rho_baryon_msun_pc3 when set, a mock's own
    disc + bulge on the evaluation grid seen from ``sun``, or McKee et al. (2015)."""
    if cfg.summary.rho_baryon_msun_pc3 is not None:
        return cfg.summary.rho_baryon_msun_pc3, "summary.rho_baryon_msun_pc3"
    if truth is None:
        return RHO_BARYON_MPH15_MSUN_PC3, "McKee, Parravano & Hollenbach 2015 (ApJ 814, 13)"
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    return truth.baryon_density(grid, sun), "the mock's own disc + bulge"


def potential_sun(spec: MemberSpec, cfg: Config) -> SunFrame:
    """The config's frame, or for x0_v0 members one drawn from the frame uncertainties."""
    return cfg.frame.draw_sun(spec.seed(cfg.run.seed)) if spec.pipeline == "x0_v0" else cfg.frame.sun()


def run_potential_member(spec: MemberSpec, ctx: RunContext, cache: dict[str, torch.Tensor], rho_baryons,
                         sun: SunFrame) -> Path:
    """Train (or resume, or skip if done) one potential member on a gradient cache; returns its file.

    sun: the Sun's frame for the rotation term and the scalars.
    """
    cfg = ctx.cfg
    arch = {"hidden": json.dumps(list(cfg.potential.hidden)), "length_scale_kpc": cfg.catalogue.r_max_kpc,
            "phi_scale_kms2": cfg.potential.phi_scale_kms2, "sun": json.dumps(asdict(sun))}

    def train(seed, checkpoint, resume, log) -> Trained:
        phi, omega_p, state = train_potential(cache, cfg.potential, sun, seed, cfg.catalogue.r_max_kpc,
                                              LoopHooks(checkpoint, resume, log, ctx.device, ctx.stop, ctx.between))
        scalars = member_scalars(phi, omega_p, cfg, rho_baryons, sun)
        attrs = {"omega_p_kms_kpc": omega_p, "scalars": json.dumps(scalars)}
        return phi.state_dict(), state.history, attrs, "done: " + ", ".join(f"{k} {v:.4f}" for k, v in scalars.items())

    return _train_member(spec, ctx, f"potential on {cache['x'].shape[0]} cache points", arch, train)


def load_potential_member(path: Path) -> PotentialMember:
    """A finished potential member file as a PotentialMember."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("kind") != "potential" or f.attrs.get("status") != "done":
            raise MemberFileError(f"{path} is not a finished potential member")
        pot = PotentialSection(hidden=json.loads(f.attrs["hidden"]), phi_scale_kms2=float(f.attrs["phi_scale_kms2"]))
        phi = build_potential(pot, 0, float(f.attrs["length_scale_kpc"]))
        phi.load_state_dict(load_tree(f["model"]))
        sun = json.loads(f.attrs["sun"])
        fit_radius = json.loads(f.attrs["config"]).get("cache", {}).get("r_max_kpc") if "config" in f.attrs else None
        return PotentialMember(str(f.attrs["member_id"]), phi.eval(), float(f.attrs["omega_p_kms_kpc"]),
                               json.loads(f.attrs["scalars"]), SunFrame(**{**sun, "v_sun_kms": tuple(sun["v_sun_kms"])}),
                               None if fit_radius is None else float(fit_radius))


# --- running any member -------------------------------------------------------------
def run_member(spec: MemberSpec, ctx: RunContext) -> dict | None:
    """Run (or resume, or skip) any member; potential members return their scalars."""
    if spec.kind == "df":
        if verified(spec, ctx.cfg, ctx.folder) != "done":
            run_df_member(spec, ctx, *df_member_data(spec, ctx))
        return None
    if spec.kind == "cache":
        run_cache_member(spec, ctx)
        return None
    path = spec.path(ctx.folder)
    if verified(spec, ctx.cfg, ctx.folder) != "done":
        sun = potential_sun(spec, ctx.cfg)
        source = potential_cache(spec)
        if verified(source, ctx.cfg, ctx.folder) == "missing":
            raise MemberFileError(f"{source.path(ctx.folder)}: the gradient cache is missing; run the cache stage first")
        cache = read_cache(source.path(ctx.folder))
        rho_b, _ = baryon_density(ctx.cfg, ctx.folder.truth(), sun)
        run_potential_member(spec, ctx, cache, rho_b, sun)
    return load_potential_member(path).scalars


def check_member_inputs(cfg: Config, folder: RunFolder) -> None:
    """Check, before the first member starts, the inputs that planned members need beyond the
    prepared sample: the catalogue's error columns for obs_noise members and for deconvolving flows."""
    if cfg.ensemble.obs_noise > 0 or cfg.df.deconvolve:
        check_columns(cfg, folder.catalogue, noise=True)
