"""`dpot-hpc selfcheck`: every check passes on this install; a device torch cannot use fails clearly."""

import shutil

import pytest
import torch
from click.testing import CliRunner

from dpot_hpc.cli import main
from dpot_hpc.selfcheck import CHECKS, run_checks


def test_all_checks_pass_on_cpu():
    checks = run_checks("cpu")
    assert [c.name for c in checks] == list(CHECKS)
    assert all(c.ok for c in checks), [(c.name, c.detail) for c in checks if not c.ok]
    # with a C++ compiler on the PATH the potential's loss must compile, not fall back in silence
    compiled = next(c.detail for c in checks if c.name == "compile").startswith("compiled")
    assert compiled == bool(shutil.which("g++") or shutil.which("c++"))


def test_checks_report_failures_instead_of_raising():
    # the meta device has no data: every numerical check must fail and say why
    checks = run_checks("meta", ["cbe", "laplacian", "flow"])
    assert not any(c.ok for c in checks)
    assert all(c.detail for c in checks)


def test_cli_cuda_passes_on_a_gpu_and_is_a_clear_error_without_one():
    r = CliRunner().invoke(main, ["selfcheck", "--device", "cuda"])
    if torch.cuda.is_available():
        assert r.exit_code == 0 and "self-check passed" in r.output, r.output
    else:
        assert r.exit_code == 1 and "no CUDA device" in r.output


def test_pick_device_binds_local_rank_modulo_gpus_and_names_the_key():
    from dpot_hpc.models.device import pick_device

    assert pick_device("cpu", local_rank=5) == "cpu"
    if torch.cuda.is_available():
        assert pick_device("auto", local_rank=5) == f"cuda:{5 % torch.cuda.device_count()}"
    else:
        assert pick_device("auto", local_rank=5) == "cpu"
        with pytest.raises(RuntimeError, match="run.device: cuda requested"):
            pick_device("cuda")
