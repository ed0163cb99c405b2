"""The systematic term: the run's own settings fitted to built-in mocks whose truth is known.

A bias that every member shares (the flows' common smoothing of the DF) is in no ensemble spread.
With ``calibration.realizations`` = R, the run fits R realizations of each family in
``calibration.families`` after its own members, each as a run folder of its own,
``<run.dir>/calibration/<family>-<k>`` (resumable like any run), with this run's configuration, the
prepared sample's star count and seeds derived from the run seed and the folder's name. Their errors
against the mocks' truth give each scalar's systematic term (``statistics.systematic_term``): the mean error
(the bias these settings show on such galaxies), its standard error, the rms error, and how often the
calibration runs' own bands covered their truth. It is reported beside the band, not folded into it or
subtracted: the built-in mocks resemble a real galaxy only so far (docs/method.md, 'The systematic term').
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import Config, config_from_dict
from ..data.prepare import read_provenance
from ..data.runfolder import RunFolder
from ..seeds import derived_seed

#: Sub-folder of the run folder that holds the calibration runs.
CALIBRATION_DIR = "calibration"


def calibration_ids(cfg: Config) -> list[str]:
    """The calibration runs' names, '<family>-<k>' (k = 0..realizations-1, two digits)."""
    return [f"{fam}-{k:02d}" for fam in cfg.calibration.families for k in range(cfg.calibration.realizations)]


def calibration_config(cfg: Config, name: str, n_stars: int) -> Config:
    """The configuration of calibration run ``name``: the run's own, on the built-in mock of that family
    with ``n_stars`` stars (read as Gaia observables when the run reads those, else as Cartesian
    columns; with DR3-like errors when the run's flows are fitted through the errors), run and mock
    seeds derived from the run seed and the name, in ``<run.dir>/calibration/<name>``, without
    calibration runs of its own."""
    family = name.rsplit("-", 1)[0]
    d = cfg.to_dict()
    d["run"] = {**d["run"], "dir": str(Path(cfg.run.dir) / CALIBRATION_DIR / name),
                "seed": derived_seed(cfg.run.seed, f"{CALIBRATION_DIR}/{name}")}
    d["catalogue"] = {"path": None, "format": "gaia" if cfg.catalogue.format == "gaia" else "cartesian",
                      "r_max_kpc": cfg.catalogue.r_max_kpc, "chunk_rows": cfg.catalogue.chunk_rows}
    d["mock"] = {**d["mock"], "family": family, "n_stars": int(n_stars),
                 "seed": derived_seed(cfg.run.seed, f"{CALIBRATION_DIR}/{name}/mock"),
                 "noise": cfg.mock.noise or cfg.df.deconvolve}  # flows fitted through errors need errors to undo
    d["summary"] = {**d["summary"], "rho_baryon_msun_pc3": None}  # the mock's own baryons: its rho_dm truth
    d["calibration"] = {"realizations": 0}
    return config_from_dict(d)


def calibration_configs(cfg: Config, folder: RunFolder) -> list[Config]:
    """Every calibration run's configuration, with the star count of the run's prepared sample."""
    n_stars = int(read_provenance(folder.prepared)["n_stars"])
    return [calibration_config(cfg, name, n_stars) for name in calibration_ids(cfg)]


def finished_calibrations(cfg: Config, folder: RunFolder) -> dict[str, dict]:
    """{name: summary} of the calibration runs whose summary.json exists (each run folder checks its own
    configuration when it runs; these were made for this run folder's configuration)."""
    out = {}
    for name in calibration_ids(cfg):
        path = folder.root / CALIBRATION_DIR / name / "summary.json"
        if path.is_file():
            out[name] = json.loads(path.read_text())
    return out
