"""DF training steps with the flows' narrow layers padded, against plain linear layers (issue 11), in one
process, alternating.

A MADE's first layer has 6 inputs and the affine flow's output layer 12 outputs; the CPU's float32
matrix product is slow for a product with that few columns (the first layer's weight gradient, 128 x 6,
and input gradient, N x 6), so ``models.flows.masked_linear`` pads a narrow side with zeros to
``PAD_TO`` = 16. Here ``dpot_hpc.bench.bench_df`` (full optimisation steps of a flow of the default
size, batch 2048) with that layer and with ``torch.nn.functional.linear`` in its place, for the default
flow (2 tanh steps) and the affine flow (the defaults of commit 9773299), ``--rounds`` rounds of each,
on ``--threads`` threads.

    python benchmarks/narrow_products.py [--rounds 3] [--threads 1]

Writes benchmarks/results/narrow_products.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from runs import commit, machine, write_json

from dpot_hpc import bench
from dpot_hpc.config import DFSection
from dpot_hpc.models import flows

HERE = Path(__file__).resolve().parent


def samples_per_s(components: int, padded: bool) -> float:
    """Median samples/s of 5 blocks of 30 steps (``bench.bench_df``)."""
    flows.masked_linear = _PADDED if padded else torch.nn.functional.linear
    bench.DFSection = lambda **kw: DFSection(components=components, **kw)
    try:
        return bench.bench_df("cpu", 2048, 30, blocks=5)["samples_per_s"]
    finally:
        flows.masked_linear = _PADDED
        bench.DFSection = DFSection


_PADDED = flows.masked_linear


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
    write_json(HERE / "results" / "narrow_products.json",
               {"commit": commit(), "machine": machine(), "threads": args.threads, "rounds": args.rounds,
                "batch": 2048, "rows": rows})
    print("| flow | plain linear (samples/s) | narrow sides padded (samples/s) | ratio (median of rounds) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['flow']} | {statistics.median(r['plain_samples_per_s']):,.0f} | "
              f"{statistics.median(r['padded_samples_per_s']):,.0f} | {r['median_ratio']:.2f} "
              f"({min(r['ratios']):.2f}-{max(r['ratios']):.2f}) |")


if __name__ == "__main__":
    main()
