"""`dpot-hpc bench`: throughput of every stage on this device, against the reference implementation.

Each stage runs in a fresh process (so its peak memory is its own) on synthetic inputs of the
default sizes and of the reference implementation's sizes:
  - DF training: samples/s of full optimisation steps of the default flow (batch 2048 and 8192; the
    median of 5 blocks of steps, with the slowest and fastest block's), and at
    batch 2048 with bfloat16 matrix products where the device has them natively (``df.bfloat16_fraction``
    uses them on such CPUs; on a GPU the figure says whether it should there too), both also on one
    thread (a rank of a CPU run with one rank per core);
  - gradient cache: points/s for ln f and its 6 gradients of one default flow;
  - potential training: points/s of a full step (CBE residual, Laplacian, penalty, backward) for the
    default network (Laplacian at ``penalty_points``) and for the reference's 4x512 network at
    batch 32768 with the Laplacian at every point, and that step's achieved FLOP rate as a fraction
    of this device's fp32 matmul ceiling measured in the same run (the fastest of 10 matmuls).
FLOPs of a potential step are counted analytically: a Linear layer (in -> out) on R rows costs
2 R in out FLOPs forward and twice that backward, so a step costs 6 R sum(in out); elementwise work
is not counted. With the Laplacian at L >= N/2 of the N points (the one-pass propagation) the rows
are the value and the 3 gradient components at every point plus the Laplacian at L points,
R = 4 N + L; with fewer (the reverse pass for the gradient, the one-pass propagation at the L
points) R = 2 N + 5 L. The reference implementation
(TensorFlow 2.14, FFJORD, 4x512 tanh potential) was measured on the project's 2-core machine:
``REFERENCE``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import subprocess
import time
from pathlib import Path

import torch

from ._version import __version__
from .config import Config, DFSection, PotentialSection
from .data.mockfile import mock_galaxy
from .data.runfolder import RunFolder
from .models.device import native_bfloat16
from .models.df_training import build_flow, mean_nll
from .models.flows import log_prob_and_gradients
from .models.potential_training import build_potential, loss_function
from .physics.cbe import helio_frame_vectors
from .physics.mock import log_df_gradients, sample

#: The reference implementation on the project's 2-core machine (issue 11): samples/s, points/s.
REFERENCE = {"df_train_samples_per_s": 600.0, "cache_points_per_s": 390.0,
             "potential_4x512_every_point_points_per_s": 1850.0}


def source_commit() -> str | None:
    """The git commit of the code being measured (short hash, '+dirty' with uncommitted changes), or
    None when the package does not run from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else the platform's word for it: the same kind
    of machine comes with different CPUs, whose figures differ (docs/benchmarks.md)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int, warmup: int = 1) -> float:
    """Seconds per call of fn after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / repeats


def _timed_blocks(fn, device: str, blocks: int, per_block: int, warmup: int = 2) -> list[float]:
    """Seconds per call of fn in each of ``blocks`` consecutive blocks of ``per_block`` calls, after
    ``warmup`` calls: their median is robust to a burst of other work on a shared machine, and their
    spread says how steady the figure is."""
    for _ in range(warmup):
        fn()
    return [_timed(fn, device, per_block, warmup=0) for _ in range(blocks)]


def matmul_gflops(device: str, n: int = 2048) -> float:
    """This device's fp32 matrix-multiplication ceiling (GFLOP/s): n x n times n x n, 2 n^3 FLOPs, at the
    fastest of several timed calls (a ceiling: a call slowed by other work on the machine does not lower it)."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    dt = min(_timed(lambda: a @ b, device, repeats=1 if device == "cpu" else 10, warmup=2 if i == 0 else 0)
             for i in range(10))
    return 2 * n**3 / dt / 1e9


def _stars(n: int) -> torch.Tensor:
    mock = mock_galaxy(Config())
    s = sample(mock, n, seed=1)
    return torch.cat([s.x_h, s.v_h], -1)


def bench_df(device: str, batch: int, steps: int, bfloat16: bool = False, blocks: int = 5) -> dict:
    """Samples/s of full optimisation steps (forward, backward, clip, AdamW) of the default flow, its
    training loss with bfloat16 matrix products when ``bfloat16``: the median over ``blocks`` blocks of
    ``steps`` steps, with the slowest and fastest block's figures (``samples_per_s_range``)."""
    df = DFSection(batch_size=batch)
    stars = _stars(50_000)
    flow = build_flow(df, 1, 1.0)
    u = flow.to_unbounded(stars)[0]
    flow.set_standardisation(u.mean(0), u.std(0), stars.shape[0])
    flow.to(device)
    z = flow.standardise(stars.to(device))
    opt = torch.optim.AdamW(flow.parameters(), lr=df.learning_rate)
    gen = torch.Generator().manual_seed(0)

    def step():
        idx = torch.randint(0, z.shape[0], (batch,), generator=gen).to(device)
        loss = mean_nll(flow, z[idx], bfloat16)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), df.clip_grad_norm)
        opt.step()

    rates = sorted(batch / dt for dt in _timed_blocks(step, device, blocks, steps))
    return {"samples_per_s": rates[len(rates) // 2], "samples_per_s_range": [rates[0], rates[-1]],
            "blocks": blocks, "steps_per_block": steps, "batch": batch, "bfloat16": bfloat16}


def bench_cache(device: str, n_points: int) -> dict:
    """Points/s of ln f and its 6 gradients for one default flow (the gradient cache's work)."""
    flow = build_flow(DFSection(), 1, 1.0)
    stars = _stars(n_points)
    u = flow.to_unbounded(stars)[0]
    flow.set_standardisation(u.mean(0), u.std(0), stars.shape[0])
    flow.to(device).eval()
    w = stars.to(device)
    return {"points_per_s": n_points / _timed(lambda: log_prob_and_gradients(flow, w), device, repeats=2)}


def potential_step_flops(hidden: list[int], n: int, n_laplacian: int) -> float:
    """FLOPs of one training step by the count of the module docstring (the path training takes)."""
    widths = [3, *hidden, 1]
    rows = 4 * n + n_laplacian if 2 * n_laplacian >= n else 2 * n + 5 * n_laplacian
    return 6.0 * rows * sum(a * b for a, b in zip(widths[:-1], widths[1:]))


def bench_potential(device: str, hidden: list[int], batch: int, penalty_points: int, steps: int) -> dict:
    """Points/s of full potential-training steps on cache points with the mock's exact gradients."""
    cfg = Config()
    pot = PotentialSection(hidden=hidden, batch_size=batch, penalty_points=penalty_points)
    mock = mock_galaxy(cfg)
    s = sample(mock, batch, seed=2)
    _, gx, gv = log_df_gradients(mock, s.log_c, s.x_h, s.v_h)
    data = {k: t.to(device=device, dtype=torch.float32) for k, t in
            (("x", s.x_h), ("v", s.v_h), ("grad_x", gx), ("grad_v", gv))}
    phi = build_potential(pot, 1, 1.0).to(device)
    omega = torch.nn.Parameter(torch.tensor(20.0, dtype=torch.float64, device=device))
    opt = torch.optim.Adam([*phi.parameters(), omega], lr=1e-3)
    frame = helio_frame_vectors(cfg.frame.sun(), torch.float32, device)
    fallback: list[str] = []  # loss_function's message when compilation fails
    loss_fn = loss_function(pot, fallback.append)

    def step():
        loss, _, _ = loss_fn(phi, omega, data, frame, pot)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    dt = _timed(step, device, steps, warmup=2)  # the first calls compile
    flops = potential_step_flops(hidden, batch, min(penalty_points, batch))
    return {"points_per_s": batch / dt, "seconds_per_step": dt, "gflops_per_step": flops / 1e9,
            "achieved_gflops": flops / dt / 1e9, "hidden": hidden, "batch": batch,
            "laplacian_points": min(penalty_points, batch), "compiled": not fallback}


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _stage(args: tuple) -> dict:
    """One stage in a fresh process: (name, device, threads, kwargs) -> its result and peak memory."""
    name, device, threads, kwargs = args
    torch.set_num_threads(threads)
    fn = {"df": bench_df, "cache": bench_cache, "potential": bench_potential, "matmul": matmul_gflops}[name]
    torch.manual_seed(0)
    out = fn(device, **kwargs)
    out = out if isinstance(out, dict) else {"gflops": out}
    out["peak_memory_mb"] = _peak_memory_mb(device)
    return out


def run_bench(device: str, threads: int, quick: bool = False, log=print) -> dict:
    """Every stage (module docstring) in its own process; the result as one dict."""
    s = 1 if quick else 3
    stages = {
        "matmul": ("matmul", {}),
        "df_batch2048": ("df", {"batch": 2048, "steps": 10 * s}),
        "df_batch8192": ("df", {"batch": 8192, "steps": 4 * s}),
        **({"df_batch2048_bfloat16": ("df", {"batch": 2048, "steps": 10 * s, "bfloat16": True}),
            # one thread, as each rank of a CPU run with a rank per core trains its flows
            "df_batch2048_1thread": ("df", {"batch": 2048, "steps": 10 * s}, 1),
            "df_batch2048_bfloat16_1thread": ("df", {"batch": 2048, "steps": 10 * s, "bfloat16": True}, 1)}
           if native_bfloat16(device) else {}),
        "cache": ("cache", {"n_points": 20_000}),
        "potential_default": ("potential", {"hidden": list(PotentialSection().hidden), "batch": 2048,
                                            "penalty_points": PotentialSection().penalty_points, "steps": 10 * s}),
        "potential_4x512_every_point": ("potential", {"hidden": [512] * 4, "batch": 32768 if not quick else 4096,
                                                      "penalty_points": 32768, "steps": s}),
    }
    ctx = multiprocessing.get_context("spawn")
    results = {}
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        for key, (name, kwargs, *own_threads) in stages.items():
            t0 = time.perf_counter()
            results[key] = pool.apply(_stage, ((name, device, own_threads[0] if own_threads else threads, kwargs),))
            log(f"bench: {key} in {time.perf_counter() - t0:.0f} s: "
                + ", ".join(f"{k} {v:.4g}" for k, v in results[key].items() if isinstance(v, float)))
    peak = results["matmul"]["gflops"]
    every = results["potential_4x512_every_point"]
    headline = {"df_train_samples_per_s": results["df_batch2048"]["samples_per_s"],
                "cache_points_per_s": results["cache"]["points_per_s"],
                "potential_4x512_every_point_points_per_s": every["points_per_s"]}
    out = {
        **headline,
        "df_train_samples_per_s_bfloat16": results.get("df_batch2048_bfloat16", {}).get("samples_per_s"),
        "df_bfloat16_speedup": {f"threads_{t}": results[f"df_batch2048_bfloat16{sfx}"]["samples_per_s"]
                                / results[f"df_batch2048{sfx}"]["samples_per_s"]
                                for t, sfx in ((threads, ""), (1, "_1thread")) if f"df_batch2048_bfloat16{sfx}" in results},
        "potential_default_points_per_s": results["potential_default"]["points_per_s"],
        "potential_flop_fraction": every["achieved_gflops"] / peak,
        "matmul_fp32_gflops": peak,
        "vs_reference": {k: headline[k] / v for k, v in REFERENCE.items()},
        "reference": REFERENCE,
        "stages": results,
        "machine": {"platform": platform.platform(), "processor": cpu_model(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                    "threads": threads, "device": device,
                    "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu"},
        "dpot_hpc": __version__, "commit": source_commit(), "quick": quick, "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    return out


def e2e_split(run_dir: Path) -> dict:
    """Wall seconds per stage of a finished run, from its summary.json."""
    return json.loads(RunFolder(Path(run_dir)).summary_json.read_text()).get("timing_s", {})


def table(res: dict) -> str:
    """A markdown table of a bench result."""
    ref = res["reference"]
    rows = [("DF training (default flow, batch 2048)", "samples/s", res["df_train_samples_per_s"], ref["df_train_samples_per_s"]),
            *([("DF training, bfloat16 products (`df.bfloat16_fraction`, batch 2048)", "samples/s",
                res["df_train_samples_per_s_bfloat16"], ref["df_train_samples_per_s"])]
              if res.get("df_train_samples_per_s_bfloat16") else []),
            ("gradient cache (ln f + 6 gradients)", "points/s", res["cache_points_per_s"], ref["cache_points_per_s"]),
            ("potential step, default (3x128, batch 2048)", "points/s", res["potential_default_points_per_s"], None),
            ("potential step, 4x512, batch 32768, Laplacian at every point", "points/s",
             res["potential_4x512_every_point_points_per_s"], ref["potential_4x512_every_point_points_per_s"])]
    lines = ["| stage | unit | dpot-hpc | reference | ratio |", "|---|---|---|---|---|"]
    for name, unit, v, r in rows:
        lines.append(f"| {name} | {unit} | {v:,.0f} | {'' if r is None else f'{r:,.0f}'} | "
                     f"{'' if r is None else f'{v / r:.1f}x'} |")
    m = res["machine"]
    lines.append(f"\nFLOP rate of the 4x512 step: {res['potential_flop_fraction']:.0%} of this device's fp32 matmul "
                 f"ceiling ({res['matmul_fp32_gflops']:.0f} GFLOP/s, the fastest of 10 matmuls in the same run). "
                 f"{m['device_name'] if m['device'] != 'cpu' else m['processor']}, {m['threads']} thread(s), "
                 f"torch {m['torch']}.")
    spread = res["stages"]["df_batch2048"].get("samples_per_s_range")
    if spread:
        st = res["stages"]["df_batch2048"]
        lines.append(f"DF training: the median of {st['blocks']} blocks of {st['steps_per_block']} steps; the blocks "
                     f"ranged {spread[0]:,.0f}-{spread[1]:,.0f} samples/s.")
    if res.get("df_bfloat16_speedup"):
        lines.append("DF training with bfloat16 products against float32, samples/s ratio: " + ", ".join(
            f"{v:.2f} on {k.split('_')[1]} thread(s)" for k, v in res["df_bfloat16_speedup"].items()) + ".")
    peaks = ", ".join(f"{k} {v['peak_memory_mb']:.0f} MB" for k, v in res["stages"].items())
    lines.append(f"Peak memory per stage: {peaks}.")
    if res.get("e2e_split_s"):
        lines.append("Default run by stage (s): " + ", ".join(f"{k} {v:.0f}" for k, v in res["e2e_split_s"].items()
                                                              if isinstance(v, (int, float))))
    return "\n".join(lines)
