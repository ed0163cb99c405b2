"""Shared fixtures: the default mock galaxy and small samples of it (float64, real sampling)."""

import os
import sys
import warnings

import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.physics.mock import sample
from dpot_hpc.data.mockfile import mock_galaxy

# one torch thread per pytest-xdist worker (the test command runs two), else two
torch.set_num_threads(int(os.environ.get("DPOT_TEST_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")))


#: test files by their time in a full run on 2 cores (most first; the rest follow in collection order).
#: pytest-xdist's --dist loadfile hands out whole files in collection order; its default reordering puts
#: files with many tests first, which left the Slurm file (two tests, minutes of waiting on Slurm's
#: clock) to the end of the run, on one worker, while the other idled.
SLOW_FILES_FIRST = ("test_slurm.py", "test_container.py", "test_reliability.py", "test_mpi.py",
                    "test_potential_exact.py", "test_cli.py", "test_bench.py", "test_resume.py",
                    "test_calibration.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: keep the order below
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(config, items):
    rank = {name: k for k, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep their own order


@pytest.fixture(scope="session")
def default_config():
    return load_config(None)


@pytest.fixture(scope="session")
def mock(default_config):
    return mock_galaxy(default_config)


@pytest.fixture(scope="session")
def mock_sample(mock):
    return sample(mock, 60_000, seed=11)


def skip_loudly_unless_required(require_env: str, what: str, why: str, hint: str) -> None:
    """Skip a test whose tools are missing, loudly; fail instead where ``require_env`` is set (CI)."""
    if os.environ.get(require_env):
        pytest.fail(f"{require_env} is set but the {what} cannot run: {why}")
    msg = f"{what.upper()} SKIPPED: {why}. {hint}"
    warnings.warn(msg, stacklevel=2)
    print("\n" + "!" * 80 + "\n" + msg + "\n" + "!" * 80, file=sys.stderr)
    pytest.skip(msg)
