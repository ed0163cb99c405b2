"""The ensemble plan: which members exist, what each one reads and writes, and in which stage.

Pipelines (docs/method.md, "Uncertainty pipelines"), sizes in the config's ``ensemble`` section:
  df_seed         N flows on the prepared sample (with ensemble.df_seed_potentials, also one potential
                  on each single flow)
  bootstrap       flows on stars resampled with replacement, each with a potential
                  (the mean of the df_seed and bootstrap flows is the best-fit DF: a bagged DF)
  potential_seed  potentials on the best-fit DF (the best estimate is their median)
  obs_noise       flows on samples re-prepared with Gaussian noise from the quoted errors, each with a potential
  x0_v0           potentials on the best-fit DF with R0, z_sun and v_sun drawn from their uncertainties
Stages: df -> cache -> potential -> summary; members of one stage are independent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..config import Config
from ..data.h5io import atomic_write_text
from ..data.runfolder import RunFolder
from ..seeds import derived_seed

STAGES = ("df", "cache", "potential")
PIPELINES = ("df_seed", "potential_seed", "obs_noise", "bootstrap", "x0_v0")


@dataclass(frozen=True)
class MemberSpec:
    """One unit of work: kind 'df', 'cache' or 'potential', its pipeline and index.

    The best-fit cache is MemberSpec('cache', 'best_fit', 0).
    """

    kind: str
    pipeline: str
    index: int

    @property
    def id(self) -> str:
        return "best_fit" if self.pipeline == "best_fit" else f"{self.pipeline}-{self.index:03d}"

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.id}"

    def path(self, folder: RunFolder):
        """This member's output file in the run folder."""
        return folder.member(self.kind, self.id)

    def log_path(self, folder: RunFolder):
        """This member's log file in the run folder."""
        return folder.log(self.kind, self.id)

    def seed(self, run_seed: int) -> int:
        return derived_seed(run_seed, self.key)


BEST_FIT = MemberSpec("cache", "best_fit", 0)


def noise_pipeline(level: float) -> str:
    """The pipeline of the obs_noise members at one level: 'obs_noise' for 1, 'obs_noise_x2' for 2."""
    return "obs_noise" if level == 1.0 else f"obs_noise_x{level:g}"


def noise_level(pipeline: str) -> float | None:
    """The added-noise variance (in units of the quoted errors') of an obs_noise pipeline, else None."""
    if pipeline == "obs_noise":
        return 1.0
    return float(pipeline[len("obs_noise_x"):]) if pipeline.startswith("obs_noise_x") else None


def df_members(cfg: Config) -> list[MemberSpec]:
    e = cfg.ensemble
    pipes = [("df_seed", e.df_seed), *((noise_pipeline(lv), e.obs_noise) for lv in e.obs_noise_levels),
             ("bootstrap", e.bootstrap)]
    return [MemberSpec("df", p, i) for p, n in pipes for i in range(n)]


def cache_members(cfg: Config) -> list[MemberSpec]:
    e = cfg.ensemble
    single = [s for s in df_members(cfg) if s.pipeline != "df_seed" or e.df_seed_potentials]
    needs_best = e.potential_seed > 0 or e.x0_v0 > 0 or not single
    return ([BEST_FIT] if needs_best else []) + [MemberSpec("cache", s.pipeline, s.index) for s in single]


def potential_members(cfg: Config) -> list[MemberSpec]:
    e = cfg.ensemble
    out = [MemberSpec("potential", "potential_seed", i) for i in range(e.potential_seed)]
    out += [MemberSpec("potential", c.pipeline, c.index) for c in cache_members(cfg) if c != BEST_FIT]
    out += [MemberSpec("potential", "x0_v0", i) for i in range(e.x0_v0)]
    return out


def cache_flows(cfg: Config, cache: MemberSpec) -> list[MemberSpec]:
    """The DF members a cache is built from: for the best fit every flow on the data or on a bootstrap
    resample of it (df_seed and bootstrap; their mean is a bagged DF), else the cache's own flow."""
    if cache == BEST_FIT:
        return [s for s in df_members(cfg) if s.pipeline in ("df_seed", "bootstrap")]
    return [MemberSpec("df", cache.pipeline, cache.index)]


def potential_cache(spec: MemberSpec) -> MemberSpec:
    """The cache a potential member trains on."""
    if spec.pipeline in ("potential_seed", "x0_v0"):
        return BEST_FIT
    return MemberSpec("cache", spec.pipeline, spec.index)


def stages(cfg: Config) -> list[tuple[str, list[MemberSpec]]]:
    """[(stage name, its members in plan order)] for the stages in ``STAGES``."""
    return list(zip(STAGES, (df_members(cfg), cache_members(cfg), potential_members(cfg))))


def inputs(cfg: Config, spec: MemberSpec, folder: RunFolder) -> str:
    """What a member reads, in words (for the plan table)."""
    if spec.kind == "df":
        prepared = folder.relative(folder.prepared)
        if noise_level(spec.pipeline):
            return f"{folder.relative(folder.sample(spec.id))} (noise of variance {noise_level(spec.pipeline):g} x the quoted errors')"
        return {"df_seed": prepared, "bootstrap": f"{prepared}, rows resampled with replacement"}[spec.pipeline]
    if spec.kind == "cache":
        return ", ".join(s.key for s in cache_flows(cfg, spec))
    extra = " with drawn R0, z_sun, v_sun" if spec.pipeline == "x0_v0" else ""
    return potential_cache(spec).key + extra


def plan_rows(cfg: Config, folder: RunFolder) -> list[dict]:
    """One row per member: stage, id, kind, pipeline, index, seed, inputs, output (relative path)."""
    rows = []
    for stage, specs in stages(cfg):
        for s in specs:
            rows.append({"stage": stage, "id": s.id, "kind": s.kind, "pipeline": s.pipeline, "index": s.index,
                         "seed": s.seed(cfg.run.seed), "inputs": inputs(cfg, s, folder),
                         "output": folder.relative(s.path(folder))})
    return rows


def format_plan(rows: list[dict]) -> str:
    wid = max([20, *(len(r["id"]) for r in rows)])
    wout = max([32, *(len(r["output"]) for r in rows)])
    head = f"{'stage':9s} {'member':{wid}s} {'seed':>20s}  {'output':{wout}s} inputs"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['stage']:9s} {r['id']:{wid}s} {r['seed']:20d}  {r['output']:{wout}s} {r['inputs']}")
    return "\n".join(lines)


def write_plan(cfg: Config, folder: RunFolder) -> list[dict]:
    """Write plan.json (stages and every member) into the run folder; return the rows."""
    rows = plan_rows(cfg, folder)
    atomic_write_text(folder.plan, json.dumps({"stages": list(STAGES) + ["summary"], "members": rows}, indent=2))
    return rows
