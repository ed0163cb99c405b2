"""The run folder: the one owner of every path of a run, and its setup.

Layout (``RunFolder`` spells every name; nothing else does):
  config.yaml                 the resolved configuration of the run (checked on every re-run)
  plan.json                   the members, their seeds, inputs and outputs, by stage
  mock.h5                     the built-in mock and its truth (when catalogue.path is null)
  prepared.h5                 the prepared sample (cuts, heliocentric Cartesian stars, provenance)
  samples/<member>.h5         re-prepared samples with added noise (obs_noise members)
  df/<member>.h5              DF members            cache/best_fit.h5, cache/<member>.h5  gradient caches
  potential/<member>.h5       potential members     logs/<kind>-<member>.log  one log per member
  logs/slurm/                 Slurm output          slurm/  the generated batch scripts
  .claims/                    the MPI driver's member claims (removed when a run ends)
  summary.json, summary.h5    per-pipeline statistics, best estimate, combined uncertainty, truth;
                              summary.h5 also the best-estimate fields on two map planes
  report/index.html, report/<figure>.png   the report (``dpot-hpc report``; figures in REPORT_FIGURES)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import yaml

from ..config import Config, ConfigError, config_from_dict, parse_yaml
from .h5io import atomic_write_text
from .mockfile import MockTruth, read_truth, write_mock
from .prepare import prepare_sample

#: The report's figures, report/<name>.png, in the order index.html shows them.
REPORT_FIGURES = ("scalars", "df_check", "maps", "residuals", "learning_curves")

#: Config keys that may change between invocations on the same run folder.
RUNTIME_KEYS = {("run", "threads"), ("run", "device"), ("run", "dir")}


class RunFolderError(RuntimeError):
    """The run folder was made with an incompatible configuration, or is not set up."""


def config_differences(a: dict, b: dict, prefix: tuple = ()) -> list[str]:
    """'key.path: old in the folder, new now' for every setting that differs (runtime keys excepted)."""
    out = []
    for k in sorted(set(a) | set(b)):
        path = (*prefix, k)
        if path in RUNTIME_KEYS:
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_differences(va, vb, path)
        elif va != vb:
            out.append(f"{'.'.join(path)}: {va!r} in the folder, {vb!r} now")
    return out


@dataclass(frozen=True)
class RunFolder:
    """Every path of one run, its mock truth, and ``setup``.

    root: the folder (``run.dir``). catalogue_path: the configured catalogue, or None for the
    built-in mock, which lives in the folder as mock.h5.
    """

    root: Path
    catalogue_path: Path | None = None

    @classmethod
    def of(cls, cfg: Config) -> RunFolder:
        """The run folder a configuration describes (nothing is created)."""
        path = cfg.catalogue.path
        return cls(Path(cfg.run.dir), Path(path) if path is not None else None)

    @classmethod
    def open(cls, root: str | Path) -> tuple[RunFolder, Config]:
        """An existing run folder and the configuration in its config.yaml, with run.dir = root (so
        a folder copied from elsewhere, e.g. a cluster, works where it is now)."""
        path = cls(Path(root)).config
        if not path.is_file():
            raise RunFolderError(f"{root} is not a run folder: {path} does not exist")
        try:
            data = parse_yaml(path.read_text(), str(path)) or {}
            data.setdefault("run", {})["dir"] = str(root)
            cfg = config_from_dict(data)
        except (ConfigError, yaml.YAMLError) as exc:
            raise RunFolderError(f"{path} was written by another version of dpot-hpc ({exc})") from None
        return cls.of(cfg), cfg

    # --- paths -----------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def mock(self) -> Path:
        return self.root / "mock.h5"

    @property
    def catalogue(self) -> Path:
        """The input catalogue: the configured file, or the built-in mock."""
        return self.catalogue_path if self.catalogue_path is not None else self.mock

    @property
    def prepared(self) -> Path:
        return self.root / "prepared.h5"

    def sample(self, member_id: str) -> Path:
        """A member's own re-prepared sample (obs_noise)."""
        return self.root / "samples" / f"{member_id}.h5"

    def member(self, kind: str, member_id: str) -> Path:
        """The output file of a member of kind 'df', 'cache' or 'potential'."""
        return self.root / kind / f"{member_id}.h5"

    def member_files(self, kind: str) -> list[Path]:
        """Every file of that member kind present in the folder, sorted by name."""
        return sorted((self.root / kind).glob("*.h5"))

    def log(self, kind: str, member_id: str) -> Path:
        return self.root / "logs" / f"{kind}-{member_id}.log"

    @property
    def slurm_scripts(self) -> Path:
        return self.root / "slurm"

    @property
    def slurm_logs(self) -> Path:
        return self.root / "logs" / "slurm"

    @property
    def claims(self) -> Path:
        return self.root / ".claims"

    @property
    def summary_json(self) -> Path:
        return self.root / "summary.json"

    @property
    def summary_h5(self) -> Path:
        return self.root / "summary.h5"

    @property
    def report(self) -> Path:
        """The report's folder."""
        return self.root / "report"

    @property
    def report_index(self) -> Path:
        return self.report / "index.html"

    def report_figure(self, name: str) -> Path:
        """One of the report's PNG figures (``name`` in REPORT_FIGURES)."""
        if name not in REPORT_FIGURES:
            raise KeyError(f"unknown report figure {name!r} (known: {', '.join(REPORT_FIGURES)})")
        return self.report / f"{name}.png"

    def relative(self, path: Path) -> str:
        """A path of the folder as written in plan.json (relative to the folder)."""
        return str(path.relative_to(self.root))

    # --- content ---------------------------------------------------------------------------------
    def truth(self) -> MockTruth | None:
        """The mock's truth when the catalogue is a mock file (built-in or written by `dpot-hpc mock`)."""
        cat = self.catalogue
        return read_truth(cat) if cat.is_file() and h5py.is_hdf5(cat) else None

    def check_config(self, cfg: Config) -> None:
        """Refuse a folder made with an incompatible configuration (or by another version)."""
        if not self.config.exists():
            return
        try:
            old = config_from_dict(parse_yaml(self.config.read_text(), str(self.config)) or {})
        except (ConfigError, yaml.YAMLError) as exc:
            raise RunFolderError(f"run folder {self.root} was made by another version of dpot-hpc "
                                 f"({self.config}: {exc}); use a new run.dir") from None
        diffs = config_differences(old.to_dict(), cfg.to_dict())
        if diffs:
            raise RunFolderError(
                f"run folder {self.root} was made with another configuration; use a new run.dir or the old "
                "settings. Differences:\n  " + "\n  ".join(diffs)
            )

    def write_config(self, cfg: Config) -> None:
        """Create the folder with its config.yaml, or check that an existing one is compatible."""
        self.check_config(cfg)
        if not self.config.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config, yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    def setup(self, cfg: Config, log) -> None:
        """Create the folder (or check it), draw the built-in mock and prepare the sample, each once."""
        self.write_config(cfg)
        if self.catalogue_path is None and not self.mock.exists():
            write_mock(self.mock, cfg, log=log)
        if not self.prepared.exists():
            prepare_sample(cfg, self.catalogue, self.prepared, log=log)

    def require_setup(self) -> None:
        """Raise unless ``setup`` has run (the plan is written last, by the caller of setup)."""
        if not self.plan.exists():
            raise RunFolderError(f"{self.root} is not set up: run `dpot-hpc setup` (or `dpot-hpc run`) first")
