"""The systematic term: calibration runs on built-in mocks, under a real mpiexec with two ranks."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from dpot_hpc.cluster.slurm import SlurmOptions, render
from dpot_hpc.config import load_config
from dpot_hpc.data.prepare import read_provenance
from dpot_hpc.errors import DpotWarning
from dpot_hpc.physics.scalars import SCALARS
from dpot_hpc.report.html import DIGITS, systematic_table
from dpot_hpc.seeds import derived_seed

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

TINY = ["mock.n_stars=2500", "ensemble.potential_seed=1", "ensemble.bootstrap=2", "df.transforms=2",
        "df.hidden=[16, 16]", "df.max_epochs=2", "df.batch_size=256", "cache.n_points=1000",
        "potential.hidden=[16, 16]", "potential.steps=30", "potential.batch_size=256", "potential.penalty_points=32",
        "summary.grid_spacing_kpc=0.1", "run.threads=1", "run.processes=1", "run.seed=7",
        "calibration.families=[thin_thick_lowered]"]


def run(run_dir, realizations):
    assert MPIEXEC, "mpiexec not found: install the test extras (pip install -e '.[test,mpi]')"
    sets = [a for s in [*TINY, f"run.dir={run_dir}", f"calibration.realizations={realizations}"] for a in ("--set", s)]
    p = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "dpot_hpc", "run", *sets], capture_output=True,
                       text=True, timeout=900, env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    return p


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """A run with one calibration run, then the same folder asked for two: (run folder, first and second
    invocation's output, the first calibration run's member files' modification times)."""
    run_dir = tmp_path_factory.mktemp("calibration") / "run"
    first = run(run_dir, 1)
    sub = run_dir / "calibration" / "thin_thick_lowered-00"
    mtimes = {p: p.stat().st_mtime_ns for p in sub.glob("*/*.h5")}
    with open(run_dir / "summary.json") as f:
        after_first = json.load(f)
    second = run(run_dir, 2)
    return run_dir, first, second, mtimes, after_first


def test_calibration_runs_fit_their_own_mock_with_the_runs_settings_and_star_count(calibrated):
    run_dir = calibrated[0]
    n_data = read_provenance(run_dir / "prepared.h5")["n_stars"]
    for k in range(2):
        name = f"thin_thick_lowered-{k:02d}"
        sub = run_dir / "calibration" / name
        assert read_provenance(sub / "prepared.h5")["n_stars"] == n_data
        with h5py.File(sub / "mock.h5") as f:
            assert f["truth"].attrs["family"] == "thin_thick_lowered"
        cfg = yaml.safe_load((sub / "config.yaml").read_text())
        assert cfg["mock"]["seed"] == derived_seed(7, f"calibration/{name}/mock")
        assert cfg["run"]["seed"] == derived_seed(7, f"calibration/{name}")
        assert cfg["calibration"]["realizations"] == 0
        main = yaml.safe_load((run_dir / "config.yaml").read_text())
        for section in ("df", "cache", "potential", "ensemble", "cuts", "frame"):
            assert cfg[section] == main[section]


def test_systematic_term_is_the_mean_error_of_the_calibration_runs(calibrated):
    run_dir, _, second, _, after_first = calibrated
    summary = json.loads((run_dir / "summary.json").read_text())
    term = summary["systematic"]
    assert term["runs"] == ["thin_thick_lowered-00", "thin_thick_lowered-01"] and term["requested"] == 2
    subs = [json.loads((run_dir / "calibration" / r / "summary.json").read_text()) for r in term["runs"]]
    for k in SCALARS:
        e = np.array([s["final"][k]["value"] - s["truth"][k] for s in subs])
        assert term[k]["mean_error"] == pytest.approx(e.mean(), rel=1e-12, abs=1e-15)
        assert term[k]["mean_error_sigma"] == pytest.approx(abs(e[0] - e[1]) / 2, rel=1e-9, abs=1e-15)
        assert term[k]["systematic"] == pytest.approx(math.hypot(e.mean(), abs(e[0] - e[1]) / 2), rel=1e-9, abs=1e-15)
        assert term[k]["rms_error"] == pytest.approx(np.sqrt((e**2).mean()), rel=1e-12, abs=1e-15)
        inside = sum(abs(ei) <= s["final"][k]["half_width_95"] for ei, s in zip(e, subs))
        assert term[k]["covered_95"] == inside
        # the systematic term is reported beside the values: they are the run's own, unchanged
        assert summary["final"][k]["value"] == after_first["final"][k]["value"]
    # with one run, the mean error is that run's error and has no standard error
    assert after_first["systematic"]["runs"] == ["thin_thick_lowered-00"]
    assert after_first["systematic"]["a_x"]["mean_error_sigma"] is None
    assert after_first["systematic"]["a_x"]["mean_error"] == pytest.approx(
        subs[0]["final"]["a_x"]["value"] - subs[0]["truth"]["a_x"], rel=1e-12)
    with h5py.File(run_dir / "summary.h5") as f:
        assert json.loads(f.attrs["systematic"]) == term
    assert "Systematic term: the same settings on 2 built-in mock(s)" in second.stdout


def test_more_calibration_runs_on_a_finished_run_train_only_the_new_ones(calibrated):
    run_dir, first, second, mtimes, _ = calibrated
    assert "calibration run 1/1: thin_thick_lowered" in first.stderr
    assert "calibration run 1/2: thin_thick_lowered" in second.stderr and "(finished)" in second.stderr
    assert mtimes and all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    # the run's own members were not trained again either: the second invocation trained one calibration run
    assert second.stderr.count("run folder ") == 2  # the run (all finished) and the new calibration run


def test_report_shows_the_systematic_term_as_in_summary_json(calibrated):
    term = json.loads((calibrated[0] / "summary.json").read_text())["systematic"]
    html = systematic_table({"systematic": term})
    cells = re.findall(r'data-q="(\w+)" data-stat="systematic\.(\w+)">([^<]*)<', html)
    assert len(cells) == 6 * len(SCALARS)
    for q, field, text in cells:
        assert float(text) == pytest.approx(term[q][field], rel=0.5 * 10 ** (1 - DIGITS), abs=1e-300), (q, field)
    assert systematic_table({"systematic": None}) == ""


def test_slurm_chain_says_the_calibration_runs_are_not_in_it(tmp_path):
    cfg = load_config(None, [f"run.dir={tmp_path / 'run'}", "calibration.realizations=1"])
    with pytest.warns(DpotWarning, match="calibration runs are not part of this job-array chain"):
        scripts = render(cfg, SlurmOptions())
    assert [name for name, _ in scripts][-1] == "summary"
