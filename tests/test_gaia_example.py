"""The Gaia DR3 on-ramp (docs/gaia.md): the query names exactly the columns the `gaia` format reads,
each a real gaia_source column, its cuts match the example configuration, and the example
configuration runs end to end on a Gaia-format table written from the mock."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py

from dpot_hpc.config import load_config
from dpot_hpc.physics.gaia import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
QUERY = (ROOT / "examples/gaia_dr3.adql").read_text()
EXAMPLE = ROOT / "examples/gaia_dr3.yaml"


def _select_columns(query: str) -> list[str]:
    sql = "\n".join(line.split("--")[0] for line in query.splitlines())
    select = re.search(r"SELECT(.*?)FROM", sql, re.S | re.I).group(1)
    return [c.strip() for c in select.split(",")]


def test_query_selects_what_the_gaia_format_reads_from_gaia_source():
    cols = _select_columns(QUERY)
    assert sorted(cols) == sorted(COLUMNS)
    recorded = {ln.strip() for ln in (ROOT / "tests/data/gaiadr3_gaia_source_columns.txt").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")}
    where = re.search(r"WHERE(.*)", QUERY, re.S).group(1)
    named = set(re.findall(r"\b([a-z_]+)\b\s*(?:>|<|>=|<=|IS)", where))
    assert set(cols) <= recorded and named <= recorded, (set(cols) - recorded, named - recorded)
    assert re.search(r"FROM\s+gaiadr3\.gaia_source", QUERY)


def test_query_cuts_match_the_example_configuration():
    cfg = load_config(EXAMPLE)
    assert cfg.catalogue.format == "gaia"
    min_parallax = float(re.search(r"parallax\s*>\s*([0-9.]+)", QUERY).group(1))
    # the query reaches past both of the preparation's limits, so that the obs_noise members'
    # re-noised copies gain stars across them as they lose them (docs/method.md, 'Selection')
    assert cfg.ensemble.obs_noise > 0
    assert 1.2 * cfg.catalogue.r_max_kpc <= 1.0 / min_parallax <= 1.5 * cfg.catalogue.r_max_kpc  # distance = 1/parallax
    poe = float(re.search(r"parallax_over_error\s*>\s*([0-9.]+)", QUERY).group(1))
    assert poe <= 0.5 * cfg.cuts.parallax_over_error_min
    assert "radial_velocity IS NOT NULL" in QUERY
    q = QUERY.format(start=0, stop=230_000_000)
    assert "{" not in q and "random_index >= 0 AND random_index < 230000000" in q


def test_example_configuration_runs_on_a_gaia_table_from_the_mock(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    tiny = ["mock.n_stars=4000", "ensemble.df_seed=1", "ensemble.potential_seed=1", "ensemble.obs_noise=1",
            "ensemble.bootstrap=0", "ensemble.x0_v0=0", "ensemble.df_seed_potentials=false", "df.transforms=2",
            "df.hidden=[16, 16]", "df.max_epochs=2", "df.batch_size=512", "cache.n_points=1500",
            "potential.hidden=[16, 16]", "potential.steps=20", "potential.batch_size=256",
            "potential.penalty_points=32", "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1"]
    sets = [a for s in tiny for a in ("--set", s)]
    cat = tmp_path / "gaia.h5"
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "mock", "--out", str(cat), "--set", "mock.n_stars=4000",
                        "--set", "mock.noise=true"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "dpot_hpc", "run", "-c", str(EXAMPLE), *sets,
                        "--set", f"catalogue.path={cat}", "--set", f"run.dir={run}"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "seems to stop at the" not in p.stderr  # the noisy mock, like the query, reaches past it
    s = json.loads((run / "summary.json").read_text())
    assert sorted(s["pipelines"]) == ["obs_noise", "potential_seed"]
    with h5py.File(run / "prepared.h5") as f:
        prov = json.loads(f.attrs["provenance"])
    assert prov["format"] == "gaia" and [c[0] for c in prov["cuts"]][:2] == ["finite astrometry", "radial velocity present"]
