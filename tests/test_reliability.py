"""Faults a careless or hostile user can cause (issue 12): each ends in one clear line naming the file,
key or column and what to do, never in a traceback, a hang or a silently wrong answer; finished work
is kept. Runs the real CLI on a tiny mock; destructive tests work on copies of one finished run."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import skip_loudly_unless_required

from dpot_hpc.cluster.slurm import SlurmError, SlurmOptions, render
from dpot_hpc.config import load_config
from dpot_hpc.data.runfolder import RunFolder, process_state

TINY = ["mock.n_stars=4000", "ensemble.df_seed=2", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=2",
        "df.batch_size=512", "cache.n_points=2000", "ensemble.potential_seed=2", "potential.hidden=[16, 16]",
        "potential.steps=30", "potential.batch_size=256", "potential.penalty_points=32",
        "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false", "ensemble.bootstrap=0"]


def dpot(*args, cwd, env=None, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dpot_hpc", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def sets(run_dir, *extra):
    return [a for s in [*TINY, f"run.dir={run_dir}", *extra] for a in ("--set", s)]


def one_error_line(p) -> str:
    """The single error line of a failed command (and no traceback)."""
    assert p.returncode not in (0, 139), (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, p.stderr[-3000:]
    return errors[0]


def digests(run_dir: Path) -> dict:
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*.h5"))
            if p.name != "summary.h5"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One finished tiny run (the reference every destructive test copies)."""
    root = tmp_path_factory.mktemp("reliability")
    p = dpot("run", *sets(root / "run"), cwd=root)
    assert p.returncode == 0, p.stderr[-3000:]
    return root / "run"


@pytest.fixture
def copy(finished, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    (dst / "config.yaml").write_text((finished / "config.yaml").read_text().replace(str(finished), str(dst)))
    return dst


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- 1. Slurm scripts: no injection -------------------------------------------------------------
def test_slurm_scripts_quote_every_value_and_run_no_injected_command(tmp_path):
    cfg = load_config(None, [f"run.dir={tmp_path / 'run'}"])
    opts = SlurmOptions(container="/i.sif; touch PWN; true", binds=("/data; touch PWN2",))
    scripts = dict(render(cfg, opts))
    text = scripts["df"].read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("apptainer"))
    words = shlex.split(line.rstrip(" &"))
    assert words[:5] == ["apptainer", "exec", "--nv", "--bind", "/data; touch PWN2"]
    assert words[5] == "/i.sif; touch PWN; true" and words[6:8] == ["dpot-hpc", "member"]
    # the script itself, run by bash (apptainer is not installed here): the payloads stay arguments
    env = {**os.environ, "SLURM_ARRAY_TASK_ID": "0", "PATH": "/usr/bin:/bin"}
    subprocess.run(["bash", str(scripts["df"])], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert not (tmp_path / "PWN").exists() and not (tmp_path / "PWN2").exists()


@pytest.mark.parametrize("field, value", [("account", "a\ntouch PWN2"), ("partition", "p --wrap=x"),
                                          ("time", "1:00\n#SBATCH --array=0-99"), ("mem", "4G; rm -rf /")])
def test_sbatch_values_are_checked(tmp_path, field, value):
    cfg = load_config(None, [f"run.dir={tmp_path / 'run'}"])
    with pytest.raises(SlurmError, match=f"--{field}"):
        render(cfg, SlurmOptions(**{field: value}))
    assert not (tmp_path / "run" / "slurm").exists() or not list((tmp_path / "run" / "slurm").iterdir())


def test_slurm_scripts_use_absolute_paths_for_a_relative_run_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scripts = dict(render(load_config(None, ["run.dir=rel/run"]), SlurmOptions()))
    text = scripts["potential"].read_text()
    assert f"--set run.dir={tmp_path}/rel/run" in text and f"-c {tmp_path}/rel/run/config.yaml" in text
    assert f"#SBATCH --chdir={tmp_path}" in text and f"--output={tmp_path}/rel/run/logs/slurm/" in text
    with pytest.raises(SlurmError, match="run.dir"):
        render(load_config(None, [f"run.dir={tmp_path}/a b"]), SlurmOptions())


# --- 2. Files are trusted only after their record is checked -------------------------------------
def test_a_member_file_from_another_run_is_refused(copy, tmp_path):
    other = tmp_path / "other"
    p = dpot("run", *sets(other, "run.seed=7"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    shutil.copy(other / "potential/potential_seed-000.h5", copy / "potential/potential_seed-000.h5")
    before = (copy / "summary.json").read_text()
    line = one_error_line(dpot("run", *sets(copy), cwd=tmp_path))
    assert "potential_seed-000.h5 is not this run's potential member" in line and "seed" in line
    assert (copy / "summary.json").read_text() == before  # nothing was summarised from the stranger


def test_a_changed_catalogue_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    cat = tmp_path / "stars.h5"
    with h5py.File(cat, "w") as f:
        for c in ("x", "y", "z"):
            f[c] = rng.normal(0, 0.3, 3000)
        for c in ("vx", "vy", "vz"):
            f[c] = rng.normal(0, 30, 3000)
    extra = [f"catalogue.path={cat}", "cuts.min_stars=100", "ensemble.potential_seed=1", "ensemble.df_seed=1"]
    assert dpot("setup", *sets(tmp_path / "run", *extra), cwd=tmp_path).returncode == 0
    with h5py.File(cat, "a") as f:
        f["vx"][0] += 1.0
    line = one_error_line(dpot("run", *sets(tmp_path / "run", *extra), cwd=tmp_path))
    assert f"catalogue {cat} changed since" in line and "prepared.h5" in line


# --- 3. Configuration values ---------------------------------------------------------------------
def _leaf_fields(model, prefix=""):
    """(dotted key, default, lower bound, upper bound) of every leaf setting of the Config model."""
    from pydantic import BaseModel

    from dpot_hpc.config import _bounds

    for name, info in model.model_fields.items():
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from _leaf_fields(sub, f"{prefix}{name}.")
        else:
            yield (f"{prefix}{name}", info.default, *_bounds(info))


def test_config_fuzz_every_key_rejects_bad_values_by_name(tmp_path):
    """Every key, given NaN, inf, a wrong type or a value out of its range, is rejected with its name
    (all errors of one invocation at once), and the run writes nothing."""
    from dpot_hpc.config import Config, ConfigError

    rng = np.random.default_rng(3)
    tried = 0
    for key, value, lo, hi in _leaf_fields(Config):
        if isinstance(value, str) or key == "catalogue.path":
            bad = ["[1, 2]", "{a: 1}", "3.5", "true"]
        elif isinstance(value, bool):
            bad = ["2", "'yes'", "[true]"]
        elif isinstance(value, (int, float)) or value is None:
            bad = [".nan", ".inf", "-.inf", "'abc'", "[1]", "true"]
            bad += [repr(lo - 1 - abs(lo))] if lo is not None else []
            bad += [repr(hi + 1 + abs(hi))] if hi is not None else []
        elif isinstance(value, list):
            bad = [".nan", "'abc'", "[.nan, 1, 2]", "[]", "[-1]"]
        else:
            bad = ["[1]", "3.5", "{a: 1}"]
        for raw in rng.permutation(bad)[:4]:
            tried += 1
            with pytest.raises(ConfigError) as err:
                load_config(None, [f"{key}={raw}"])
            assert str(err.value).startswith(key), (key, raw, str(err.value))
    assert tried > 200
    p = dpot("run", "--set", f"run.dir={tmp_path / 'r'}", "--set", "frame.r0_kpc=.nan", "--set",
             "df.learning_rate=.nan", "--set", "ensemble.df_seed=1e1", cwd=tmp_path, timeout=60)
    line = one_error_line(p)
    assert "frame.r0_kpc: expected a finite number" in p.stderr and "df.learning_rate: expected a finite number" in p.stderr
    assert line.startswith("Error: config:") and not (tmp_path / "r").exists()


def test_an_empty_catalogue_path_is_an_error_not_the_mock(tmp_path):
    line = one_error_line(dpot("run", "--set", f"run.dir={tmp_path / 'r'}", "--set", "catalogue.path=",
                               cwd=tmp_path, timeout=60))
    assert "catalogue.path: empty value" in line and not (tmp_path / "r").exists()


def test_duplicate_yaml_keys_warn_once(tmp_path):
    (tmp_path / "c.yaml").write_text("df:\n  max_epochs: 3\n  max_epochs: 4\n")
    p = dpot("plan", "-c", str(tmp_path / "c.yaml"), cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("warning:") == 1 and "'max_epochs' (line 3) is given more than once" in p.stderr


# --- 4. One launcher per run folder ---------------------------------------------------------------
def test_a_second_launcher_is_refused_and_a_stale_lock_taken_over(copy, tmp_path):
    lock = copy / ".lock"
    live = subprocess.Popen(["sleep", "60"])
    try:
        lock.write_text(json.dumps({"host": socket.gethostname(), "pid": live.pid, "command": "run",
                                    "started": "2026-11-29T10:00:00+00:00", "slurm_job_id": None}))
        line = one_error_line(dpot("run", *sets(copy), cwd=tmp_path))
        assert f"in use by `dpot-hpc run` on host {socket.gethostname()} (pid {live.pid}" in line
        assert "remove" in line and str(lock) in line
    finally:
        live.kill()
        live.wait()
    p = dpot("run", *sets(copy), cwd=tmp_path)  # the holder is dead now: taken over
    assert p.returncode == 0 and "stale lock" in p.stderr, p.stderr[-2000:]
    assert not lock.exists()


def test_a_killed_launcher_not_yet_reaped_is_gone(copy, tmp_path):
    """A launcher killed with SIGKILL whose parent has not collected it (a zombie: the ranks of a killed
    MPI job until init reaps them) holds no run folder: status says so and the next launcher takes over."""
    lock = copy / ".lock"
    holder = subprocess.Popen(["sleep", "60"])
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid, "command": "run",
                                "started": "2026-11-29T10:00:00+00:00", "slurm_job_id": None}))
    try:
        assert RunFolder.open(copy)[0].launcher()["alive"] is True
        holder.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process_state(holder.pid) != "Z":
            assert time.monotonic() < deadline, "the killed child never became a zombie"
            time.sleep(0.01)
        assert RunFolder.open(copy)[0].launcher()["alive"] is False  # not reaped (no wait yet), yet gone
        p = dpot("run", *sets(copy), cwd=tmp_path)  # while it is still a zombie
        assert p.returncode == 0 and "stale lock" in p.stderr, p.stderr[-2000:]
        assert not lock.exists()
    finally:
        holder.kill()
        holder.wait()


def test_two_real_launchers_on_one_folder(tmp_path):
    run_dir = tmp_path / "run"
    # long enough potentials (~10 s) that the first run still holds the folder when the second starts
    longer = sets(run_dir, "potential.steps=2000")
    first = subprocess.Popen([sys.executable, "-m", "dpot_hpc", "run", *longer], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run_dir / ".lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = dpot("run", *longer, cwd=tmp_path)
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert "in use by `dpot-hpc run`" in one_error_line(second)
    assert json.loads((run_dir / "summary.json").read_text())["members"]


# --- 5. Disk full ----------------------------------------------------------------------------------
def _tmpfs(path: Path, size: str) -> None:
    path.mkdir(exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, text=True)
    if p.returncode != 0:
        skip_loudly_unless_required("DPOT_REQUIRE_TMPFS", "disk-full test", f"cannot mount a tmpfs ({p.stderr.strip()})",
                                    "Run the tests as root on a machine that allows mount (as CI does).")


def test_disk_full_is_one_line_and_resumes_identically(finished, tmp_path):
    mnt = tmp_path / "small"
    _tmpfs(mnt, "2m")
    try:
        run_dir = mnt / "run"
        line = one_error_line(dpot("run", *sets(run_dir), cwd=tmp_path))
        assert "no space left on device" in line and str(run_dir) in line
        subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
        p = dpot("run", *sets(run_dir), cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-2000:]
        assert not [q for q in run_dir.rglob("*") if ".tmp-" in q.name]
        ref = json.loads((finished / "summary.json").read_text())
        got = json.loads((run_dir / "summary.json").read_text())
        assert got["members"] == ref["members"] and got["best"] == ref["best"]
    finally:
        subprocess.run(["umount", str(mnt)])


def test_read_only_folder_is_one_line(finished, tmp_path):
    mnt = tmp_path / "ro"
    _tmpfs(mnt, "64m")
    try:
        shutil.copytree(finished, mnt / "run")
        (mnt / "run" / "potential/potential_seed-001.h5").unlink()
        (mnt / "run" / "summary.json").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        line = one_error_line(dpot("run", *sets(mnt / "run"), cwd=tmp_path))
        assert "read-only file system" in line
    finally:
        subprocess.run(["umount", str(mnt)])


# --- 6. Every member's inputs are checked before the first member; errors inside members --------
def test_missing_noise_columns_stop_the_run_before_any_flow_trains(tmp_path):
    from dpot_hpc.data.mockfile import write_mock

    cfg = load_config(None, ["mock.n_stars=3000"])
    write_mock(tmp_path / "m.h5", cfg, log=lambda m: None)
    with h5py.File(tmp_path / "m.h5", "a") as f:
        del f["pmra_error"]
    extra = [f"catalogue.path={tmp_path / 'm.h5'}", "catalogue.format=gaia", "ensemble.obs_noise=1"]
    line = one_error_line(dpot("run", *sets(tmp_path / "run", *extra), cwd=tmp_path))
    assert "'pmra_error' missing" in line and "ensemble.obs_noise" in line
    assert not list((tmp_path / "run").glob("df/*.h5"))


def test_a_corrupt_member_under_mpi_is_one_line_per_rank(copy, tmp_path):
    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    truncate(copy / "potential/potential_seed-000.h5")
    (copy / "summary.json").unlink()
    p = subprocess.run([mpiexec, "-n", "2", sys.executable, "-m", "dpot_hpc", "run", *sets(copy)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 2 and all("potential_seed-000.h5 is unreadable" in e and "move it away" in e for e in errors)


# --- 7. Corrupt shared files and bad catalogues ----------------------------------------------------
@pytest.mark.parametrize("name, expect", [("cache/best_fit.h5", "best_fit.h5 is unreadable"),
                                          ("prepared.h5", "prepared.h5 is unreadable"),
                                          ("mock.h5", "mock.h5 is unreadable")])
def test_a_truncated_shared_file_is_one_line(copy, tmp_path, name, expect):
    truncate(copy / name)
    for f in copy.glob("potential/*.h5"):
        f.unlink()
    line = one_error_line(dpot("run", *sets(copy), cwd=tmp_path))
    assert expect in line and "move it away" in line


def test_a_malformed_run_folder_config_is_one_line(copy, tmp_path):
    (copy / "config.yaml").write_text("df: [1,\n")
    assert "config.yaml is unreadable" in one_error_line(dpot("run", *sets(copy), cwd=tmp_path))
    (copy / "config.yaml").write_bytes(b"\xff\xfe\x00df: 1\n")
    assert "config.yaml is unreadable" in one_error_line(dpot("run", *sets(copy), cwd=tmp_path))


def test_a_non_utf8_config_file_is_one_line(tmp_path):
    (tmp_path / "c.yaml").write_bytes(b"df:\n  max_epochs: \xff\n")
    assert "not UTF-8" in one_error_line(dpot("plan", "-c", str(tmp_path / "c.yaml"), cwd=tmp_path, timeout=60))


def _table(path: Path, n: int, fmt: str) -> None:
    from astropy.table import Table

    rng = np.random.default_rng(1)
    cols = {c: rng.normal(0, 0.3 if c in "xyz" else 30, n) for c in ("x", "y", "z", "vx", "vy", "vz")}
    if fmt == "h5":
        with h5py.File(path, "w") as f:
            for k, v in cols.items():
                f[k] = v
    else:
        Table(cols).write(path)


def test_catalogue_corruption_fuzz(tmp_path):
    """Truncated at random offsets, an HDF5 or FITS catalogue gives one clear error (or, when only
    padding was cut, a normal run), never a traceback or a hang."""
    rng = np.random.default_rng(5)
    outcomes = []
    for fmt in ("h5", "fits"):
        good = tmp_path / f"c.{fmt}"
        _table(good, 3000, fmt)
        data = good.read_bytes()
        for k, off in enumerate(rng.integers(0, len(data), 6)):
            bad = tmp_path / f"t{k}.{fmt}"
            bad.write_bytes(data[:off])
            p = dpot("prepare", "--set", f"catalogue.path={bad}", "--set", f"run.dir={tmp_path / f'r{fmt}{k}'}",
                     "--set", "cuts.min_stars=100", cwd=tmp_path, timeout=120)
            if p.returncode == 0:
                outcomes.append("ok")
                continue
            line = one_error_line(p)
            assert str(bad) in line, line
            outcomes.append("error")
    assert outcomes.count("error") >= 8


@pytest.mark.parametrize("make, expect", [
    (lambda p: _table(p, 0, "h5"), "has no rows"),
    (lambda p: h5py.File(p, "w").create_dataset("x", data=np.zeros(5)), "names a dataset"),
])
def test_bad_catalogues_are_one_line(tmp_path, make, expect):
    cat = tmp_path / "c.h5"
    make(cat)
    extra = ["catalogue.hdf5_group=x"] if "dataset" in expect else []
    line = one_error_line(dpot("setup", *sets(tmp_path / "run", f"catalogue.path={cat}", *extra), cwd=tmp_path))
    assert expect in line and str(cat) in line


# --- 8. Validate first, then write ---------------------------------------------------------------
def test_a_failed_setup_does_not_lock_in_its_configuration(tmp_path):
    run_dir = tmp_path / "run"
    line = one_error_line(dpot("setup", *sets(run_dir, "cuts.min_stars=100000"), cwd=tmp_path))
    assert "fewer than cuts.min_stars" in line and not (run_dir / "config.yaml").exists()
    p = dpot("setup", *sets(run_dir), cwd=tmp_path)  # corrected: accepted, the drawn mock reused
    assert p.returncode == 0 and "drawing" not in p.stderr, p.stderr[-2000:]


# --- 9. Silent surprises get a warning -----------------------------------------------------------
def test_duplicated_catalogue_rows_warn(tmp_path):
    cat = tmp_path / "c.h5"
    _table(cat, 3000, "h5")
    with h5py.File(cat, "a") as f:
        for c in list(f):
            v = f[c][()]
            del f[c]
            f[c] = np.concatenate([v, v[:50]])
    p = dpot("prepare", "--set", f"catalogue.path={cat}", "--set", f"run.dir={tmp_path / 'r'}",
             "--set", "cuts.min_stars=100", cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    warn = [ln for ln in p.stderr.splitlines() if "warning:" in ln]
    assert len(warn) == 1 and re.search(r"\b50 of \d+ selected stars repeat", warn[0])


def test_a_file_recorded_before_a_setting_existed_matches_its_default(tmp_path):
    """A member file whose recorded configuration lacks a setting (written before the setting existed)
    is this run's when the run leaves that setting at its default, and is refused, naming the setting,
    when the run sets it otherwise."""
    from dpot_hpc.data.provenance import ProvenanceError, stamp, verify

    cfg = load_config(None, TINY)
    path = tmp_path / "member.h5"
    with h5py.File(path, "w") as f:
        stamp(f.attrs, cfg, member_id="m")
        record = json.loads(f.attrs["config"])
        del record["df"]["deconvolve"]
        f.attrs["config"] = json.dumps(record)
    assert verify(path, cfg, "df member m", member_id="m")["member_id"] == "m"
    with pytest.raises(ProvenanceError, match="df.deconvolve: False in the folder, True now"):
        verify(path, load_config(None, [*TINY, "df.deconvolve=true", "catalogue.format=gaia", "mock.noise=true"]), "df member m",
               member_id="m")


def test_flows_and_caches_copied_into_a_new_folder_refit_the_potential(finished, tmp_path):
    """A finished run's flows and caches, copied into a new run folder, serve a potential fitted there
    with other potential settings: they are reused byte for byte (not retrained) and the new potentials
    record the new settings. A flow is still refused for a changed DF setting, and a cache for a changed
    cache setting (naming it), while the flows pass there: each is judged by its own and earlier stages'."""
    def seeded(name):
        dst = tmp_path / name
        dst.mkdir()
        for part in ("df", "cache"):
            shutil.copytree(finished / part, dst / part)
        return dst

    refit = seeded("refit")
    before = digests(refit)
    p = dpot("run", *sets(refit, "potential.steps=40"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    after = digests(refit)
    assert {k: v for k, v in after.items() if k.parts[0] in ("df", "cache")} == before
    pots = sorted((refit / "potential").glob("*.h5"))
    assert pots
    for path in pots:
        with h5py.File(path, "r") as f:
            assert json.loads(f.attrs["config"])["potential"]["steps"] == 40
            assert f.attrs["status"] == "done"
    assert json.loads((refit / "summary.json").read_text())["final"]["rho_R0"]["value"] > 0

    line = one_error_line(dpot("run", *sets(seeded("other_df"), "df.max_epochs=3"), cwd=tmp_path))
    assert "is not this run's df member" in line and "df.max_epochs: 2 in the folder, 3 now" in line
    line = one_error_line(dpot("run", *sets(seeded("other_cache"), "cache.n_points=2500"), cwd=tmp_path))
    assert "is not this run's cache member" in line and "cache.n_points: 2000 in the folder, 2500 now" in line
