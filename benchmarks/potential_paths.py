"""Speed of one potential-training step by each derivative path, in one process (issue 11).

The default network (3x128 SiLU), batch 2048, the Laplacian at 256 penalty points, the grad_v
weighting, one CPU thread, on synthetic cache points; Adam steps of the full loss:
  - nested autograd: grad Phi by one backward with create_graph, the Laplacian by three more at the
    penalty points (the training path before commit 47869cf), eager;
  - the explicit reverse pass (``models.potential.gradient``) plus the one-pass Laplacian at the
    penalty points, eager (where no C++ compiler is available, e.g. in the container);
  - the same compiled with torch.compile (the default for long trainings; compilation not timed,
    its cost is in the end-to-end run: default_run_speed.py).

    python benchmarks/potential_paths.py [--steps 400]

Writes benchmarks/results/potential_paths.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import torch

from runs import commit, write_json

from dpot_hpc.config import load_config
from dpot_hpc.models import potential_training as pt
from dpot_hpc.physics.cbe import helio_frame_vectors, residual_in_frame
from dpot_hpc.physics.derivatives import gradient_and_laplacian
from dpot_hpc.physics.frames import SunFrame

HERE = Path(__file__).resolve().parent


def nested_loss(phi, omega, batch, frame, pot):
    """The loss with the derivatives of the earlier training path (nested autograd)."""
    x, n_pen = batch["x"], pot.penalty_points
    _, grad_pen, lap = gradient_and_laplacian(phi, x[:n_pen], create_graph=True)
    x_rest = x[n_pen:].detach().requires_grad_(True)
    (grad_rest,) = torch.autograd.grad(phi(x_rest).sum(), x_rest, create_graph=True)
    grad = torch.cat([grad_pen, grad_rest])
    r = residual_in_frame(x, batch["v"], batch["grad_x"], batch["grad_v"], -grad, omega.to(x), frame) * batch["weight"]
    term_r = torch.asinh(pot.alpha * r.abs()) / pot.alpha
    term_p = torch.asinh(pot.beta * torch.relu(-lap)) / pot.beta
    return torch.log(term_r.mean() + pot.lam * term_p.mean() * n_pen / x.shape[0]), r.detach().abs(), lap.detach()


def synthetic_cache(n: int = 100_000) -> dict[str, torch.Tensor]:
    """Cache-like points (positions kpc, velocities km/s, DF gradients, the residual weights), seeded."""
    gen = torch.Generator().manual_seed(0)
    data = {"x": 0.4 * torch.randn(n, 3, generator=gen), "v": 30 * torch.randn(n, 3, generator=gen),
            "grad_x": torch.randn(n, 3, generator=gen), "grad_v": 0.03 * torch.randn(n, 3, generator=gen)}
    data["weight"] = pt.residual_weights(data["grad_v"])
    return data


def ms_per_step(fn, pot, data: dict[str, torch.Tensor], steps: int, warm: int = 50) -> float:
    """Milliseconds per Adam step of the default potential with the loss ``fn`` on batches of ``data``
    (the first ``warm`` steps, which compile, not timed)."""
    frame = helio_frame_vectors(SunFrame(), torch.float32, "cpu")
    phi = pt.build_potential(pot, 1, 1.0)
    omega = torch.nn.Parameter(torch.tensor(20.0, dtype=torch.float64))
    opt = torch.optim.Adam([*phi.parameters(), omega], lr=1e-3)
    rng = torch.Generator().manual_seed(1)
    n = data["x"].shape[0]
    for s in range(warm + steps):
        if s == warm:
            t0 = time.perf_counter()
        idx = torch.randint(0, n, (pot.batch_size,), generator=rng)
        loss, _, _ = fn(phi, omega, {k: v[idx] for k, v in data.items()}, frame, pot)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - t0) / steps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=400)
    args = ap.parse_args()
    torch.set_num_threads(1)
    pot = load_config(None).potential
    data = synthetic_cache()
    fallback: list[str] = []
    paths = {"nested autograd (before)": nested_loss, "reverse pass, eager": pt.loss_terms,
             "reverse pass, compiled": pt.loss_function(pot, fallback.append)}
    ms = {name: ms_per_step(fn, pot, data, args.steps) for name, fn in paths.items()}
    base = ms["nested autograd (before)"]
    result = {"commit": commit(), "ms_per_step": ms, "speedup_vs_nested": {k: base / v for k, v in ms.items()},
              "compiled": not fallback, "batch": pot.batch_size, "penalty_points": pot.penalty_points,
              "hidden": list(pot.hidden), "threads": 1, "steps_timed": args.steps,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()}, "date": time.strftime("%Y-%m-%d")}
    write_json(HERE / "results" / "potential_paths.json", result)
    print("| derivative path | ms per step | vs nested autograd |\n|---|---|---|")
    for k, v in ms.items():
        print(f"| {k} | {v:.1f} | {base / v:.2f}x |")


if __name__ == "__main__":
    main()
