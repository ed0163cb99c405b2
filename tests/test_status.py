"""`dpot-hpc status` on a real run folder with a flow killed (SIGKILL) in the middle of its training: the
member is reported at its checkpoint's epoch, at a rate its own log's timestamps bound, and every other
member as waiting. (The finished state, after a killed MPI job resumes: tests/test_mpi.py.)"""

import json
import os
import re
import signal
import subprocess
import sys
import time

import h5py

from dpot_hpc.data.h5io import load_tree

SETTINGS = ["mock.n_stars=4000", "ensemble.df_seed=2", "ensemble.bootstrap=1", "ensemble.potential_seed=1",
            "df.transforms=2", "df.hidden=[16, 16]", "df.batch_size=256", "df.max_epochs=500", "df.patience=500",
            "run.threads=1", "run.processes=1"]


def dpot(*args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return [sys.executable, "-m", "dpot_hpc.cli", *args], dict(cwd=cwd, env=env)


def _epoch(path):
    """The checkpoint's epoch of a DF member file that is training, else None."""
    try:
        with h5py.File(path, "r") as f:
            if f.attrs["status"] != "training":
                return None
            return int(load_tree(f["checkpoint/s:state"])["epoch"])
    except (OSError, KeyError):
        return None


def test_status_of_a_killed_flow_and_of_the_waiting_members(tmp_path):
    run_dir = tmp_path / "run"
    sets = [a for s in [*SETTINGS, f"run.dir={run_dir}"] for a in ("--set", s)]
    cmd, kw = dpot("setup", *sets, cwd=tmp_path)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, p.stderr[-3000:]
    member = run_dir / "df" / "df_seed-000.h5"
    cmd, kw = dpot("member", "-c", str(run_dir / "config.yaml"), "--stage", "df", "--index", "0", cwd=tmp_path)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    deadline = t0 + 300
    while time.monotonic() < deadline and proc.poll() is None and (_epoch(member) or 0) < 4:
        time.sleep(0.05)
    assert proc.poll() is None, "the member ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wall = time.monotonic() - t0
    epoch = _epoch(member)
    assert epoch is not None and epoch >= 4

    cmd, kw = dpot("status", str(run_dir), "--json", cwd=tmp_path)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, out.stderr[-3000:]
    st = json.loads(out.stdout)
    plan = json.loads((run_dir / "plan.json").read_text())["members"]
    assert [(m["stage"], m["id"]) for m in st["members"]] == [(m["stage"], m["id"]) for m in plan]
    killed, *others = st["members"]
    assert (killed["id"], killed["state"], killed["unit"]) == ("df_seed-000", "training", "epoch")
    assert (killed["done_units"], killed["total_units"]) == (epoch, 500)
    # the time between two of its log lines: positive and within the process's wall time; the time left
    # is the remaining epochs at that rate
    assert 0 < killed["seconds_per_unit"] <= wall
    assert abs(killed["seconds_left"] - (500 - epoch) * killed["seconds_per_unit"]) < 1e-6
    assert 0 <= killed["idle_s"] < time.monotonic() - t0
    assert killed["log"] == "logs/df-df_seed-000.log"
    assert killed["looks_stopped"] is False  # its log moved seconds ago
    assert all(m["state"] == "waiting" for m in others)
    n = {stage: sum(m["stage"] == stage for m in plan) for stage in ("df", "cache", "potential")}
    assert st["stages"] == {"df": {"done": 0, "training": 1, "waiting": n["df"] - 1},
                            "cache": {"done": 0, "training": 0, "waiting": n["cache"]},
                            "potential": {"done": 0, "training": 0, "waiting": n["potential"]}}
    assert st["summary_written"] is False
    assert st["launcher"] is None  # `dpot-hpc member` (a Slurm array task) takes no lock: the log's age decides

    # an hour without a log line (the job died with its allocation, say): reported as stopped
    log = run_dir / killed["log"]
    os.utime(log, (time.time() - 3600, time.time() - 3600))
    cmd, kw = dpot("status", str(run_dir), cwd=tmp_path)
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw).stdout
    line = next(ln for ln in text.splitlines() if "df_seed-000" in ln)
    ago = re.search(r"last log line ([0-9.]+) min ago: stopped\?", line)
    assert f"epoch {epoch}/500" in line and ago and 60.0 <= float(ago.group(1)) < 61.0, text
    assert "summary    not written" in text
