"""Typed, validated configuration (config.yaml).

Every setting is a field of a frozen pydantic model that carries its default, unit, bounds and
meaning; the validator, the documented ``config.yaml`` (``render_default_yaml``) and the error
messages all come from that one declaration. ``load_config`` merges a YAML file and
``--set key.path=value`` overrides onto the defaults and checks every key before any work starts:
unknown keys, wrong types, non-finite numbers and out-of-range values are all reported at once in
one ``ConfigError``, each line naming the key path, what was expected (range, unit) and what was given.
"""

from __future__ import annotations

import copy
import re
import types
import typing
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, create_model
from pydantic_core import PydanticCustomError

from . import constants as C
from .errors import DpotError, DpotWarning
from .physics import gaia
from .physics.frames import SunFrame
from .physics.mock import MOCK_FAMILIES


class ConfigError(DpotError, ValueError):
    """One or more configuration values are unknown, of the wrong type or out of range."""


class ConfigWarning(DpotWarning):
    """A configuration that is valid but probably not what was meant (e.g. a duplicated YAML key)."""


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise PydanticCustomError("bool_not_number", "expected a number, not true/false")
    return value


Int = Annotated[int, BeforeValidator(_not_bool)]
Float = Annotated[float, BeforeValidator(_not_bool)]


def _positive_widths(value: Any) -> Any:
    if not isinstance(value, list) or not value or not all(
        isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in value
    ):
        raise PydanticCustomError("widths", WIDTHS)
    return value


Widths = Annotated[list[int], BeforeValidator(_positive_widths)]
WIDTHS = "a non-empty list of positive integers"
Vector3 = Annotated[list[Float], Field(min_length=3, max_length=3)]


def _field(default: Any, unit: str = "", ge: float | None = None, le: float | None = None, help: str = "",
           expect: str | None = None) -> Any:
    """A config field with its unit, inclusive range [ge, le], meaning and (optionally) how to describe
    what it expects in an error message."""
    extra = {k: v for k, v in (("unit", unit), ("expect", expect)) if v}
    return Field(default, ge=ge, le=le, description=help, json_schema_extra=extra or None)


class Section(BaseModel):
    """A configuration section: frozen, no unknown keys, no NaN or infinite numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RunSection(Section):
    seed: Int = _field(2026, ge=0, help="run seed; every member's seed derives from it and the member id")
    dir: str = _field("runs/example", help="run folder (created); relative paths are relative to the working directory")
    threads: Int = _field(0, ge=0, help="torch CPU threads per process; 0 = the process's share of the cores")
    processes: Int = _field(0, ge=0, help="without an MPI launcher, `run` starts this many local ranks (mpi extra); "
                                          "0 = one per core (or GPU), 1 = one process")
    device: Literal["auto", "cpu", "cuda"] = _field("auto", help="where members train")


def _columns_model(name: str, columns: tuple[str, ...]) -> type[Section]:
    """A section whose keys are the given column names, each defaulting to itself."""
    return create_model(name, __base__=Section, **{c: (str, c) for c in columns})


PhaseSpaceColumns = _columns_model("PhaseSpaceColumns", C.PHASE_SPACE_COLUMNS)
GaiaColumns = _columns_model("GaiaColumns", gaia.COLUMNS)


class CatalogueSection(Section):
    path: str | None = _field(None, help="table of stars (FITS, HDF5, ECSV/CSV, Parquet); null = the built-in mock (<run.dir>/mock.h5)")
    format: Literal["cartesian", "galactocentric", "gaia"] = _field(
        "cartesian",
        help="cartesian: heliocentric Galactic x..vz columns; galactocentric: Galactocentric x..vz; gaia: DR3 observables",
    )
    hdf5_group: str = _field("/", help="group holding the columns in an HDF5 catalogue")
    columns: PhaseSpaceColumns = _field(
        PhaseSpaceColumns(),
        help="column names of x, y, z (kpc), vx, vy, vz (km/s) (cartesian, galactocentric); give only those that differ",
    )
    gaia_columns: GaiaColumns = _field(GaiaColumns(), help="column names of the Gaia DR3 quantities (gaia format); give only those that differ")
    r_max_kpc: Float = _field(1.0, "kpc", ge=0.05, le=10.0, help="selection sphere around the Sun")
    chunk_rows: Int = _field(1_000_000, ge=1000, help="rows read and transformed at a time")


class CutsSection(Section):
    parallax_over_error_min: Float | None = _field(10.0, ge=0.0, help="keep parallax/parallax_error >= this (gaia); null = no cut")
    ruwe_max: Float | None = _field(1.4, ge=0.0, help="keep ruwe <= this (gaia; needs a ruwe column); null = no cut")
    abs_mag_g_min: Float | None = _field(None, "mag", help="keep M_G >= this (gaia; needs phot_g_mean_mag); null = no cut")
    abs_mag_g_max: Float | None = _field(None, "mag", help="keep M_G <= this; null = no cut")
    min_stars: Int = _field(1000, ge=10, help="fewest stars the selection may leave")


class FrameSection(Section):
    r0_kpc: Float = _field(C.R0_KPC, "kpc", ge=4.0, le=12.0, help="Sun - Galactic centre distance")
    z_sun_kpc: Float = _field(C.Z_SUN_KPC, "kpc", ge=-0.2, le=0.2, help="Sun's height above the plane")
    v_sun_kms: Vector3 = _field(list(C.V_SUN_KMS), "km/s", help="Sun's Galactocentric velocity (3 numbers)", expect="3 numbers")
    roll_deg: Float = _field(0.0, "deg", ge=-180.0, le=180.0, help="roll of the Galactocentric frame")
    r0_err_kpc: Float = _field(0.031, "kpc", ge=0.0, help="1-sigma of R0 for x0_v0 draws (GRAVITY Collab. 2018)")
    z_sun_err_kpc: Float = _field(0.0003, "kpc", ge=0.0, help="1-sigma of z_sun (Bennett & Bovy 2019)")
    v_sun_err_kms: Vector3 = _field([3.0, 1.4, 0.09], "km/s", help="1-sigma of v_sun (Drimmel & Poggio 2018; Reid & Brunthaler 2004)",
                                    expect="3 numbers")

    def sun(self) -> SunFrame:
        """The SunFrame of these settings."""
        return SunFrame(self.r0_kpc, self.z_sun_kpc, tuple(float(v) for v in self.v_sun_kms), self.roll_deg)

    def draw_sun(self, seed: int) -> SunFrame:
        """A SunFrame with R0, z_sun and v_sun drawn from their 1-sigma uncertainties (x0_v0 members)."""
        rng = np.random.default_rng(seed)
        r0 = self.r0_kpc + self.r0_err_kpc * rng.standard_normal()
        z = self.z_sun_kpc + self.z_sun_err_kpc * rng.standard_normal()
        v = np.asarray(self.v_sun_kms, dtype=float) + np.asarray(self.v_sun_err_kms, dtype=float) * rng.standard_normal(3)
        return SunFrame(float(r0), float(z), tuple(float(a) for a in v), self.roll_deg)


class MockSection(Section):
    family: Literal[tuple(MOCK_FAMILIES)] = _field("barred_isothermal", help="built-in mock galaxy (docs/method.md, 'The mocks')")
    n_stars: Int = _field(200_000, ge=1000, help="stars drawn inside catalogue.r_max_kpc")
    seed: Int = _field(1, ge=0, help="seed of the mock's random draws")
    noise: StrictBool = _field(False, help="draw per-star Gaia DR3-like errors (magnitude dependent, docs/method.md) and "
                                           "apply them to the observables (read with catalogue.format: gaia); the exact "
                                           "values stay in /truth; false: exact observables with the quoted errors below")
    noise_scale: Float = _field(1.0, ge=0.0, help="multiplies the DR3-like errors (2 = twice DR3's)")
    parallax_error_mas: Float = _field(0.02, "mas", ge=0.0, help="quoted parallax error of every mock star")
    pm_error_mas_yr: Float = _field(0.02, "mas/yr", ge=0.0, help="quoted proper-motion error")
    rv_error_kms: Float = _field(1.0, "km/s", ge=0.0, help="quoted radial-velocity error")


class EnsembleSection(Section):
    df_seed: Int = _field(0, ge=0, help="flows on the data with different seeds (with the bootstrap flows, their mean is "
                                        "the best-fit DF)")
    df_seed_potentials: StrictBool = _field(True, help="also train one potential on each single df_seed flow (the "
                                                       "training noise in the band when there are fewer than 2 bootstrap members)")
    potential_seed: Int = _field(2, ge=0, help="potentials with different seeds on the best-fit DF (the best estimate is their median)")
    obs_noise: Int = _field(0, ge=0, help="flows on data with added noise from the quoted errors, each with a potential "
                                          "(gaia format), per level of obs_noise_levels")
    obs_noise_levels: list[Annotated[float, Field(gt=0)]] = _field(
        [1.0], help="variances of the added noise in units of the quoted errors' (1 = the errors once more); with two "
                    "or more levels (and df_seed members, the same estimator without added noise) every scalar is "
                    "extrapolated to zero noise (SIMEX: value at -1, docs/method.md)",
        expect="a list of positive numbers")
    bootstrap: Int = _field(4, ge=0, help="flows on bootstrap resamples of the stars, each with a potential: their spread "
                                          "is the DF's share of the band (the data's sampling and the flows' training "
                                          "noise); with the df_seed flows, their mean is the best-fit DF")
    x0_v0: Int = _field(0, ge=0, help="potentials on the best-fit DF with R0, z_sun, v_sun drawn from frame.*_err")


class DFSection(Section):
    transforms: Int = _field(6, ge=1, le=64, help="autoregressive transforms in each flow")
    components: Int = _field(2, ge=0, le=16, help="monotone tanh steps per coordinate in each transform, after its "
                                                 "affine map (0 = affine MAF; docs/method.md, 'DF: flows')")
    hidden: Widths = _field([128, 128], help="hidden layer widths of each transform's MADE network", expect=WIDTHS)
    populations: Int = _field(1, ge=1, le=8, help="flows in each DF model, fitted as a mixture sum_k w_k f_k with "
                                                  "their weights, each free to take one stellar population (docs/"
                                                  "method.md, 'DF: flows'; measured, not the default: docs/"
                                                  "recovery.md, 'Mixtures of flows'); 1: a single flow")
    rotate_velocities: StrictBool = _field(False, help="the flows model each star's velocity turned about the Galactic "
                                                       "axis to the Sun's azimuth (determinant 1; docs/method.md, "
                                                       "'DF: flows'); false: heliocentric velocities as they are")
    deconvolve: StrictBool = _field(False, help="fit each flow through the stars' quoted parallax, proper-motion and "
                                                "radial-velocity errors, so that it models the error-free DF (gaia format; "
                                                "3.5 times the training time; docs/method.md, 'Fitting the flows through the "
                                                "errors'); false: the flows model the stars as observed")
    bfloat16_fraction: Float = _field(0.0, ge=0.0, le=1.0, help="fraction of the epochs (the first ones) whose training "
                                      "loss runs with bfloat16 matrix products (torch.autocast) on a CPU that has them "
                                      "natively; the rest, and everything on other CPUs and on GPUs, in float32 (docs/"
                                      "method.md, 'DF: flows'); 0: float32 throughout")
    batch_size: Int = _field(2048, ge=16, help="stars per optimisation step")
    max_epochs: Int = _field(30, ge=1, help="upper bound on passes over the training stars")
    learning_rate: Float = _field(3e-3, ge=1e-6, le=1.0, help="initial Adam learning rate (cosine-decayed)")
    clip_grad_norm: Float = _field(1.0, ge=0.0, help="clip the gradient norm of each step at this value")
    weight_decay: Float = _field(0.0, ge=0.0, help="AdamW weight decay")
    validation_fraction: Float = _field(0.1, ge=0.01, le=0.5, help="shuffled stars held out for early stopping")
    patience: Int = _field(30, ge=1, help="epochs without validation improvement before stopping (the gradients "
                                           "keep improving after the validation loss levels off: docs/recovery.md)")
    checkpoint_every_epochs: Int = _field(1, ge=1, help="epochs between checkpoints")


class CacheSection(Section):
    n_points: Int = _field(100_000, ge=100, help="phase-space points drawn from the flows")
    r_max_kpc: Float = _field(0.9, "kpc", ge=0.01, help="keep points within this distance of the Sun")
    batch_size: Int = _field(20_000, ge=100, help="points per evaluation batch")


class PotentialSection(Section):
    hidden: Widths = _field([128, 128, 128], help="hidden layer widths of the Phi(x) MLP (SiLU)", expect=WIDTHS)
    phi_scale_kms2: Float = _field(1.0e4, "(km/s)^2", ge=1.0, help="output scale of the network")
    steps: Int = _field(1500, ge=1, help="optimisation steps")
    batch_size: Int = _field(2048, ge=16, help="cache points per step")
    penalty_points: Int = _field(256, ge=1, help="cache points per step (of the batch) where the negative-density penalty is evaluated")
    learning_rate: Float = _field(6e-3, ge=1e-6, le=1.0, help="initial Adam learning rate of Phi (cosine-decayed)")
    omega_learning_rate: Float = _field(0.2, "km/s/kpc", ge=0.0, help="Adam step size of Omega_p")
    least_squares_start: StrictBool = _field(
        True, help="start the explicit linear and quadratic terms of Phi and Omega_p at the robust weighted least "
                   "squares solution of the CBE residual (linear in them, the MLP at its initial weights), so the "
                   "training only learns the departures (docs/method.md, 'Potential'); false: start them at 0 and "
                   "omega_init_kms_kpc")
    omega_init_kms_kpc: Float = _field(20.0, "km/s/kpc", help="starting value of Omega_p when least_squares_start is false")
    fixed_omega_kms_kpc: Float | None = _field(None, "km/s/kpc", help="fix Omega_p (0 = static) instead of fitting it")
    weighting: Literal["grad_v", "none"] = _field(
        "grad_v", help="grad_v: each point's CBE residual divided by |grad_v ln f| (times its median over the cache), "
                       "so the steep parts of the DF, where the flows err most, do not dominate the fit; none: the "
                       "reference loss (docs/method.md)")
    alpha: Float = _field(0.05, "kpc/(km/s)", ge=0.0, help="residual softening of the loss: asinh(alpha|r|)/alpha")
    beta: Float = _field(1.0e-3, "kpc^2/(km/s)^2", ge=0.0, help="softening of the negative-density penalty")
    lam: Float = _field(1.0, ge=0.0, help="weight lambda of the negative-density penalty")
    checkpoint_every_steps: Int = _field(500, ge=1, help="steps between checkpoints")


class SummarySection(Section):
    shell_r_min_kpc: Float = _field(0.1, "kpc", ge=0.0, help="inner radius of the averaging shell")
    shell_r_max_kpc: Float = _field(0.8, "kpc", ge=0.01, help="outer radius of the averaging shell")
    arc_dr_kpc: Float = _field(0.05, "kpc", ge=0.001, help="rho(R=R0): half-width in Galactocentric R")
    arc_dz_kpc: Float = _field(0.1, "kpc", ge=0.001, help="rho(R=R0): half-width in height about the Sun")
    grid_spacing_kpc: Float = _field(0.025, "kpc", ge=0.002, le=0.5, help="spacing of the evaluation grid")
    rho_baryon_msun_pc3: Float | None = _field(
        None, "Msun/pc^3", ge=0.0,
        help="baryon density for rho_DM; null = McKee+2015 (0.084) for data, the mock's own disc+bulge for a mock",
    )


MockFamily = Literal[tuple(MOCK_FAMILIES)]


class CalibrationSection(Section):
    realizations: Int = _field(0, ge=0, help="after the run, fit this many realizations of each built-in mock family "
                                             "below with the run's own settings and star count; their mean error is "
                                             "the systematic term of the summary (docs/method.md, 'The systematic "
                                             "term'); each costs about one run; 0 = no systematic term")
    families: Annotated[list[MockFamily], Field(min_length=1)] = _field(
        list(MOCK_FAMILIES), help="the built-in mock families fitted for the systematic term",
        expect="a non-empty list of built-in mock families")


SECTION_HELP = {
    "run": "where and how the job runs",
    "catalogue": "the input stars (Cartesian or Gaia DR3 columns) and the selection sphere",
    "cuts": "quality cuts applied while preparing the sample (each reported with the stars it removed)",
    "frame": "the Sun's Galactocentric position and velocity (astropy v4.0 defaults)",
    "mock": "the built-in exactly stationary mock galaxy (used when catalogue.path is null)",
    "ensemble": "members per uncertainty pipeline (0 switches one off); docs/cluster.md, 'Ensembles and MPI'",
    "df": "DF stage: normalizing flows (masked autoregressive, affine + monotone tanh steps, SiLU) fitted to the stars",
    "cache": "gradient cache: points drawn from the flows, with the mean of their ln f gradients",
    "potential": "potential stage: Phi(x) network + Omega_p fitted to the CBE in the rotating frame",
    "summary": "the reported scalars (docs/method.md, Figure 6 of the paper)",
    "calibration": "the systematic term: the same fit on built-in mocks with known truth (changeable on a finished run)",
}


class Config(Section):
    """The whole configuration: one section per stage of the run (see ``SECTION_HELP``)."""

    run: RunSection = RunSection()
    catalogue: CatalogueSection = CatalogueSection()
    cuts: CutsSection = CutsSection()
    frame: FrameSection = FrameSection()
    mock: MockSection = MockSection()
    ensemble: EnsembleSection = EnsembleSection()
    df: DFSection = DFSection()
    cache: CacheSection = CacheSection()
    potential: PotentialSection = PotentialSection()
    summary: SummarySection = SummarySection()
    calibration: CalibrationSection = CalibrationSection()

    def to_dict(self) -> dict:
        """Plain nested dicts and lists (what config.yaml holds)."""
        return self.model_dump(mode="json")


# --- error messages -----------------------------------------------------------------------------
def _annotation_kind(tp) -> str:
    """How to say what a field of annotation ``tp`` expects, e.g. 'an integer' or 'a number or null'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Annotated:
        return _annotation_kind(args[0])
    if origin in (typing.Union, types.UnionType):
        kinds = [_annotation_kind(a) for a in args if a is not type(None)]
        return " or ".join(kinds) + (" or null" if type(None) in args else "")
    if origin is Literal:
        return f"one of {list(args)}"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    if origin is list:
        return "a list"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "a mapping of keys"
    return str(tp)


def _bounds(info) -> tuple[Any, Any]:
    lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
    hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
    return lo, hi


def _describe(info) -> tuple[str, str]:
    """(what the field expects, its unit in parentheses or '')."""
    extra = info.json_schema_extra or {}
    unit = f" ({extra['unit']})" if extra.get("unit") else ""
    return extra.get("expect") or _annotation_kind(info.annotation), unit


def _message(model: type[BaseModel], loc: tuple, err: dict, data: Any) -> str:
    """One line for one pydantic error: the key path, what was expected, what was given."""
    path, raw = "", data
    for i, part in enumerate(loc):
        if isinstance(part, int) or part not in model.model_fields:
            if err["type"] == "extra_forbidden" and isinstance(part, str):
                known = ", ".join(sorted(model.model_fields))
                what = "unknown column key" if model in (PhaseSpaceColumns, GaiaColumns) else "unknown key"
                return f"{path + '.' if path else ''}{part}: {what} (known: {known})"
            break
        path = f"{path}.{part}" if path else part
        raw = raw.get(part) if isinstance(raw, dict) else raw
        info = model.model_fields[part]
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel) and i < len(loc) - 1:
            model = sub
            continue
        expect, unit = _describe(info)
        if err["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
            lo, hi = _bounds(info)
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            return f"{path}: expected a value in {rng}{unit}, got {raw!r}"
        if err["type"] == "finite_number":
            return f"{path}: expected a finite number{unit}, got {raw!r}"
        return f"{path}: expected {expect}{unit}, got {raw!r}"
    if isinstance(raw, dict) or not path:
        return f"{path or 'config'}: expected a mapping of keys, got {raw!r}"
    return f"{path}: {err['msg']}"


def _cross_check(cfg: Config) -> list[str]:
    """Checks that involve more than one key."""
    out = []
    e, s = cfg.ensemble, cfg.summary
    if e.obs_noise > 0 and cfg.catalogue.format != "gaia":
        out.append("ensemble.obs_noise: needs catalogue.format: gaia (noise is drawn in observable space)")
    if e.obs_noise > 0 and len(e.obs_noise_levels) >= 2 and not (e.df_seed > 0 and e.df_seed_potentials):
        out.append("ensemble.obs_noise_levels: the extrapolation to zero noise (SIMEX) compares the obs_noise members "
                   "with single flows on the data itself: set df_seed > 0 with df_seed_potentials: true")
    if e.potential_seed + e.obs_noise + e.bootstrap + e.x0_v0 == 0 and not (e.df_seed_potentials and e.df_seed):
        out.append("ensemble: no potential member: set potential_seed, x0_v0, obs_noise, bootstrap > 0 or df_seed > 0 "
                   "with df_seed_potentials: true")
    if e.potential_seed + e.x0_v0 > 0 and e.df_seed + e.bootstrap == 0:
        out.append("ensemble: potential_seed and x0_v0 train on the best-fit DF, the mean of the df_seed and bootstrap "
                   "flows: set df_seed or bootstrap > 0")
    if cfg.df.deconvolve and cfg.catalogue.format != "gaia":
        out.append("df.deconvolve: needs catalogue.format: gaia (the errors are quoted for the observables)")
    if cfg.df.deconvolve and e.obs_noise > 0:
        out.append("df.deconvolve: the obs_noise members add noise that the flows would then remove again; use one "
                   "correction (df.deconvolve, or ensemble.obs_noise with SIMEX), not both")
    if cfg.df.deconvolve and cfg.catalogue.path is None and not cfg.mock.noise:
        out.append("df.deconvolve: the built-in mock's observables are exact unless mock.noise is true; deconvolving "
                   "them would sharpen the DF")
    if s.shell_r_min_kpc >= s.shell_r_max_kpc:
        out.append("summary.shell_r_min_kpc: must be smaller than summary.shell_r_max_kpc")
    if s.shell_r_max_kpc > cfg.catalogue.r_max_kpc:
        out.append(f"summary.shell_r_max_kpc: must not exceed catalogue.r_max_kpc ({cfg.catalogue.r_max_kpc} kpc)")
    if cfg.cache.r_max_kpc > cfg.catalogue.r_max_kpc:
        out.append(f"cache.r_max_kpc: must not exceed catalogue.r_max_kpc ({cfg.catalogue.r_max_kpc} kpc)")
    return out


# --- YAML ---------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """YAML 1.1's safe loader, except that 1e5 (exponent without a dot) is a number, as in YAML 1.2,
    and a key given twice in one mapping is reported (the last value is used)."""

    duplicates: list[str]


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            loader.duplicates.append(f"{key!r} (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def parse_yaml(text: str, where: str) -> Any:
    """YAML text -> Python objects (see ``_Loader``); duplicated keys raise a ConfigWarning naming ``where``."""
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    for dup in loader.duplicates:
        warnings.warn(f"{where}: key {dup} is given more than once; the last value is used", ConfigWarning, stacklevel=2)
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a', 'b', 'c'], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key in {key!r}")
    if not raw.strip():
        raise ConfigError(f"--set {key}: empty value (write {key}=null for no value)")
    try:
        value = parse_yaml(raw, f"--set {key}")
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return parts, value


def config_from_dict(data: dict | None, overrides: typing.Sequence[str] = ()) -> Config:
    """Build and validate a Config from nested dicts plus 'key.path=value' overrides."""
    data = copy.deepcopy(data) if data else {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: expected a mapping of sections, got {data!r}")
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise ConfigError(f"--set {'.'.join(parts)}: {p} is not a section")
            node = node[p]
        node[parts[-1]] = value
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        lines = list(dict.fromkeys(_message(Config, tuple(e["loc"]), e, data) for e in exc.errors()))
        raise ConfigError("\n".join(lines)) from None
    problems = _cross_check(cfg)
    if problems:
        raise ConfigError("\n".join(problems))
    return cfg


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load config.yaml (or only defaults when path is None), apply overrides, validate."""
    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = parse_yaml(p.read_text(encoding="utf-8"), str(p)) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {p}: not UTF-8 text ({exc})") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML: {exc}") from None
    return config_from_dict(data, overrides)


def render_default_yaml() -> str:
    """config.yaml with every key at its default, commented with its unit, range and meaning."""
    lines = ["# dpot-hpc configuration: every key, at its default. Units are in the comments.",
             "# Override any key on the command line with --set section.key=value.", ""]
    defaults = Config().to_dict()
    for sec, sec_info in Config.model_fields.items():
        lines.append(f"{sec}:  # {SECTION_HELP[sec]}")
        for name, info in sec_info.annotation.model_fields.items():
            value = yaml.safe_dump(defaults[sec][name], default_flow_style=True, width=10_000).strip()
            value = value.removesuffix("...").strip()
            notes = [info.description]
            extra = info.json_schema_extra or {}
            if extra.get("unit"):
                notes.append(f"[{extra['unit']}]")
            lo, hi = _bounds(info)
            if lo is not None or hi is not None:
                notes.append(f"range {lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}")
            if typing.get_origin(info.annotation) is Literal:
                notes.append("one of " + "/".join(typing.get_args(info.annotation)))
            lines.append(f"  {name}: {value}  # {'; '.join(notes)}")
        lines.append("")
    return "\n".join(lines)
