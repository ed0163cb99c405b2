"""Typed, validated configuration (config.yaml).

Every setting is a field of a frozen dataclass with its unit and allowed range in the field's
metadata. ``load_config`` merges a YAML file and ``--set key.path=value`` overrides onto the
defaults and checks every key before any work starts: an unknown key, a wrong type or a value out
of range raises ``ConfigError`` naming the key path and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import constants as C


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def _f(default, unit: str = "", lo=None, hi=None, choices=None, help: str = ""):
    """A config field with unit, inclusive range [lo, hi] and allowed choices."""
    meta = {"unit": unit, "lo": lo, "hi": hi, "choices": choices, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunSection:
    seed: int = _f(2026, lo=0, help="run seed; every member's seed derives from it and the member id")
    dir: str = _f("runs/example", help="run folder (created); relative paths are relative to the working directory")
    threads: int = _f(0, lo=0, help="torch CPU threads per process; 0 = all cores")
    device: str = _f("auto", choices=["auto", "cpu", "cuda"], help="where members train")


GAIA_COLUMNS = ("ra", "dec", "parallax", "pmra", "pmdec", "radial_velocity", "parallax_error", "pmra_error",
                "pmdec_error", "radial_velocity_error", "phot_g_mean_mag", "ruwe", "source_id")


@dataclass(frozen=True)
class CatalogueSection:
    path: str | None = _f(None, help="table of stars (FITS, HDF5, ECSV/CSV, Parquet); null = the built-in mock (<run.dir>/mock.h5)")
    format: str = _f(
        "cartesian", choices=["cartesian", "galactocentric", "gaia"],
        help="cartesian: heliocentric Galactic x..vz columns; galactocentric: Galactocentric x..vz; gaia: DR3 observables",
    )
    hdf5_group: str = _f("/", help="group holding the columns in an HDF5 catalogue")
    columns: dict = _f(
        {c: c for c in C.PHASE_SPACE_COLUMNS},
        help="column names of x, y, z (kpc), vx, vy, vz (km/s) (cartesian, galactocentric); give only those that differ",
    )
    gaia_columns: dict = _f({c: c for c in GAIA_COLUMNS}, help="column names of the Gaia DR3 quantities (gaia format); give only those that differ")
    r_max_kpc: float = _f(1.0, "kpc", lo=0.05, hi=10.0, help="selection sphere around the Sun")
    chunk_rows: int = _f(1_000_000, lo=1000, help="rows read and transformed at a time")


@dataclass(frozen=True)
class CutsSection:
    parallax_over_error_min: float | None = _f(10.0, lo=0.0, help="keep parallax/parallax_error >= this (gaia); null = no cut")
    ruwe_max: float | None = _f(1.4, lo=0.0, help="keep ruwe <= this (gaia; needs a ruwe column); null = no cut")
    abs_mag_g_min: float | None = _f(None, "mag", help="keep M_G >= this (gaia; needs phot_g_mean_mag); null = no cut")
    abs_mag_g_max: float | None = _f(None, "mag", help="keep M_G <= this; null = no cut")
    min_stars: int = _f(1000, lo=10, help="fewest stars the selection may leave")


@dataclass(frozen=True)
class FrameSection:
    r0_kpc: float = _f(C.R0_KPC, "kpc", lo=4.0, hi=12.0, help="Sun - Galactic centre distance")
    z_sun_kpc: float = _f(C.Z_SUN_KPC, "kpc", lo=-0.2, hi=0.2, help="Sun's height above the plane")
    v_sun_kms: list = _f(list(C.V_SUN_KMS), "km/s", help="Sun's Galactocentric velocity (3 numbers)")
    roll_deg: float = _f(0.0, "deg", lo=-180.0, hi=180.0, help="roll of the Galactocentric frame")
    r0_err_kpc: float = _f(0.031, "kpc", lo=0.0, help="1-sigma of R0 for x0_v0 draws (GRAVITY Collab. 2018)")
    z_sun_err_kpc: float = _f(0.0003, "kpc", lo=0.0, help="1-sigma of z_sun (Bennett & Bovy 2019)")
    v_sun_err_kms: list = _f([3.0, 1.4, 0.09], "km/s", help="1-sigma of v_sun (Drimmel & Poggio 2018; Reid & Brunthaler 2004)")


@dataclass(frozen=True)
class MockSection:
    n_stars: int = _f(200_000, lo=1000, help="stars drawn inside catalogue.r_max_kpc")
    seed: int = _f(1, lo=0, help="seed of the mock's random draws")
    omega_p_kms_kpc: float = _f(28.2, "km/s/kpc", lo=0.0, hi=100.0, help="true pattern speed")
    components: list = _f(
        [{"sigma_kms": 20.0, "fraction": 0.6}, {"sigma_kms": 35.0, "fraction": 0.4}],
        help="isothermal components g(E_J): velocity dispersion (km/s) and fraction of stars",
    )
    disc_mass_msun: float = _f(6.0e10, "Msun", lo=0.0, help="Miyamoto-Nagai disc mass")
    disc_a_kpc: float = _f(3.0, "kpc", lo=0.01, help="Miyamoto-Nagai scale length")
    disc_b_kpc: float = _f(0.28, "kpc", lo=0.01, help="Miyamoto-Nagai scale height")
    bulge_mass_msun: float = _f(5.0e9, "Msun", lo=0.0, help="Hernquist bulge mass")
    bulge_a_kpc: float = _f(0.6, "kpc", lo=0.01, help="Hernquist scale radius")
    halo_mass_msun: float = _f(6.5e11, "Msun", lo=0.0, help="NFW mass parameter M_s = 4 pi rho_s r_s^3")
    halo_rs_kpc: float = _f(16.0, "kpc", lo=0.1, help="NFW scale radius")
    bar_strength: float = _f(0.01, lo=0.0, hi=0.2, help="Dehnen alpha: bar quadrupole at R0 in units of v_c^2/3")
    bar_radius_kpc: float = _f(3.5, "kpc", lo=0.5, hi=7.0, help="bar radius (potential harmonic outside)")
    bar_angle_deg: float = _f(27.0, "deg", lo=-90.0, hi=90.0, help="angle Sun-centre line to bar near side")
    parallax_error_mas: float = _f(0.02, "mas", lo=0.0, help="quoted parallax error of every mock star")
    pm_error_mas_yr: float = _f(0.02, "mas/yr", lo=0.0, help="quoted proper-motion error")
    rv_error_kms: float = _f(1.0, "km/s", lo=0.0, help="quoted radial-velocity error")


@dataclass(frozen=True)
class EnsembleSection:
    df_seed: int = _f(3, lo=1, help="flows on the data with different seeds; their median is the best-fit DF")
    df_seed_potentials: bool = _f(False, help="also train one potential on each single df_seed flow (that pipeline's spread)")
    potential_seed: int = _f(2, lo=0, help="potentials with different seeds on the best-fit DF (the best estimate)")
    obs_noise: int = _f(0, lo=0, help="flows on data with added noise from the quoted errors, each with a potential (gaia format)")
    bootstrap: int = _f(0, lo=0, help="flows on bootstrap resamples of the stars, each with a potential")
    x0_v0: int = _f(0, lo=0, help="potentials on the best-fit DF with R0, z_sun, v_sun drawn from frame.*_err")


@dataclass(frozen=True)
class DFSection:
    transforms: int = _f(6, lo=1, hi=64, help="affine autoregressive transforms in each flow")
    hidden: list = _f([128, 128], help="hidden layer widths of each transform's MADE network")
    batch_size: int = _f(2048, lo=16, help="stars per optimisation step")
    max_epochs: int = _f(25, lo=1, help="upper bound on passes over the training stars")
    learning_rate: float = _f(1e-3, lo=1e-6, hi=1.0, help="initial Adam learning rate (cosine-decayed)")
    clip_grad_norm: float = _f(1.0, lo=0.0, help="clip the gradient norm of each step at this value")
    weight_decay: float = _f(0.0, lo=0.0, help="AdamW weight decay")
    validation_fraction: float = _f(0.1, lo=0.01, hi=0.5, help="shuffled stars held out for early stopping")
    patience: int = _f(6, lo=1, help="epochs without validation improvement before stopping")
    checkpoint_every_epochs: int = _f(1, lo=1, help="epochs between checkpoints")


@dataclass(frozen=True)
class CacheSection:
    n_points: int = _f(100_000, lo=100, help="phase-space points drawn from the flows")
    r_max_kpc: float = _f(0.9, "kpc", lo=0.01, help="keep points within this distance of the Sun")
    batch_size: int = _f(20_000, lo=100, help="points per evaluation batch")


@dataclass(frozen=True)
class PotentialSection:
    hidden: list = _f([128, 128, 128], help="hidden layer widths of the Phi(x) MLP (SiLU)")
    phi_scale_kms2: float = _f(1.0e4, "(km/s)^2", lo=1.0, help="output scale of the network")
    steps: int = _f(3000, lo=1, help="optimisation steps")
    batch_size: int = _f(2048, lo=16, help="cache points per step")
    penalty_points: int = _f(256, lo=1, help="cache points per step (of the batch) where the negative-density penalty is evaluated")
    learning_rate: float = _f(2e-3, lo=1e-6, hi=1.0, help="initial Adam learning rate of Phi (cosine-decayed)")
    omega_learning_rate: float = _f(0.2, "km/s/kpc", lo=0.0, help="Adam step size of Omega_p")
    omega_init_kms_kpc: float = _f(20.0, "km/s/kpc", help="starting value of Omega_p")
    fixed_omega_kms_kpc: float | None = _f(None, "km/s/kpc", help="fix Omega_p (0 = static) instead of fitting it")
    alpha: float = _f(0.05, "kpc/(km/s)", lo=0.0, help="residual softening of the loss: asinh(alpha|r|)/alpha")
    beta: float = _f(1.0e-3, "kpc^2/(km/s)^2", lo=0.0, help="softening of the negative-density penalty")
    lam: float = _f(1.0, lo=0.0, help="weight lambda of the negative-density penalty")
    checkpoint_every_steps: int = _f(500, lo=1, help="steps between checkpoints")


@dataclass(frozen=True)
class SummarySection:
    shell_r_min_kpc: float = _f(0.1, "kpc", lo=0.0, help="inner radius of the averaging shell")
    shell_r_max_kpc: float = _f(0.8, "kpc", lo=0.01, help="outer radius of the averaging shell")
    arc_dr_kpc: float = _f(0.05, "kpc", lo=0.001, help="rho(R=R0): half-width in Galactocentric R")
    arc_dz_kpc: float = _f(0.1, "kpc", lo=0.001, help="rho(R=R0): half-width in height about the Sun")
    grid_spacing_kpc: float = _f(0.025, "kpc", lo=0.002, hi=0.5, help="spacing of the evaluation grid")
    rho_baryon_msun_pc3: float | None = _f(
        None, "Msun/pc^3", lo=0.0,
        help="baryon density for rho_DM; null = McKee+2015 (0.084) for data, the mock's own disc+bulge for a mock",
    )


@dataclass(frozen=True)
class Config:
    run: RunSection = field(default_factory=RunSection)
    catalogue: CatalogueSection = field(default_factory=CatalogueSection)
    cuts: CutsSection = field(default_factory=CutsSection)
    frame: FrameSection = field(default_factory=FrameSection)
    mock: MockSection = field(default_factory=MockSection)
    ensemble: EnsembleSection = field(default_factory=EnsembleSection)
    df: DFSection = field(default_factory=DFSection)
    cache: CacheSection = field(default_factory=CacheSection)
    potential: PotentialSection = field(default_factory=PotentialSection)
    summary: SummarySection = field(default_factory=SummarySection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_dir(self) -> Path:
        return Path(self.run.dir)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _check_value(path: str, value: Any, tp, meta: dict) -> Any:
    """Coerce/check one leaf value against its annotated type and metadata."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
    elif tp is float:
        if isinstance(value, str):  # PyYAML reads 1e9 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number{_unit(meta)}, got {value!r}")
        value = float(value)
    elif tp is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        value = int(value)
    elif tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
    elif tp is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
    elif tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(f"{path}: expected one of {meta['choices']}, got {value!r}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(f"{path}: expected a value in {rng}{_unit(meta)}, got {value!r}")
    return value


def _unit(meta: dict) -> str:
    return f" ({meta['unit']})" if meta.get("unit") else ""


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix + '.' if prefix else ''}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})"
        )
    kwargs = {}
    for name, f in fields.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in data:
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, data[name] or {}, path)
        else:
            value = _check_value(path, data[name], tp, dict(f.metadata))
            if tp is dict:  # mappings (column names) merge over their defaults
                value = {**f.default_factory(), **value}
            kwargs[name] = value
    return cls(**kwargs)


def _validate_cross(cfg: Config) -> None:
    """Checks that involve more than one key or the structure of list/dict values."""
    def err(path, msg):
        raise ConfigError(f"{path}: {msg}")

    for key, vec in (("frame.v_sun_kms", cfg.frame.v_sun_kms), ("frame.v_sun_err_kms", cfg.frame.v_sun_err_kms)):
        if len(vec) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vec):
            err(key, f"expected 3 numbers (km/s), got {vec!r}")

    for key, widths in (("df.hidden", cfg.df.hidden), ("potential.hidden", cfg.potential.hidden)):
        if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
            err(key, f"expected a non-empty list of positive integers, got {widths!r}")
    comps = cfg.mock.components
    if not comps:
        err("mock.components", "expected at least one component")
    for i, c in enumerate(comps):
        path = f"mock.components[{i}]"
        if not isinstance(c, dict) or set(c) != {"sigma_kms", "fraction"}:
            err(path, f"expected a mapping with keys sigma_kms and fraction, got {c!r}")
        for k in ("sigma_kms", "fraction"):
            if isinstance(c[k], bool) or not isinstance(c[k], (int, float)) or c[k] <= 0:
                err(f"{path}.{k}", f"expected a positive number, got {c[k]!r}")
    for key, known in (("catalogue.columns", C.PHASE_SPACE_COLUMNS), ("catalogue.gaia_columns", GAIA_COLUMNS)):
        mapping = getattr(cfg.catalogue, key.split(".")[1])
        extra = [c for c in mapping if c not in known]
        if extra:
            err(f"{key}.{extra[0]}", f"unknown column key (known: {', '.join(known)})")
        bad = [k for k, v in mapping.items() if not isinstance(v, str)]
        if bad:
            err(f"{key}.{bad[0]}", f"expected a column name, got {mapping[bad[0]]!r}")
    if cfg.ensemble.obs_noise > 0 and cfg.catalogue.format != "gaia":
        err("ensemble.obs_noise", "needs catalogue.format: gaia (noise is drawn in observable space)")
    if cfg.ensemble.potential_seed + cfg.ensemble.obs_noise + cfg.ensemble.bootstrap + cfg.ensemble.x0_v0 == 0 and not cfg.ensemble.df_seed_potentials:
        err("ensemble", "no potential member: set potential_seed, x0_v0, obs_noise, bootstrap > 0 or df_seed_potentials: true")
    if cfg.summary.shell_r_min_kpc >= cfg.summary.shell_r_max_kpc:
        err("summary.shell_r_min_kpc", "must be smaller than summary.shell_r_max_kpc")
    if cfg.summary.shell_r_max_kpc > cfg.catalogue.r_max_kpc:
        err("summary.shell_r_max_kpc", f"must not exceed catalogue.r_max_kpc ({cfg.catalogue.r_max_kpc} kpc)")
    if cfg.cache.r_max_kpc > cfg.catalogue.r_max_kpc:
        err("cache.r_max_kpc", f"must not exceed catalogue.r_max_kpc ({cfg.catalogue.r_max_kpc} kpc)")


def parse_override(text: str) -> tuple[list[str], Any]:
    """'a.b.c=value' -> (['a', 'b', 'c'], YAML-parsed value)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key.path=value")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {text!r}: empty key in {key!r}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return parts, value


def config_from_dict(data: dict, overrides: typing.Sequence[str] = ()) -> Config:
    """Build and validate a Config from nested dicts plus 'key.path=value' overrides."""
    import copy

    data = copy.deepcopy(data) if data else {}
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            if not isinstance(node.setdefault(p, {}), dict):
                raise ConfigError(f"--set {'.'.join(parts)}: {p} is not a section")
            node = node[p]
        node[parts[-1]] = value
    cfg = _build(Config, data, "")
    _validate_cross(cfg)
    return cfg


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Load config.yaml (or only defaults when path is None), apply overrides, validate."""
    data = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p}: not valid YAML: {exc}") from None
    return config_from_dict(data, overrides)


def sun_frame(cfg: Config):
    """The SunFrame described by the frame section."""
    from .frames import SunFrame

    f = cfg.frame
    return SunFrame(f.r0_kpc, f.z_sun_kpc, tuple(float(v) for v in f.v_sun_kms), f.roll_deg)


SECTION_HELP = {
    "run": "where and how the job runs",
    "catalogue": "the input stars (Cartesian or Gaia DR3 columns) and the selection sphere",
    "cuts": "quality cuts applied while preparing the sample (each reported with the stars it removed)",
    "frame": "the Sun's Galactocentric position and velocity (astropy v4.0 defaults)",
    "mock": "the built-in exactly stationary mock galaxy (used when catalogue.path is null)",
    "ensemble": "members per uncertainty pipeline (0 switches one off); see README, 'Ensembles'",
    "df": "DF stage: normalizing flows (masked autoregressive, affine, SiLU) fitted to the stars",
    "cache": "gradient cache: points drawn from the flows, with the median of their ln f gradients",
    "potential": "potential stage: Phi(x) network + Omega_p fitted to the CBE in the rotating frame",
    "summary": "the reported scalars (METHOD.md, Figure 6 of the paper)",
}


def render_default_yaml() -> str:
    """config.yaml with every key at its default, commented with its unit, range and meaning."""
    lines = ["# dpot-hpc configuration: every key, at its default. Units are in the comments.",
             "# Override any key on the command line with --set section.key=value.", ""]
    defaults = Config()
    for sec in dataclasses.fields(Config):
        lines.append(f"{sec.name}:  # {SECTION_HELP[sec.name]}")
        obj = getattr(defaults, sec.name)
        for f in dataclasses.fields(obj):
            m = f.metadata
            value = yaml.safe_dump(getattr(obj, f.name), default_flow_style=True, width=10_000).strip()
            if value.endswith("\n..."):
                value = value[:-4].strip()
            if value.endswith("..."):
                value = value[:-3].strip()
            notes = [m["help"]]
            if m.get("unit"):
                notes.append(f"[{m['unit']}]")
            if m.get("lo") is not None or m.get("hi") is not None:
                notes.append(f"range {m['lo'] if m['lo'] is not None else '-inf'}..{m['hi'] if m['hi'] is not None else 'inf'}")
            if m.get("choices"):
                notes.append("one of " + "/".join(m["choices"]))
            lines.append(f"  {f.name}: {value}  # {'; '.join(notes)}")
        lines.append("")
    return "\n".join(lines)
