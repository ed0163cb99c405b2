"""Predicted wall time of a plan on N ranks: a simulation of the driver's scheduler.

Within a stage, members are taken in plan order by whichever rank is free first (as the driver
does); stages end at barriers. Member costs (seconds on one rank) come from a cost table per kind,
scaled by each member's size relative to the reference sizes below: measured on this project's
reference machine (one rank per CPU core) for the default configuration, or given per device by the
user (``dpot-hpc plan --costs costs.json``).
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path

from ..config import Config
from ..errors import InputError
from .plan import STAGES, MemberSpec, cache_flows, stages

#: Seconds per member for the reference sizes, on one rank of one CPU core: measured in the default
#: run on the 2-core machine (two ranks, one thread each; the members' logs in docs/recovery.md's run:
#: 30 epochs of 200k stars ~100 s, a 100k-point cache from one flow ~14 s and from four ~20 s; 1500
#: potential steps ~21 s with the compiled loss, commit af66911's default run). Keys: df (200k stars x
#: 25 epochs), cache (100k points from 1 flow, mostly drawing them; cache_per_flow for each further
#: flow's gradients), potential (3000 steps x 2048 points). The cache's 14 s of then is halved: drawing
#: by Newton steps instead of bisection took the single-flow caches to 0.50 of their time on a machine of
#: this kind (benchmarks/results/cache_redraw.json).
REFERENCE_COSTS_S = {"df": 83.0, "cache": 7.0, "cache_per_flow": 2.0, "potential": 42.0}
REFERENCE = {"stars_epochs": 200_000 * 25, "points": 100_000, "steps_batch": 3000 * 2048}
#: A flow fitted through the errors (``df.deconvolve``) evaluates 4 points per star and step: its epochs
#: took 3.5 times as long (16 s against 4.5 s per epoch of 200k stars, two ranks, 2026-12-06).
DECONVOLVE_COST_FACTOR = 3.5


def member_cost(cfg: Config, spec: MemberSpec, n_stars: int, costs: dict) -> float:
    """Predicted seconds for one member on one rank."""
    if spec.kind == "df":
        factor = DECONVOLVE_COST_FACTOR if cfg.df.deconvolve else 1.0
        return factor * costs["df"] * n_stars * cfg.df.max_epochs / REFERENCE["stars_epochs"]
    if spec.kind == "cache":
        k = len(cache_flows(cfg, spec))
        return (costs["cache"] + costs["cache_per_flow"] * (k - 1)) * cfg.cache.n_points / REFERENCE["points"]
    return costs["potential"] * cfg.potential.steps * cfg.potential.batch_size / REFERENCE["steps_batch"]


def simulate(cfg: Config, ranks: int, n_stars: int, costs: dict | None = None) -> dict:
    """{stage: {wall_s, busy_s, idle_s, members}}, ``calibration`` ({runs, wall_s}: each calibration run
    is this plan again on as many stars, one after the other) and the total, for the plan on ``ranks`` ranks."""
    costs = {**REFERENCE_COSTS_S, **(costs or {})}
    out, total = {}, 0.0
    for name, specs in stages(cfg):
        free = [(0.0, r) for r in range(ranks)]
        heapq.heapify(free)
        busy = 0.0
        for spec in specs:
            t, r = heapq.heappop(free)
            c = member_cost(cfg, spec, n_stars, costs)
            busy += c
            heapq.heappush(free, (t + c, r))
        wall = max(t for t, _ in free) if specs else 0.0
        out[name] = {"members": len(specs), "wall_s": wall, "busy_s": busy, "idle_s": wall * ranks - busy}
        total += wall
    runs = cfg.calibration.realizations * len(cfg.calibration.families)
    out["calibration"] = {"runs": runs, "wall_s": runs * total}
    out["total_s"] = total * (1 + runs)
    return out


def load_costs(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    data = json.loads(Path(path).read_text())
    unknown = set(data) - set(REFERENCE_COSTS_S)
    if unknown:
        raise InputError(f"{path}: unknown cost keys {sorted(unknown)} (known: {sorted(REFERENCE_COSTS_S)})")
    return data


def format_prediction(pred: dict, ranks: int) -> str:
    lines = [f"predicted on {ranks} rank(s):", f"{'stage':11s} {'members':>7s} {'wall':>10s} {'idle':>8s}"]
    for name in STAGES:
        p = pred[name]
        idle = max(0.0, p["idle_s"] / (p["wall_s"] * ranks)) if p["wall_s"] else 0.0  # no "-0%" from round-off
        lines.append(f"{name:11s} {p['members']:7d} {p['wall_s'] / 3600:9.2f}h {idle:8.0%}")
    if pred["calibration"]["runs"]:
        lines.append(f"{'calibration':11s} {pred['calibration']['runs']:7d} {pred['calibration']['wall_s'] / 3600:9.2f}h  (runs)")
    lines.append(f"{'total':11s} {'':7s} {pred['total_s'] / 3600:9.2f}h")
    return "\n".join(lines)
