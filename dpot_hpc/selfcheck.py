"""Quick self-check of an installation (seconds; ~25 s the first time, compiling): the environment it
sees, and five facts computed on the device the members would use.

Meant for a new container or cluster module (`dpot-hpc selfcheck`, `apptainer test dpot.sif`):
  - cbe:        the exact mock DF is stationary at the true pattern speed (relative residual < 1e-10,
                float64) and not 3 km/s/kpc away from it (> 1e-3): frames, CBE and autograd work;
  - laplacian:  the potential network's one-pass Laplacian equals nested autograd's (float32);
  - flow:       a small flow trained for a few epochs beats its untrained self on held-out stars;
  - hdf5:       a checkpoint tree written atomically reads back bit-for-bit;
  - compile:    the potential's training loss compiles (torch.compile: a C++ compiler and Python's
                headers on a CPU, Triton on a GPU) and gives eager's loss and weight gradients; where it
                cannot compile the check says so and passes (potentials then train eagerly, slower).
"""

from __future__ import annotations

import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import astropy
import h5py
import torch

from ._version import __version__
from .config import Config, DFSection, PotentialSection
from .data.h5io import atomic_h5, load_tree, save_tree
from .data.mockfile import mock_galaxy
from .models.df_training import build_flow, train_flow
from .models.flows import log_prob_and_gradients
from .models.potential import PotentialNet, fields
from .models.potential_training import COMPILE_MIN_POINTS, build_potential, loss_function, loss_terms
from .models.training import LoopHooks
from .physics.cbe import helio_frame_vectors, residual_heliocentric
from .physics.derivatives import gradient_and_laplacian
from .physics.mock import log_df_gradients, sample, truth_fields


@dataclass(frozen=True)
class Check:
    """One self-check: its name, whether it passed, what it measured, and its wall time (s)."""

    name: str
    ok: bool
    detail: str
    seconds: float


def environment() -> list[str]:
    """Versions of the stack and the devices torch sees, one line each."""
    lines = [
        f"dpot-hpc {__version__}, Python {platform.python_version()} on {platform.machine()}",
        (f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}), "
         f"{torch.get_num_threads()} CPU threads"),
    ]
    if torch.cuda.is_available():
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        lines.append(f"CUDA devices: {torch.cuda.device_count()} ({', '.join(names)})")
    else:
        lines.append("CUDA devices: none visible")
    lines.append(f"h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), astropy {astropy.__version__}")
    try:
        from mpi4py import MPI

        lib = " ".join(MPI.Get_library_version().strip().splitlines()[0].split())
        lines.append(f"mpi4py: {lib} (MPI {'.'.join(map(str, MPI.Get_version()))})")
    except ImportError as exc:  # not installed, or its MPI library cannot be loaded
        lines.append(f"mpi4py: unavailable, single-process runs only ({exc})")
    return lines


def check_cbe(device: str) -> str:
    mock = mock_galaxy(Config())
    s = sample(mock, 2000, seed=3, chunk=50_000)
    x, v = s.x_h.to(device), s.v_h.to(device)
    _, gx, gv = log_df_gradients(mock, s.log_c.to(device), x, v)
    _, accel, _ = truth_fields(mock, x)
    scale = ((v * gx).sum(-1).abs() + (accel * gv).sum(-1).abs()).mean()

    def rel(omega: float) -> float:
        om = torch.tensor(omega, dtype=torch.float64, device=device)
        return (residual_heliocentric(x, v, gx, gv, accel, om, mock.sun).abs().max() / scale).item()

    at, off = rel(mock.omega_p_kms_kpc), rel(mock.omega_p_kms_kpc + 3.0)
    if not (at < 1e-10 and off > 1e-3):
        raise AssertionError(f"max|r|/scale {at:.1e} at Omega_p (want < 1e-10), {off:.1e} 3 km/s/kpc off (want > 1e-3)")
    return f"max|r|/scale {at:.1e} at Omega_p, {off:.1e} at Omega_p + 3"


def check_laplacian(device: str) -> str:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        phi = PotentialNet([64, 64]).to(device)
        with torch.no_grad():
            phi.linear.normal_()
            phi.quadratic.normal_()
        x = (torch.rand(512, 3, dtype=torch.float64) * 2 - 1).to(device)
    with torch.no_grad():
        _, grad1, lap1 = fields(phi, x)
    _, grad2, lap2 = gradient_and_laplacian(phi, x)
    err = max(((lap1 - lap2).abs().max() / lap2.abs().mean()).item(),
              ((grad1 - grad2).abs().max() / grad2.abs().mean()).item())
    if not err < 1e-4:
        raise AssertionError(f"one-pass and nested-autograd derivatives differ by {err:.1e} (relative; want < 1e-4)")
    return f"one-pass vs nested autograd: {err:.1e} (relative)"


def check_flow(device: str) -> str:
    mock = mock_galaxy(Config())
    stars = sample(mock, 6000, seed=5, chunk=50_000)
    w = torch.cat([stars.x_h, stars.v_h], -1)
    train, held = w[:5000], w[5000:]
    df = DFSection(transforms=2, hidden=[32, 32], batch_size=256, max_epochs=4, patience=4, learning_rate=3e-3)
    r_max = mock.r_max_kpc
    flow, _ = train_flow(train, df, seed=7, r_max_kpc=r_max, hooks=LoopHooks(device=device))
    untrained = build_flow(df, 7, r_max)
    untrained.set_standardisation(flow.mean, flow.std, train.shape[0])
    flow.to(device)
    untrained.to(device)
    lp, grad = log_prob_and_gradients(flow, held.to(device))
    with torch.no_grad():
        lp0 = untrained.log_prob(held.to(device))
    gain = (lp - lp0).mean().item()
    if not (torch.isfinite(grad).all() and gain > 0.05):
        raise AssertionError(f"held-out ln f gained {gain:.3f} nats/star over the untrained flow (want > 0.05)")
    return f"held-out ln f +{gain:.2f} nats/star after 4 epochs; gradients finite"


def check_hdf5(device: str) -> str:
    gen = torch.Generator().manual_seed(1)
    tree = {"model": {"w": torch.randn(16, 8, generator=gen), "step": 12}, "history": [[1, 0.5], [2, 0.25]]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "check.h5"
        with atomic_h5(path) as h5:
            save_tree(h5, tree)
        with h5py.File(path, "r") as h5:
            back = load_tree(h5)
    if not (torch.equal(back["model"]["w"], tree["model"]["w"]) and back["model"]["step"] == 12
            and back["history"] == tree["history"]):
        raise AssertionError("the checkpoint tree read back differs from the one written")
    return "atomic write and read-back identical"


def check_compile(device: str) -> str:
    mock = mock_galaxy(Config())
    s = sample(mock, 512, seed=4, chunk=50_000)
    _, gx, gv = log_df_gradients(mock, s.log_c, s.x_h, s.v_h)
    batch = {k: t.to(device=device, dtype=torch.float32) for k, t in zip(("x", "v", "grad_x", "grad_v"),
                                                                         (s.x_h, s.v_h, gx, gv))}
    # long enough a training that loss_function compiles; small network, 64 penalty points
    pot = PotentialSection(hidden=[32, 32], batch_size=512, penalty_points=64,
                           steps=COMPILE_MIN_POINTS // 512 + 1)
    phi = build_potential(pot, 1, 1.0).to(device)
    omega = torch.nn.Parameter(torch.tensor(27.0, dtype=torch.float64, device=device))
    frame = helio_frame_vectors(mock.sun, torch.float32, device)
    fallback: list[str] = []
    values = []
    for fn in (loss_terms, loss_function(pot, fallback.append)):
        loss = fn(phi, omega, batch, frame, pot)[0]
        grads = torch.autograd.grad(loss, [*phi.parameters(), omega], allow_unused=True)
        values.append(torch.cat([loss.reshape(1).double(), *(g.flatten().double() for g in grads if g is not None)]))
    if fallback:
        return f"unavailable, so potentials train eagerly (about 2x slower per step): {fallback[0]}"
    err = ((values[0] - values[1]).abs().max() / values[0].abs().max()).item()
    if not err < 1e-3:
        raise AssertionError(f"compiled loss and gradients differ from eager's by {err:.1e} (relative; want < 1e-3)")
    return f"compiled: loss and gradients equal eager's to {err:.1e} (relative)"


CHECKS: dict[str, Callable[[str], str]] = {
    "cbe": check_cbe,
    "laplacian": check_laplacian,
    "flow": check_flow,
    "hdf5": check_hdf5,
    "compile": check_compile,
}


def run_checks(device: str, names: list[str] | None = None) -> list[Check]:
    """Run the named checks (all by default) on device; failures are reported, not raised."""
    out = []
    for name in names or list(CHECKS):
        t0 = time.perf_counter()
        try:
            detail, ok = CHECKS[name](device), True
        except Exception as exc:  # noqa: BLE001 -- a broken install shows up as any exception: report it, go on
            detail, ok = f"{type(exc).__name__}: {exc}", False
        out.append(Check(name, ok, detail, time.perf_counter() - t0))
    return out
