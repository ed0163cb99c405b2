"""Linear layers as the CPU computes them fastest: a narrow side padded with zeros."""

from __future__ import annotations

import torch
from torch import nn

#: A layer's narrow side (inputs or outputs) is padded with zeros to this many on the CPU (``linear``).
PAD_TO = 16


def linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """x W^T + b (``torch.nn.functional.linear``); on the CPU a side of fewer than PAD_TO inputs or outputs
    padded with zeros to PAD_TO (the same sums; the padded outputs dropped). The CPU's float32 matrix
    product takes about 3-4 times longer for a product with 3 or 6 columns than with 16 (1.4 times with
    12): a flow's first layer (6 inputs: the gradients of its weights and of its input), the affine
    flow's output layer (12 outputs), the potential's first layer (3 inputs: its weight gradients, and
    the reverse pass's last product; docs/benchmarks.md, 'Narrow layers'); the sums stay split the same
    way on any number of threads (tested)."""
    n_out, n_in = w.shape
    if x.device.type != "cpu" or min(n_out, n_in) >= PAD_TO:
        return nn.functional.linear(x, w, b)
    if n_in < PAD_TO:
        x, w = nn.functional.pad(x, (0, PAD_TO - n_in)), nn.functional.pad(w, (0, PAD_TO - n_in))
    if n_out < PAD_TO:
        w = nn.functional.pad(w, (0, 0, 0, PAD_TO - n_out))
        b = None if b is None else nn.functional.pad(b, (0, PAD_TO - n_out))
        return nn.functional.linear(x, w, b)[..., :n_out]
    return nn.functional.linear(x, w, b)
