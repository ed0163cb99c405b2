"""The command line end to end on a tiny mock: run, re-run (nothing recomputed), refuse an
incompatible folder, evaluate at points, and the Python API agrees with the files."""

import hashlib
import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

import dpot_hpc
from dpot_hpc.physics.scalars import SCALARS

TINY = ["mock.n_stars=4000", "ensemble.df_seed=2", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=2",
        "df.batch_size=512", "cache.n_points=2000", "ensemble.potential_seed=2", "potential.hidden=[16, 16]",
        "potential.steps=30", "potential.batch_size=256", "potential.penalty_points=32",
        "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false", "ensemble.bootstrap=0"]


def dpot(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "dpot_hpc.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _sets(run_dir, extra=()):
    out = []
    for s in [*TINY, f"run.dir={run_dir}", *extra]:
        out += ["--set", s]
    return out


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    run_dir = root / "run"
    p = dpot("run", *_sets(run_dir), cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    return root, run_dir, p


def test_run_writes_the_documented_layout(tiny_run):
    root, run_dir, p = tiny_run
    for rel in ["config.yaml", "plan.json", "mock.h5", "prepared.h5", "df/df_seed-000.h5", "df/df_seed-001.h5",
                "cache/best_fit.h5", "potential/potential_seed-000.h5", "potential/potential_seed-001.h5",
                "summary.json", "summary.h5",
                "logs/df-df_seed-000.log", "logs/potential-potential_seed-001.log"]:
        assert (run_dir / rel).is_file(), rel
    assert "truth" in p.stdout and "omega_p" in p.stdout
    with h5py.File(run_dir / "cache/best_fit.h5") as f:
        n = f["x"].shape[0]
        assert f["grad_x"].shape == (n, 3) and f["flows/grad"].shape == (2, n, 6)
        assert np.all(np.linalg.norm(f["x"][()], axis=1) < 0.9)
        # the cache's gradients are the per-component median of the flows' (2 flows: their mean)
        assert np.allclose(f["grad_v"][()], f["flows/grad"][()][:, :, 3:].mean(0), rtol=1e-12, atol=0)


def test_summary_is_the_median_of_the_members(tiny_run):
    _, run_dir, _ = tiny_run
    res = json.loads((run_dir / "summary.json").read_text())
    for k in SCALARS:
        vals = [m[k] for m in res["members"].values()]
        assert res["best"][k]["median"] == pytest.approx(float(np.median(vals)), rel=1e-12)
        assert res["best"][k]["p84"] == pytest.approx(float(np.percentile(vals, 84)), rel=1e-12)
    assert res["truth"]["omega_p"] == 28.2
    with h5py.File(run_dir / "summary.h5") as f:
        assert f["omega_p"].attrs["unit"] == "km/s/kpc"
        got = f["omega_p/potential_seed/members"][()]
        assert np.allclose(np.sort(got), np.sort([m["omega_p"] for m in res["members"].values()]))


def test_rerun_recomputes_nothing(tiny_run):
    root, run_dir, _ = tiny_run
    files = sorted(p for p in run_dir.rglob("*.h5") if p.name != "summary.h5")
    before = {p: _digest(p) for p in files}
    p = dpot("run", *_sets(run_dir), cwd=root)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "training" not in p.stderr
    assert {q: _digest(q) for q in files} == before


def test_incompatible_config_is_refused(tiny_run):
    root, run_dir, _ = tiny_run
    before = _digest(run_dir / "df/df_seed-000.h5")
    p = dpot("run", *_sets(run_dir, ["df.max_epochs=3"]), cwd=root)
    assert p.returncode != 0
    assert "made with another configuration" in p.stderr and "df.max_epochs: 2 in the folder, 3 now" in p.stderr
    assert _digest(run_dir / "df/df_seed-000.h5") == before


def test_bad_config_stops_before_any_work(tmp_path):
    p = dpot("run", "--set", f"run.dir={tmp_path / 'r'}", "--set", "ensemble.df_seed=-1", cwd=tmp_path)
    assert p.returncode != 0 and "ensemble.df_seed: expected a value in [0, inf]" in p.stderr
    assert not (tmp_path / "r").exists()


def test_evaluate_matches_the_python_api(tiny_run, tmp_path):
    root, run_dir, _ = tiny_run
    pts = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.1], [-0.5, 0.1, -0.4]])
    np.savetxt(tmp_path / "pts.txt", pts)
    p = dpot("evaluate", str(run_dir), "--points", str(tmp_path / "pts.txt"), "--out", str(tmp_path / "o.h5"), cwd=root)
    assert p.returncode == 0, p.stderr
    pot = dpot_hpc.load_potential(run_dir)
    with h5py.File(tmp_path / "o.h5") as f:
        assert f["accel"].attrs["unit"] == "km/s/Myr"
        assert np.allclose(f["accel"][()], pot.acceleration(pts).value, rtol=1e-6)
        assert np.allclose(f["rho"][()], pot.density(pts).to_value("Msun/pc3"), rtol=1e-6)
        assert f["members/phi"].shape == (2, 3)
    one = dpot_hpc.load_potential(run_dir / "potential/potential_seed-000.h5")
    assert one.acceleration(pts).shape == (3, 3)
    assert str(pot.acceleration(pts).unit) == "km / (Myr s)"


def test_gaia_input_with_noise_and_bootstrap_pipelines(tmp_path):
    """The main job on Gaia-format columns, with the obs_noise and bootstrap pipelines switched on."""
    extra = ["catalogue.format=gaia", "ensemble.df_seed=1", "ensemble.potential_seed=1", "ensemble.obs_noise=1",
             "ensemble.bootstrap=1", "ensemble.x0_v0=1", "mock.parallax_error_mas=0.05"]
    p = dpot("run", *_sets(tmp_path / "run", extra), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert sorted(s["pipelines"]) == ["bootstrap", "obs_noise", "potential_seed", "x0_v0"]
    with h5py.File(tmp_path / "run" / "prepared.h5") as a, h5py.File(tmp_path / "run" / "samples/obs_noise-000.h5") as b:
        assert json.loads(a.attrs["provenance"])["format"] == "gaia"
        assert json.loads(b.attrs["provenance"])["noise_seed"] is not None
        ids = np.intersect1d(a["source_id"][()], b["source_id"][()])
        pa = dict(zip(a["source_id"][()], a["parallax"][()]))
        pb = dict(zip(b["source_id"][()], b["parallax"][()]))
        diff = np.array([pb[i] - pa[i] for i in ids])
        assert len(ids) > 1000 and 0.03 < diff.std() < 0.07  # the quoted 0.05 mas noise
    with h5py.File(tmp_path / "run" / "potential/x0_v0-000.h5") as f:
        assert json.loads(f.attrs["sun"])["r0_kpc"] != 8.122


def test_every_command_has_quiet_and_verbose():
    from click.testing import CliRunner

    from dpot_hpc.cli import main

    for name in main.commands:
        out = CliRunner().invoke(main, [name, "--help"]).output
        assert "-q, --quiet" in out and "-v, --verbose" in out, name


def test_quiet_summary_prints_the_table_and_no_progress_and_verbose_errors_show_the_traceback(tiny_run):
    root, run_dir, _ = tiny_run
    timing = json.loads((run_dir / "summary.json").read_text())["timing_s"]
    p = dpot("summary", "-q", "-c", str(run_dir / "config.yaml"), cwd=root)
    assert p.returncode == 0 and "rho_R0" in p.stdout
    assert timing["potential"] > 0  # the run's own wall times survive summarising it again
    assert json.loads((run_dir / "summary.json").read_text())["timing_s"] == timing
    assert "report:" not in p.stderr  # the report is written, its progress lines are not shown
    missing = str(root / "nowhere.yaml")
    for command in ("summary", "run", "setup"):  # a bad configuration is the commonest error
        plain = dpot(command, "-c", missing, cwd=root)
        loud = dpot(command, "-v", "-c", missing, cwd=root)
        assert plain.returncode == loud.returncode == 1, command
        assert "Traceback" not in plain.stderr and plain.stderr.count("\n") == 1, command  # one line
        assert "Traceback" in loud.stderr and loud.stderr.strip().splitlines()[-1] == plain.stderr.strip(), command
