"""The gradient cache ("best-fit DF"): phase-space points drawn from the flows, with every flow's
ln f and gradient there and their mean over the flows.

Layout of cache/<name>.h5 (units in each dataset's ``unit`` attribute):
  /x (N,3) [kpc]  /v (N,3) [km/s]       heliocentric Galactic Cartesian points, v relative to Sun
  /log_f (N,)     mean over the flows of ln f [ln(stars kpc^-3 (km/s)^-3)]
  /grad_x (N,3) [1/kpc]  /grad_v (N,3) [s/km]   mean over the flows of the gradients of ln f
  /flows/log_f (K,N)  /flows/grad (K,N,6)        every flow's own values (same units)
  attrs: flows (JSON list of DF member ids), r_max_kpc, and the record of data.provenance (kind,
         member_id, seed, config, version)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import torch

from ..config import Config
from ..models.flows import Flow, log_prob_and_gradients
from ..models.training import nothing
from .h5io import atomic_h5
from .provenance import stamp


def draw_points(flows: list[Flow], n_points: int, r_max_kpc: float, seed: int, batch: int,
                between: Callable[[], None] = nothing) -> torch.Tensor:
    """n_points phase-space points (N, 6) drawn equally from every flow, inside |x| < r_max_kpc;
    ``between()`` is called after every batch (the driver's hand-over of idle ranks' threads)."""
    gen = torch.Generator().manual_seed(seed)
    per = [n_points // len(flows) + (1 if i < n_points % len(flows) else 0) for i in range(len(flows))]
    out = []
    for flow, n in zip(flows, per):
        got, have = [], 0
        while have < n:
            w = flow.sample(min(batch, 2 * (n - have) + 100), gen)
            w = w[torch.linalg.vector_norm(w[:, :3], dim=-1) < r_max_kpc]
            got.append(w)
            have += w.shape[0]
            between()
        out.append(torch.cat(got)[:n])
    return torch.cat(out)


def evaluate_flows(flows: list[Flow], w: torch.Tensor, batch: int,
                   between: Callable[[], None] = nothing) -> tuple[torch.Tensor, torch.Tensor]:
    """(ln f (K, N), grad ln f (K, N, 6)) of every flow at points w (N, 6); ``between()`` after every flow."""
    lps, grads = [], []
    for flow in flows:
        lp, g = zip(*(log_prob_and_gradients(flow, w[i : i + batch]) for i in range(0, w.shape[0], batch)))
        between()
        lps.append(torch.cat(lp))
        grads.append(torch.cat(g))
    return torch.stack(lps), torch.stack(grads)


def build_cache(flows: list[Flow], n_points: int, r_max_kpc: float, seed: int, batch: int,
                between: Callable[[], None] = nothing) -> dict[str, torch.Tensor]:
    """Points, per-flow values and their means (see module docstring); ``between()`` as for
    ``draw_points``. The mean, not the median: the
    flows' gradients scatter about each other by 7-10% (seed to seed, on the built-in mocks), and the
    mean of K flows reduces that noise more (variance / K) and is a smooth function of the flows' values
    where a per-component median jumps between flows from point to point (docs/method.md)."""
    w = draw_points(flows, n_points, r_max_kpc, seed, batch, between)
    log_f, grad = evaluate_flows(flows, w, batch, between)
    mean_g, mean_f = grad.mean(0), log_f.mean(0)
    return {"x": w[:, :3], "v": w[:, 3:], "log_f": mean_f, "grad_x": mean_g[:, :3], "grad_v": mean_g[:, 3:],
            "flows_log_f": log_f, "flows_grad": grad}


def write_cache(path: str | Path, cache: dict[str, torch.Tensor], flow_ids: list[str], cfg: Config, member_id: str,
                seed: int) -> None:
    """Write a cache (atomically), stamped with the run's configuration, its member id and seed."""
    units = {"x": "kpc", "v": "km/s", "log_f": "ln(kpc^-3 (km/s)^-3)", "grad_x": "1/kpc", "grad_v": "s/km"}
    with atomic_h5(path) as f:
        for k, unit in units.items():
            f.create_dataset(k, data=cache[k].numpy()).attrs["unit"] = unit
        g = f.create_group("flows")
        g.create_dataset("log_f", data=cache["flows_log_f"].numpy()).attrs["unit"] = units["log_f"]
        g.create_dataset("grad", data=cache["flows_grad"].numpy()).attrs["unit"] = "1/kpc (x), s/km (v)"
        f.attrs["flows"] = json.dumps(flow_ids)
        f.attrs["r_max_kpc"] = cfg.cache.r_max_kpc
        stamp(f.attrs, cfg, kind="cache", member_id=member_id, seed=seed)


def read_cache(path: str | Path) -> dict[str, torch.Tensor]:
    """The cache {x, v, log_f, grad_x, grad_v} (means over the flows) as float64 tensors."""
    with h5py.File(path, "r") as f:
        return {k: torch.from_numpy(f[k][()]) for k in ("x", "v", "log_f", "grad_x", "grad_v")}
