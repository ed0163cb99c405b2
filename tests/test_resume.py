"""A member killed with SIGKILL and run again ends with exactly the weights of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.data.h5io import load_tree
from dpot_hpc.models.df_training import bfloat16_epochs

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    torch.set_num_threads(1)
    from pathlib import Path
    from dpot_hpc.config import load_config
    from dpot_hpc.data.runfolder import RunFolder
    from dpot_hpc.ensemble.members import RunContext, run_df_member, run_potential_member
    from dpot_hpc.ensemble.plan import MemberSpec
    from dpot_hpc.physics.mock import sample, log_df_gradients
    from dpot_hpc.data.mockfile import mock_galaxy
    kind, run_dir = sys.argv[1], Path(sys.argv[2])
    cfg = load_config(None, sys.argv[3:])
    mock = mock_galaxy(cfg)
    ctx = RunContext(cfg, RunFolder(run_dir), echo=False)
    s = sample(mock, cfg.mock.n_stars, cfg.mock.seed)
    if kind == "df":
        run_df_member(MemberSpec("df", "df_seed", 0), ctx, torch.cat([s.x_h, s.v_h], 1))
    else:
        _, gx, gv = log_df_gradients(mock, s.log_c, s.x_h, s.v_h)
        cache = dict(x=s.x_h, v=s.v_h, grad_x=gx, grad_v=gv)
        run_potential_member(MemberSpec("potential", "potential_seed", 0), ctx, cache, 0.0, cfg.frame.sun())
    """
)

DF = ["mock.n_stars=20000", "df.transforms=2", "df.hidden=[32, 32]", "df.batch_size=128", "df.max_epochs=12",
      "df.patience=100"]
POT = ["mock.n_stars=3000", "potential.hidden=[32, 32]", "potential.steps=400", "potential.batch_size=256",
       "potential.penalty_points=64", "potential.checkpoint_every_steps=20"]


def _launch(kind, run_dir, settings):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, kind, str(run_dir), *settings], env=env)


def _progress(path, kind):
    """(status, epoch or step) of a member file, or None while it does not exist."""
    try:
        with h5py.File(path, "r") as f:
            st = str(f.attrs["status"])
            key = "epoch" if kind == "df" else "step"
            if st != "training":
                return st, None
            return st, load_tree(f["checkpoint/s:state"])[key]
    except (OSError, KeyError):
        return None


def _final_weights(path):
    with h5py.File(path, "r") as f:
        assert f.attrs["status"] == "done"
        return load_tree(f["model"]), dict(f.attrs)


@pytest.mark.parametrize("kind, settings, kill_at", [("df", DF, 3), ("df", [*DF, "df.bfloat16_fraction=0.5"], 3),
                                                     ("potential", POT, 100)])
def test_killed_member_resumes_to_identical_weights(tmp_path, kind, settings, kill_at):
    ref = _launch(kind, tmp_path / "ref", settings)
    victim = _launch(kind, tmp_path / "killed", settings)
    path = tmp_path / "killed" / kind / f"{kind if kind == 'df' else 'potential'}_seed-000.h5"
    deadline = time.monotonic() + 300
    killed_at = None
    while time.monotonic() < deadline and victim.poll() is None:
        p = _progress(path, kind)
        if p and p[0] == "training" and p[1] >= kill_at:
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = p[1]
            break
        time.sleep(0.02)
    assert killed_at is not None, "the member finished (or timed out) before it could be killed"
    assert _progress(path, kind)[0] == "training"
    resumed = _launch(kind, tmp_path / "killed", settings)
    assert resumed.wait(timeout=600) == 0
    assert ref.wait(timeout=600) == 0
    w_ref, a_ref = _final_weights(tmp_path / "ref" / kind / path.name)
    w_res, a_res = _final_weights(path)
    assert w_ref.keys() == w_res.keys()
    for k in w_ref:
        assert torch.equal(w_ref[k], w_res[k]), k
    if kind == "potential":
        assert a_ref["omega_p_kms_kpc"] == a_res["omega_p_kms_kpc"]
    else:  # the member records how many epochs ran with bfloat16 products (none where the CPU lacks them)
        assert a_res["bfloat16_epochs"] == bfloat16_epochs(load_config(None, settings).df, "cpu")
    log = (tmp_path / "killed" / "logs" / f"{kind}-{path.stem}.log").read_text()
    assert "resumed at" in log
