"""Training steps with the narrow layers padded, against plain linear layers (issue 11), in one process,
alternating.

A MADE's first layer has 6 inputs, the affine flow's output layer 12 outputs, the potential's first
layer 3 inputs; the CPU's float32 matrix product is slow for a product with that few columns (the first
layers' weight gradients, 128 x 6 and 128 x 3, a flow's input gradient, N x 6, the potential's reverse
pass's last product, N x 3), so ``models.layers.linear`` pads a narrow side with zeros to ``PAD_TO`` =
16. Here the narrow products alone (as autograd takes them, padded, and transposed: microseconds per
product), and, with that layer and with ``torch.nn.functional.linear`` in its place, ``--rounds`` rounds
of each: ``dpot_hpc.bench.bench_df`` (full optimisation steps of a flow of the default size, batch 2048)
for the default flow (2 tanh steps) and the affine flow (the defaults of commit 9773299), and full
steps of the default potential's loss (3x128, batch 2048, the Laplacian at 256 penalty points, on
synthetic cache points), compiled as long trainings run it (compilation not timed) and eager; on
``--threads`` threads.

    python benchmarks/narrow_products.py [--rounds 3] [--threads 1]

Writes benchmarks/results/narrow_products.json and prints Markdown tables.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from potential_paths import ms_per_step, synthetic_cache
from runs import commit, machine, write_json

from dpot_hpc import bench
from dpot_hpc.config import DFSection, load_config
from dpot_hpc.models import flows, potential
from dpot_hpc.models import potential_training as pt
from dpot_hpc.models.layers import PAD_TO

HERE = Path(__file__).resolve().parent
#: The padded layer (``models.layers.linear``), put back after each comparison with the plain one.
_PADDED = flows.linear


def samples_per_s(components: int, padded: bool) -> float:
    """Median samples/s of 5 blocks of 30 steps (``bench.bench_df``)."""
    flows.linear = _PADDED if padded else torch.nn.functional.linear
    bench.DFSection = lambda **kw: DFSection(components=components, **kw)
    try:
        return bench.bench_df("cpu", 2048, 30, blocks=5)["samples_per_s"]
    finally:
        flows.linear = _PADDED
        bench.DFSection = DFSection


def product_us(f, repeats: int = 200) -> float:
    """Microseconds per call of f(), the fastest of 5 blocks of ``repeats`` calls."""
    for _ in range(10):
        f()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            f()
        best = min(best, (time.perf_counter() - t0) / repeats * 1e6)
    return best


def products() -> list[dict]:
    """The narrow products of a training step (batch 2048, width 128) as autograd takes them, with the
    narrow side padded to PAD_TO columns, and transposed; microseconds each."""
    gen = torch.Generator().manual_seed(0)
    g, h = torch.randn(2048, 128, generator=gen), torch.randn(2048, 128, generator=gen)
    rows = []
    for name, cols in (("flow first layer", 6), ("potential first layer", 3)):
        x, w = torch.randn(2048, cols, generator=gen), torch.randn(128, cols, generator=gen)
        xp, wp = (torch.nn.functional.pad(t, (0, PAD_TO - cols)) for t in (x, w))
        rows.append({"product": f"{name}: weight gradient, (128 x 2048)(2048 x {cols})",
                     "plain_us": product_us(lambda: g.t() @ x), "padded_us": product_us(lambda: g.t() @ xp),
                     "transposed_us": product_us(lambda: x.t() @ g)})
        rows.append({"product": f"{name}: input gradient, (2048 x 128)(128 x {cols})",
                     "plain_us": product_us(lambda: g @ w), "padded_us": product_us(lambda: g @ wp),
                     "transposed_us": product_us(lambda: w.t() @ g.t())})
    w12 = torch.randn(12, 128, generator=gen)
    rows.append({"product": "affine flow output layer: forward, (2048 x 128)(128 x 12)",
                 "plain_us": product_us(lambda: h @ w12.t()),
                 "padded_us": product_us(lambda: h @ torch.nn.functional.pad(w12, (0, 0, 0, PAD_TO - 12)).t()),
                 "transposed_us": product_us(lambda: w12 @ h.t())})
    return rows


def potential_ms_per_step(padded: bool, compiled: bool, steps: int = 300) -> float:
    """Milliseconds per Adam step of the default potential's loss (``potential_paths.ms_per_step``)."""
    potential.linear = _PADDED if padded else torch.nn.functional.linear
    torch._dynamo.reset()
    try:
        pot = load_config(None).potential
        fallback: list[str] = []
        fn = pt.loss_function(pot, fallback.append) if compiled else pt.loss_terms
        ms = ms_per_step(fn, pot, synthetic_cache(), steps)
        if fallback:
            raise SystemExit(f"the potential's loss did not compile: {fallback}")
        return ms
    finally:
        potential.linear = _PADDED


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for components, name in ((2, "default flow (2 tanh steps)"), (0, "affine flow (9773299)")):
        rates = {True: [], False: []}
        for _ in range(args.rounds):
            for padded in (False, True):
                rates[padded].append(samples_per_s(components, padded))
        ratios = [n / p for n, p in zip(rates[True], rates[False])]
        rows.append({"flow": name, "components": components, "plain_samples_per_s": rates[False],
                     "padded_samples_per_s": rates[True], "ratios": ratios,
                     "median_ratio": statistics.median(ratios)})
    prods = products()
    pot_rows = []
    for compiled in (True, False):
        ms = {True: [], False: []}
        for _ in range(args.rounds):
            for padded in (False, True):
                ms[padded].append(potential_ms_per_step(padded, compiled))
        ratios = [p / q for p, q in zip(ms[False], ms[True])]
        pot_rows.append({"step": f"default potential, {'compiled' if compiled else 'eager'}",
                         "plain_ms_per_step": ms[False], "padded_ms_per_step": ms[True], "speed_ratios": ratios,
                         "median_ratio": statistics.median(ratios)})
    write_json(HERE / "results" / "narrow_products.json",
               {"commit": commit(), "machine": machine(), "threads": args.threads, "rounds": args.rounds,
                "batch": 2048, "products_us": prods, "rows": rows, "potential": pot_rows})
    print("| product | as autograd takes it (us) | narrow side padded to 16 (us) | transposed (us) |\n|---|---|---|---|")
    for r in prods:
        print(f"| {r['product']} | {r['plain_us']:.0f} | {r['padded_us']:.0f} | {r['transposed_us']:.0f} |")
    print()
    print("| flow | plain linear (samples/s) | narrow sides padded (samples/s) | ratio (median of rounds) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['flow']} | {statistics.median(r['plain_samples_per_s']):,.0f} | "
              f"{statistics.median(r['padded_samples_per_s']):,.0f} | {r['median_ratio']:.2f} "
              f"({min(r['ratios']):.2f}-{max(r['ratios']):.2f}) |")
    print("\n| potential step | plain linear (ms/step) | narrow side padded (ms/step) | speed ratio (median of rounds) |")
    print("|---|---|---|---|")
    for r in pot_rows:
        print(f"| {r['step']} | {statistics.median(r['plain_ms_per_step']):.1f} | "
              f"{statistics.median(r['padded_ms_per_step']):.1f} | {r['median_ratio']:.2f} "
              f"({min(r['speed_ratios']):.2f}-{max(r['speed_ratios']):.2f}) |")


if __name__ == "__main__":
    main()
