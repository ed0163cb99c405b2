"""bfloat16 matrix products in the first epochs of a flow's training (df.bfloat16_fraction): where they
apply, and that they leave a flow as good as float32's."""

import math

import pytest
import torch

from dpot_hpc.config import load_config
from dpot_hpc.models.device import _cpu_has_bfloat16, native_bfloat16
from dpot_hpc.models.df_training import bfloat16_epochs, train_flow

SMALL = ["df.transforms=2", "df.hidden=[32, 32]", "df.batch_size=256", "df.max_epochs=6", "df.patience=100"]


def test_cpu_flags_decide_native_bfloat16(tmp_path):
    for flags, native in [("fpu avx512f avx512_bf16 sse", True), ("fpu amx_bf16 amx_tile", True),
                          ("fpu avx2 avx512f avx512bw", False)]:
        info = tmp_path / f"cpuinfo-{len(flags)}"
        info.write_text(f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
        assert _cpu_has_bfloat16(info) is native
    assert _cpu_has_bfloat16(tmp_path / "missing") is False


@pytest.mark.parametrize("fraction, epochs", [(0.0, 0), (0.9, 27), (1.0, 30), (0.5, 15), (0.99, 29)])
def test_bfloat16_epochs_are_the_first_fraction_of_max_epochs(fraction, epochs):
    df = load_config(None, [f"df.bfloat16_fraction={fraction}"]).df
    assert bfloat16_epochs(df, "cpu") == (epochs if native_bfloat16("cpu") else 0)
    assert bfloat16_epochs(df, "cpu", deconvolve=True) == 0  # flows fitted through the errors: float32


def _gaussian_stars(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    sd = torch.tensor([0.25, 0.25, 0.1, 30.0, 25.0, 18.0], dtype=torch.float64)
    w = torch.randn(n, 6, generator=g, dtype=torch.float64) * sd
    return w[torch.linalg.vector_norm(w[:, :3], dim=1) < 0.8]


def test_a_flow_trained_with_bfloat16_products_fits_as_well_as_in_float32():
    """Same stars and seed: the validation -<ln p> of the two flows (both evaluated in float32) agree within
    0.02 nats per star (float32 trainings of two seeds differ by about that); where the CPU has native
    bfloat16 the trainings really differ (elsewhere they are the same float32 training)."""
    torch.set_num_threads(1)
    stars = _gaussian_stars(20_000)
    out = {}
    for frac in (0.0, 1.0):
        df = load_config(None, [*SMALL, f"df.bfloat16_fraction={frac}"]).df
        flow, state = train_flow(stars, df, seed=5, r_max_kpc=0.8)
        out[frac] = (flow, state)
    v32, v16 = out[0.0][1].best_val, out[1.0][1].best_val
    assert math.isfinite(v16) and abs(v16 - v32) < 0.02, (v32, v16)
    differ = any(not torch.equal(a, b) for a, b in zip(out[0.0][0].state_dict().values(),
                                                        out[1.0][0].state_dict().values()))
    assert differ == native_bfloat16("cpu")
