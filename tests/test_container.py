"""The Dockerfile builds (podman, debootstrapped Debian base, CPU torch wheel) and the image runs:
`dpot-hpc --version`, `dpot-hpc selfcheck` as the non-root user (the potential's loss compiles there:
the image carries g++ and Python's headers), and a two-rank mpiexec with the
image's MPICH loaded by mpi4py's wheel (rank 0 gathers both ranks), the mpiexec that `dpot-hpc run`
starts its local ranks with (docker/podman_check.sh does the work).

.ci/run installs podman, runc and debootstrap and sets DPOT_REQUIRE_CONTAINER=1, so there a missing
engine fails the test. Elsewhere (no podman, or not root) it is skipped with a loud message.
"""

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from conftest import skip_loudly_unless_required

from dpot_hpc import __version__

ROOT = Path(__file__).resolve().parents[1]


def _engine_missing() -> str | None:
    missing = [t for t in ("podman", "runc", "debootstrap") if not shutil.which(t)]
    if missing:
        return f"{', '.join(missing)} not installed"
    if os.geteuid() != 0:
        return "not root (the check builds with rootful podman)"
    if not list(Path("/opt/wheels").glob("torch-2.13.0+cpu-cp311-*.whl")) and not os.environ.get("TORCH_WHEEL"):
        return "no local torch CPU wheel for Python 3.11 (set TORCH_WHEEL)"
    return None


def test_image_builds_and_passes_its_self_check():
    why = _engine_missing()
    if why:
        skip_loudly_unless_required("DPOT_REQUIRE_CONTAINER", "container build", why,
                                    "Install podman, runc and debootstrap as root (as .ci/run does) "
                                    "to build the Dockerfile and run the image's self-check.")
    tag = f"localhost/dpot-hpc:test-{uuid.uuid4().hex[:8]}"
    try:
        p = subprocess.run(["bash", str(ROOT / "docker" / "podman_check.sh"), tag],
                           check=False, capture_output=True, text=True, timeout=1500)
    finally:
        subprocess.run(["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "rmi", "-f", tag],
                       check=False, capture_output=True)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    assert f"dpot-hpc, version {__version__}" in out
    assert "uid=1000(dpot)" in out
    assert "self-check passed" in out and "FAIL" not in out
    assert "compiled: loss and gradients equal eager's" in out, out[-3000:]
    assert "mpi: ranks [0, 1] answered a gather; MPICH" in out, p.stdout[-2000:]
    assert "relaunch: /opt/dpot-hpc/venv/bin/mpiexec -n 2 " in out, p.stdout[-2000:]
    assert "capped: relaunch None, 1 thread(s)" in out, p.stdout[-2000:]
