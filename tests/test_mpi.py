"""The MPI driver with a real mpiexec (the mpich wheel) and several ranks, on tiny members."""

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from dpot_hpc.data.h5io import load_tree
from dpot_hpc.ensemble.statistics import ensemble_report
from dpot_hpc.physics.scalars import SCALARS

MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")

TINY = ["mock.n_stars=3000", "ensemble.df_seed=2", "ensemble.potential_seed=2", "ensemble.bootstrap=1",
        "ensemble.x0_v0=1", "df.transforms=2", "df.hidden=[16, 16]", "df.max_epochs=3", "df.batch_size=256",
        "cache.n_points=1500", "potential.hidden=[16, 16]", "potential.steps=40", "potential.batch_size=256",
        "potential.penalty_points=32", "potential.checkpoint_every_steps=10", "summary.grid_spacing_kpc=0.05",
        "run.threads=1", "run.processes=1", "ensemble.df_seed_potentials=false"]


def _cmd(run_dir, extra=()):
    sets = []
    for s in [*TINY, f"run.dir={run_dir}", *extra]:
        sets += ["--set", s]
    return [sys.executable, "-m", "dpot_hpc.cli", "run", *sets]


def _env():
    return {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def mpirun(n, run_dir, extra=(), timeout=600):
    assert MPIEXEC, "mpiexec not found: install the test extras (pip install -e '.[test,mpi]')"
    return subprocess.run([MPIEXEC, "-n", str(n), *_cmd(run_dir, extra)], env=_env(), capture_output=True,
                          text=True, timeout=timeout)


def serial(run_dir, extra=()):
    return subprocess.run(_cmd(run_dir, extra), env=_env(), capture_output=True, text=True, timeout=600)


def member_files(run_dir):
    return sorted(p.relative_to(run_dir) for p in Path(run_dir).glob("*/*.h5") if p.parts[-2] in ("df", "cache", "potential"))


def weights(path):
    with h5py.File(path) as f:
        if "model" in f:
            return {k: v.numpy() for k, v in load_tree(f["model"]).items()}
        return {k: f[k][()] for k in ("x", "grad_x", "grad_v")}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("serial") / "run"
    p = serial(run_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    return run_dir


@pytest.mark.parametrize("seed", [0, 4])
def test_member_scalars_do_not_depend_on_the_thread_count(seed):
    """A potential's scalars come out bit for bit the same on 1 and on 3 threads (the driver lends idle
    ranks' threads to busy ones, so a member may finish on more threads than in a serial run): the field
    evaluation on the grid gives other last bits with more threads (a_z by ~1e-11 on a 2-core AMD EPYC),
    so member_scalars runs on one thread."""
    import torch

    from dpot_hpc.config import load_config
    from dpot_hpc.ensemble.members import member_scalars
    from dpot_hpc.models.potential_training import build_potential

    cfg = load_config(None, ["potential.hidden=[16, 16]", "summary.grid_spacing_kpc=0.05"])
    phi = build_potential(cfg.potential, seed, cfg.catalogue.r_max_kpc)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in phi.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=gen))
    threads = torch.get_num_threads()
    try:
        out = []
        for n in (1, 3):
            torch.set_num_threads(n)
            out.append(member_scalars(phi, 28.0, cfg, 0.04, cfg.frame.sun()))
            assert torch.get_num_threads() == n  # and the caller's count is restored
    finally:
        torch.set_num_threads(threads)
    assert out[0] == out[1]


def test_three_ranks_equal_one_process(reference, tmp_path):
    p = mpirun(3, tmp_path / "run")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "on 3 rank(s)" in p.stderr
    ranks_used = {ln.split("]")[0] for ln in p.stderr.splitlines() if ln.startswith("dpot-hpc[rank")}
    assert len(ranks_used) > 1  # the work really was shared
    files = member_files(reference)
    assert files == member_files(tmp_path / "run") and len(files) == 3 + 2 + 4
    for rel in files:
        a, b = weights(reference / rel), weights(tmp_path / "run" / rel)
        for k in a:
            assert np.array_equal(a[k], b[k]), (rel, k)
    s_ref = json.loads((reference / "summary.json").read_text())
    s_mpi = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s_ref["members"] == s_mpi["members"] and s_ref["best"] == s_mpi["best"]


def _digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_killed_mpi_job_resumes(reference, tmp_path):
    run_dir = tmp_path / "run"
    assert MPIEXEC
    proc = subprocess.Popen([MPIEXEC, "-n", "2", *_cmd(run_dir)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = list((run_dir / "cache").glob("*.h5"))
        if done:  # the DF stage is over: kill launcher and ranks at once
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the job finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {}
    for p in run_dir.glob("*/*.h5"):
        if p.parts[-2] in ("df", "potential"):
            with h5py.File(p) as f:
                if f.attrs["status"] == "done":
                    finished[p] = _digest(p)
        elif p.parts[-2] == "cache":
            finished[p] = _digest(p)
    assert any(p.parts[-2] == "df" for p in finished)
    assert not (run_dir / "summary.json").exists()
    st = status(run_dir)
    assert st["stages"]["df"]["done"] == 3 and not st["summary_written"]
    # the killed launcher's lock is still there, its process gone: whatever was training is stopped, now
    assert st["launcher"]["command"] == "run" and st["launcher"]["alive"] is False
    assert all(m["looks_stopped"] for m in st["members"] if m["state"] == "training")
    assert {m["id"] for m in st["members"] if m["stage"] == "cache" and m["state"] == "done"} == \
        {p.stem for p in finished if p.parts[-2] == "cache"}
    again = mpirun(2, run_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    for p, d in finished.items():
        assert _digest(p) == d, p  # finished members were neither retrained nor rewritten
    for p in finished:
        if p.parts[-2] == "df":
            assert f"{p.stem} was done" in again.stderr
    s_ref = json.loads((reference / "summary.json").read_text())
    s_new = json.loads((run_dir / "summary.json").read_text())
    assert s_ref["members"] == s_new["members"] and s_ref["best"] == s_new["best"]
    st = status(run_dir)  # every member of the plan done, the summary written
    plan = json.loads((run_dir / "plan.json").read_text())["members"]
    assert [(m["stage"], m["id"], m["state"]) for m in st["members"]] == [(m["stage"], m["id"], "done") for m in plan]
    assert st["summary_written"] and st["launcher"] is None  # the lock released at the end


def status(run_dir):
    """`dpot-hpc status RUN_DIR --json`, parsed."""
    p = subprocess.run([sys.executable, "-m", "dpot_hpc.cli", "status", str(run_dir), "--json"], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout)


def test_more_ranks_than_members_and_a_pipeline_off(tmp_path):
    extra = ["ensemble.df_seed=1", "ensemble.potential_seed=1", "ensemble.bootstrap=0", "ensemble.x0_v0=0"]
    p = mpirun(4, tmp_path / "run", extra)
    assert p.returncode == 0, p.stderr[-3000:]
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert list(s["members"]) == ["potential_seed-000"] and list(s["pipelines"]) == ["potential_seed"]
    assert not list((tmp_path / "run" / "df").glob("bootstrap-*"))


def test_one_rank_under_mpiexec(reference, tmp_path):
    p = mpirun(1, tmp_path / "run")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["members"] == \
        json.loads((reference / "summary.json").read_text())["members"]


def test_report_matches_numpy():
    rng = np.random.default_rng(0)
    members = {f"{p}-{i:03d}": {k: float(rng.normal()) for k in SCALARS}
               for p, n in (("potential_seed", 7), ("bootstrap", 5), ("x0_v0", 1)) for i in range(n)}
    rep = ensemble_report(members, n_averaged=5)
    for pipe, n in (("potential_seed", 7), ("bootstrap", 5)):
        for k in SCALARS:
            v = [members[f"{pipe}-{i:03d}"][k] for i in range(n)]
            p16, p50, p84 = np.percentile(v, [16, 50, 84])
            st = rep["pipelines"][pipe][k]
            assert st["median"] == p50 and st["p16"] == p16 and st["half_width"] == (p84 - p16) / 2
            assert st["sigma"] == pytest.approx(np.std(v, ddof=1), rel=1e-12)
    from scipy import stats

    for k in SCALARS:
        # the band: the bootstrap members' spread (the data's sampling and the flows' training noise), of
        # which the median over potentials on a cache of 5 flows keeps the sampling part and a fifth of
        # the rest: sigma sqrt(1 + 1/5); Student's t quantiles with 5 - 1 degrees of freedom
        sig = np.std([members[f"bootstrap-{i:03d}"][k] for i in range(5)], ddof=1) * np.sqrt(1 + 1 / 5)
        b = rep["best"][k]
        assert b["uncertainty"] == pytest.approx(sig, rel=1e-12) and b["dof"] == 4 and list(b["terms"]) == ["df"]
        assert b["half_width_68"] == pytest.approx(stats.t.ppf(0.5 + 0.682689492137086 / 2, 4) * sig, rel=1e-9)
        assert b["half_width_95"] == pytest.approx(stats.t.ppf(0.975, 4) * sig, rel=1e-9)
        assert b["median"] == rep["pipelines"]["potential_seed"][k]["median"]



def test_idle_ranks_lend_their_threads_to_busy_ranks_of_their_node(tmp_path):
    """Two ranks of a node on the same CPUs with 1 thread each: when one marks itself idle, the other's
    next look takes both threads; marks of another node, or of a rank bound to other CPUs, do not
    count; the end of the stage restores 1 thread."""
    import torch

    from dpot_hpc.cluster import cores
    from dpot_hpc.cluster.cores import CoreShare

    before = torch.get_num_threads()
    try:
        busy = CoreShare(tmp_path / "df.idle", rank=0, sharing=2, threads=1)
        idle = CoreShare(tmp_path / "df.idle", rank=1, sharing=2, threads=1)
        elsewhere = CoreShare(tmp_path / "df.idle", rank=2, sharing=1, threads=4, group="othercpus")
        (tmp_path / "df.idle" / "othernode.all.7").write_text("8\n")  # another node's idle rank
        elsewhere.lend()  # an idle rank of this node bound to other CPUs
        busy.rebalance()
        assert torch.get_num_threads() == 1
        idle.lend()
        busy._next_look = 0.0  # skip the POLL_S wait between looks
        busy.rebalance()
        assert torch.get_num_threads() == 2
        assert busy.threads_now() == 2
        busy.close()
        assert torch.get_num_threads() == 1
        t0 = time.monotonic()
        idle.wait(lambda: time.monotonic() - t0 > 0.5 * cores.POLL_S)
    finally:
        torch.set_num_threads(before)


def test_thread_share_divides_a_ranks_cpus_among_the_ranks_that_share_them():
    from dpot_hpc.cluster.cores import thread_share

    node = frozenset(range(8))
    assert thread_share(node, [node] * 4) == 2  # unbound ranks: the node shared evenly
    sockets = [frozenset(range(4)), frozenset(range(4)), frozenset(range(4, 8))]
    assert thread_share(sockets[0], sockets) == 2 and thread_share(sockets[2], sockets) == 4  # bound to sockets
    assert thread_share(frozenset({3}), [frozenset({c}) for c in range(8)]) == 1  # bound to cores
    assert thread_share(frozenset({0}), [frozenset({0})] * 3) == 1  # more ranks than CPUs: still 1


BIND = """
import json, sys
from dpot_hpc.cluster.launch import relaunch_command
from dpot_hpc.cluster.mpi import bind, world
from dpot_hpc.config import load_config
cfg = load_config(None, [])
comm = world()
b = bind(comm, cfg)
cmd = relaunch_command(cfg, ["run"]) if comm.Get_size() == 1 else None
print(json.dumps({"threads": b.threads, "sharing": b.sharing, "group": b.cpu_group,
                  "relaunch_ranks": int(cmd[cmd.index("-n") + 1]) if cmd else 1}), flush=True)
"""


def _bind_report(tmp_path, prefix):
    script = tmp_path / "bind.py"
    script.write_text(BIND)
    env = {k: v for k, v in _env().items() if k not in ("SLURM_CPUS_PER_TASK", "DPOT_HPC_LAUNCHED")}
    p = subprocess.run([*prefix, sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return [json.loads(obj) for obj in re.findall(r"\{[^{}]*\}", p.stdout)]  # ranks' lines may interleave


def test_ranks_take_the_cpus_their_affinity_allows(tmp_path):
    """Real mpiexec and taskset: ranks bound one per core take 1 thread each and lend none to each
    other; unbound ranks share the CPUs; a process confined to one CPU takes 1 thread and `dpot-hpc run`
    starts no extra ranks for it; unconfined, it takes every CPU of its mask and starts one rank each."""
    taskset = shutil.which("taskset")
    assert taskset, "taskset not found (util-linux)"
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    bound = _bind_report(tmp_path, [MPIEXEC, "-n", "2", "-bind-to", "core"])
    assert [(r["threads"], r["sharing"]) for r in bound] == [(1, 1), (1, 1)]
    assert bound[0]["group"] != bound[1]["group"]
    unbound = _bind_report(tmp_path, [MPIEXEC, "-n", "2"])
    assert [(r["threads"], r["sharing"]) for r in unbound] == [(len(cpus) // 2, 2)] * 2
    (one,) = _bind_report(tmp_path, [taskset, "-c", str(cpus[0])])
    assert (one["threads"], one["relaunch_ranks"]) == (1, 1)
    (full,) = _bind_report(tmp_path, [])
    assert (full["threads"], full["relaunch_ranks"]) == (len(cpus), len(cpus))


def test_cgroup_cpu_limit_caps_the_cpus(tmp_path):
    """cgroup v2 cpu.max and v1 cfs quota files as the kernel writes them: the tightest cap of the
    process's cgroup and its parents, in whole CPUs rounded up; no cap gives None; a container that
    sees its own cgroup at the mount point (the host's path absent) reads the mount's files."""
    from dpot_hpc.cluster.cores import cpu_limit, thread_share

    v2 = tmp_path / "v2"
    (v2 / "job" / "step").mkdir(parents=True)
    (v2 / "cpu.max").write_text("max 100000\n")
    (v2 / "job" / "cpu.max").write_text("400000 100000\n")
    (v2 / "job" / "step" / "cpu.max").write_text("150000 100000\n")
    assert cpu_limit(v2, "0::/job/step\n") == 2
    (v2 / "job" / "cpu.max").write_text("100000 100000\n")
    assert cpu_limit(v2, "0::/job/step\n") == 1
    assert cpu_limit(v2, "0::/\n") is None
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    proc = "4:memory:/x\n2:cpu,cpuacct:/libpod_parent/libpod-0123\n0::/\n"
    assert cpu_limit(v1, proc) is None
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("300000\n")
    assert cpu_limit(v1, proc) == 3
    node = frozenset(range(64))
    assert thread_share(node, [node] * 2, limit=3) == 1 and thread_share(node, [node], limit=3) == 3
