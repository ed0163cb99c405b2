"""Ensemble members: the unit of work. A DF member trains one flow; a potential member trains one
Phi(x) + Omega_p on a gradient cache. Each has an id, a seed derived from the run seed and the id,
its inputs and exactly one output file, which holds the training checkpoint while it runs and the
final result when done (always rewritten atomically).

Member file attrs: kind ("df" | "potential"), member_id, seed, status ("training" | "done"),
config (JSON of the run config), version. Groups: /model (weights: the best ones once done),
/checkpoint (only while training), /history (training record). Potential members also store
omega_p_kms_kpc and scalars (JSON) once done.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from . import __version__
from .checkpoints import atomic_h5, load_tree, save_tree
from .config import Config, DFSection, PotentialSection, sun_frame
from .fit_df import build_flow, train_flow
from .fit_potential import build_potential, train_potential
from .flows import Flow
from .potential import PotentialNet, evaluate
from .progress import MemberLog
from .summary import evaluation_grid, scalars_from_fields


class MemberFileError(RuntimeError):
    """A member file exists but belongs to another member or is unreadable."""


def member_seed(run_seed: int, member_id: str) -> int:
    """Seed of a member: a hash of the run seed and the member id (stable across machines)."""
    words = np.frombuffer(hashlib.sha256(member_id.encode()).digest()[:16], dtype=np.uint32)
    ss = np.random.SeedSequence([int(run_seed), *map(int, words)])
    return int(ss.generate_state(1, np.uint64)[0] % (2**62))


@dataclass(frozen=True)
class MemberSpec:
    """One member of the ensemble: kind 'df' or 'potential', its pipeline and index."""

    kind: str
    pipeline: str
    index: int

    @property
    def id(self) -> str:
        return f"{self.pipeline}-{self.index:03d}"

    def path(self, run_dir: Path) -> Path:
        return Path(run_dir) / self.kind / f"{self.id}.h5"

    def log_path(self, run_dir: Path) -> Path:
        return Path(run_dir) / "logs" / f"{self.kind}-{self.id}.log"

    def seed(self, run_seed: int) -> int:
        return member_seed(run_seed, f"{self.kind}/{self.id}")


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
def member_scalars(phi: PotentialNet, omega_p: float, cfg: Config, rho_baryons) -> dict[str, float]:
    """The reported scalars of one trained potential on the evaluation grid."""
    grid = evaluation_grid(cfg.summary.grid_spacing_kpc, cfg.summary.shell_r_max_kpc)
    fields = evaluate(phi, grid)
    s = scalars_from_fields(grid, fields["accel"], fields["rho"], rho_baryons, sun_frame(cfg), cfg.summary)
    s["omega_p"] = float(omega_p)
    return s


def run_potential_member(spec: MemberSpec, cfg: Config, run_dir: Path, cache: dict[str, torch.Tensor],
                         rho_baryons, device: str = "cpu", echo: bool = True) -> Path:
    """Train (or resume, or skip if done) one potential member on a gradient cache; returns its file."""
    path = spec.path(run_dir)
    seed = spec.seed(cfg.run.seed)
    if status(path) == "done":
        return path
    log = MemberLog(spec.log_path(run_dir), f"potential {spec.id}", echo=echo)
    sun = sun_frame(cfg)
    try:
        resume = _read_resume(path, spec, seed)
        log(f"{'resuming' if resume else 'training'} potential on {cache['x'].shape[0]} cache points (seed {seed})")
        arch = {"hidden": json.dumps(list(cfg.potential.hidden)), "length_scale_kpc": cfg.catalogue.r_max_kpc,
                "phi_scale_kms2": cfg.potential.phi_scale_kms2, "frame": json.dumps(cfg.to_dict()["frame"])}

        def checkpoint(payload: dict) -> None:
            _write_member(path, spec, seed, cfg, "training", payload["model"], payload,
                          payload["state"]["history"], arch)

        phi, omega_p, state = train_potential(cache, cfg.potential, sun, seed, cfg.catalogue.r_max_kpc,
                                              checkpoint, resume, log, device)
        scalars = member_scalars(phi, omega_p, cfg, rho_baryons)
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
