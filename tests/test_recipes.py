"""Container recipes and shell scripts: linted (hadolint, shellcheck), the Apptainer definition parsed,
and both recipes share one install script. (No container engine builds here: see README.)"""

import re
import shutil
import subprocess
import sys
from pathlib import Path


from dpot_hpc.config import load_config
from dpot_hpc.cluster.slurm import SlurmOptions, render

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name):
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} not found: install the test extras (pip install -e '.[test]')"
    return path


def test_dockerfile_passes_hadolint():
    p = subprocess.run([tool("hadolint"), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_shell_scripts_and_rendered_slurm_jobs_pass_shellcheck(tmp_path):
    cfg = load_config(None, [f"run.dir={tmp_path / 'run'}", "ensemble.df_seed=3", "ensemble.bootstrap=2"])
    (tmp_path / "run").mkdir()
    scripts = [p for _, p in render(cfg, SlurmOptions(account="acc", partition="gpu", gpus_per_task=1,
                                                       max_parallel=4, container="dpot.sif"))]
    files = [*scripts, *(ROOT / "jobs").glob("*"), *(ROOT / "docker").glob("*.sh"), *(ROOT / "tests/slurm").glob("*.sh"),
             ROOT / ".ci/run"]
    p = subprocess.run([tool("shellcheck"), "-s", "bash", *map(str, files)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout
    text = {s.name: s.read_text() for s in scripts}
    assert "#SBATCH --array=0-4%4" in text["01-df.sbatch"]  # 3 df_seed + 2 bootstrap flows
    assert '--stage df --index "$SLURM_ARRAY_TASK_ID"' in text["01-df.sbatch"]
    assert "#SBATCH --gpus-per-task=1" in text["03-potential.sbatch"]


def _sections(text):
    out, cur = {}, "header"
    for line in text.splitlines():
        m = re.match(r"^%(\w+)", line)
        if m:
            cur = m.group(1)
            out[cur] = []
        else:
            out.setdefault(cur, []).append(line)
    return out


def test_apptainer_definition_parses_and_shares_the_install_script():
    text = (ROOT / "apptainer.def").read_text()
    sec = _sections(text)
    header = dict(re.findall(r"^(\w+):\s*(\S+)", "\n".join(sec["header"]), re.M))
    assert header["Bootstrap"] == "docker" and header["From"].startswith("nvidia/cuda:")
    for s in ("labels", "help", "files", "post", "environment", "runscript", "test"):
        assert s in sec, s
    for line in filter(str.strip, sec["files"]):
        src = line.split()[0]
        assert (ROOT / src).exists(), src
    assert any("/opt/dpot-hpc/install.sh" in ln for ln in sec["post"])
    assert any("dpot-hpc" in ln and "exec" in ln for ln in sec["runscript"])
    assert any("dpot-hpc selfcheck" in ln for ln in sec["test"])
    docker = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^COPY docker/install.sh docker/constraints.txt /opt/dpot-hpc/$", docker, re.M)
    assert "RUN " in docker and "/opt/dpot-hpc/install.sh" in docker
    # the runtime packages and the libmpi.so.12 link of the image's last stage are those of %post
    last = docker.split("FROM ${CUDA_IMAGE}")[-1]
    runtime = re.search(r"--no-install-recommends ([^\\\n]+)", last).group(1).split()
    post = "\n".join(sec["post"])
    for pkg in runtime:
        assert re.search(rf"--no-install-recommends .*(?<!\S){re.escape(pkg)}(?!\S)", post), pkg
    link = 'ln -sf libmpich.so.12 "/usr/lib/$(uname -m)-linux-gnu/libmpi.so.12" && ldconfig'
    assert link in last and link in post
    # run's own local launch uses the mpiexec next to Python: the image's, through a script
    mpiexec = """printf '#!/bin/sh\\nexec /usr/bin/mpiexec "$@"\\n' > /opt/dpot-hpc/venv/bin/mpiexec"""
    assert mpiexec in last and mpiexec in post
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", docker).group(1)
    assert base == header["From"]  # both recipes build on the same pinned base image
