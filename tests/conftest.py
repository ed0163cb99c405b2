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
