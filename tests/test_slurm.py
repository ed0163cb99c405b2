"""A real Slurm (Debian's slurm-wlm + munge, one node on 127.0.0.1): `dpot-hpc slurm --submit`
runs the job-array chain, the dependencies hold, and the summary equals a single-process run.

.ci/run installs Slurm first and sets DPOT_REQUIRE_SLURM=1, so there a missing Slurm fails the test.
Elsewhere, where slurmctld cannot be found, the test is skipped with a loud message.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import skip_loudly_unless_required

from dpot_hpc.data.runfolder import RunFolder
from dpot_hpc.models.potential_training import COMPILE_MIN_POINTS

HERE = Path(__file__).resolve().parent
TINY = ["mock.n_stars=3000", "ensemble.df_seed=2", "ensemble.potential_seed=2", "ensemble.bootstrap=1",
        "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=3", "df.batch_size=256", "cache.n_points=1500",
        "potential.hidden=[16, 16]", "potential.steps=40", "potential.batch_size=256",
        "potential.penalty_points=32", "summary.grid_spacing_kpc=0.05", "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false"]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    if not (shutil.which("slurmctld") and shutil.which("munged")):
        skip_loudly_unless_required("DPOT_REQUIRE_SLURM", "Slurm job-array test",
                                    "slurmctld/munged are not installed",
                                    "Install them with `apt-get install -y slurm-wlm munge` (as .ci/run does).")
    d = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_TEST_DIR": str(d), "SLURM_TEST_CPUS": "4"}
    subprocess.run(["bash", str(HERE / "slurm" / "start.sh")], env=env, check=True, timeout=120)
    env["SLURM_CONF"] = str(d / "slurm.conf")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    yield env, d
    subprocess.run(["bash", str(HERE / "slurm" / "stop.sh")], env=env, timeout=120)


def _sets(run_dir, *extra: str) -> list[str]:
    """--set arguments: the tiny configuration, ``extra`` settings and the run folder."""
    return [a for s in [*TINY, *extra, f"run.dir={run_dir}"] for a in ("--set", s)]


def _jobcomp(d: Path) -> list[dict]:
    path = d / "log" / "jobcomp.txt"
    if not path.exists():
        return []
    return [dict(re.findall(r"(\w+)=(\S+)", line)) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_queue(env: dict, run_dir, minutes: int) -> None:
    """Wait until Slurm's queue is empty; fail with the jobs' output if a dependency can never be met."""
    deadline = time.monotonic() + 60 * minutes
    while time.monotonic() < deadline:
        q = subprocess.run(["squeue", "-h", "-o", "%i %T %r"], env=env, capture_output=True, text=True).stdout
        if not q.strip():
            return
        assert "DependencyNeverSatisfied" not in q, q + "\n" + "\n".join(
            f.read_text()[-2000:] for f in (run_dir / "logs" / "slurm").glob("*.out"))
        time.sleep(1)
    pytest.fail(f"Slurm jobs did not finish in {minutes} minutes")


def test_job_array_chain_on_real_slurm(slurm, tmp_path):
    env, d = slurm
    run_dir = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "dpot_hpc.cli", "slurm", *_sets(run_dir), "--cpus-per-task", "1",
                        "--time", "00:15:00", "--submit"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    ids = dict(re.findall(r"submitted (\w+)\s+job (\d+)", p.stdout))
    assert list(ids) == ["setup", "df", "cache", "potential", "summary"]
    _wait_for_queue(env, run_dir, minutes=10)
    jobs = _jobcomp(d)
    assert jobs and all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    # every array task of every stage ran, each on its own member
    for stage, n in (("df", 3), ("cache", 2), ("potential", 3)):
        tasks = [j for j in jobs if j["Name"] == f"dpot-{stage}"]
        assert len(tasks) == n, (stage, tasks)
        outs = sorted((run_dir / "logs" / "slurm").glob(f"{stage}-{ids[stage]}_*.out"))
        assert len(outs) == n
    # the dependency chain held: no stage started before the previous one had ended
    order = ["setup", "df", "cache", "potential", "summary"]
    span = {s: ([j["StartTime"] for j in jobs if j["Name"] == f"dpot-{s}"],
                [j["EndTime"] for j in jobs if j["Name"] == f"dpot-{s}"]) for s in order}
    for a, b in zip(order, order[1:]):
        assert min(span[b][0]) >= max(span[a][1]), (a, b, span[a], span[b])
    # the summary equals a single-process run of the same configuration
    ref = tmp_path / "ref"
    r = subprocess.run([sys.executable, "-m", "dpot_hpc.cli", "run", *_sets(ref)], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s_slurm = json.loads((run_dir / "summary.json").read_text())
    s_ref = json.loads((ref / "summary.json").read_text())
    assert s_slurm["members"] == s_ref["members"] and s_slurm["best"] == s_ref["best"]
    # the summary task also wrote the report
    assert RunFolder(run_dir).report_index.is_file()


def _potential_steps_per_s(env: dict, run_dir: Path, extra: list[str]) -> float:
    """Training steps per second of the test's potential member on this machine now: a short run (just
    long enough to train compiled, as the member does), timed from its log over its last three quarters."""
    steps = -(-COMPILE_MIN_POINTS // 256 // 1000) * 1000  # TINY's batch of 256; the log prints every steps/20
    sets = _sets(run_dir, *extra, f"potential.steps={steps}")
    r = subprocess.run([sys.executable, "-m", "dpot_hpc.cli", "run", *sets], env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (run_dir / "logs" / "potential-potential_seed-000.log").read_text()
    t = {int(n): datetime.strptime(ts, "%Y-%m-%d %H:%M:%S,%f")
         for ts, n in re.findall(rf"^(\S+ \S+) step (\d+)/{steps}", log, re.MULTILINE)}
    return 0.75 * steps / (t[steps] - t[steps // 4]).total_seconds()


def test_a_member_longer_than_the_time_limit_finishes_over_several_allocations(slurm, tmp_path):
    """Time limit 1 minute, SIGUSR1 50 s before it (Slurm may send it up to 60 s early, never late:
    8-18 s from an allocation's start to its requeue here, start-up included): the potential member,
    sized to about 30 s of training at the rate a short run measures first (so no allocation can finish it
    even at twice that rate; the first allocation trains beside the reference below, so no faster than the
    measurement), checkpoints at each signal and requeues its task until it is done, over several
    allocations; the chain completes and the summary equals a single-process run of the same
    configuration, trained at the same time."""
    env, d = slurm
    run_dir = tmp_path / "run"
    extra = ["ensemble.df_seed=1", "ensemble.potential_seed=1", "ensemble.bootstrap=0",
             "potential.checkpoint_every_steps=1000000"]
    steps = 1000 * max(10, round(30 * _potential_steps_per_s(env, tmp_path / "rate", extra) / 1000))
    extra.append(f"potential.steps={steps}")
    p = subprocess.run([sys.executable, "-m", "dpot_hpc.cli", "slurm", *_sets(run_dir, *extra), "--cpus-per-task", "1",
                        "--time", "1", "--signal-margin", "50", "--submit"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    # the uninterrupted reference trains while Slurm runs the chain (mostly waiting for its 30 s ticks)
    ref = tmp_path / "ref"
    with open(tmp_path / "ref.err", "w") as err, subprocess.Popen(
            [sys.executable, "-m", "dpot_hpc.cli", "run", *_sets(ref, *extra)], env=env, stdout=subprocess.DEVNULL,
            stderr=err) as r:
        _wait_for_queue(env, run_dir, minutes=15)
        r.wait(timeout=900)
    assert r.returncode == 0, (tmp_path / "ref.err").read_text()[-3000:]
    out = "".join(f.read_text() for f in (run_dir / "logs" / "slurm").glob("potential-*.out"))
    assert out.count("requeueing") >= 1, out[-3000:]
    log = (run_dir / "logs" / "potential-potential_seed-000.log").read_text()
    assert log.count("resumed at step") >= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    s_ref = json.loads((ref / "summary.json").read_text())
    assert summary["members"] == s_ref["members"] and summary["best"] == s_ref["best"]
