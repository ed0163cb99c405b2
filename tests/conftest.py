"""Shared fixtures: the default mock galaxy and small samples of it (float64, real sampling)."""

import os

import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.mock import sample
from dpot_hpc.mockfile import mock_galaxy

torch.set_num_threads(int(os.environ.get("DPOT_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def default_config():
    return load_config(None)


@pytest.fixture(scope="session")
def mock(default_config):
    return mock_galaxy(default_config)


@pytest.fixture(scope="session")
def mock_sample(mock):
    return sample(mock, 60_000, seed=11)
