"""Binned statistics of the report's maps (pure functions over arrays).

Arrays are indexed [i_a, j_b] as ``numpy.histogram2d`` returns them (first coordinate first).
"""

from __future__ import annotations

import numpy as np


def counts(a: np.ndarray, b: np.ndarray, edges_a: np.ndarray, edges_b: np.ndarray) -> np.ndarray:
    """Number of points (a, b) per bin (points outside the edges are not counted)."""
    return np.histogram2d(a, b, bins=(edges_a, edges_b))[0]


def poisson_significance(n_data: np.ndarray, n_model: np.ndarray, scale: float) -> np.ndarray:
    """(n_flow - n_data) / sqrt(n_data + scale n_flow), with n_flow = scale * n_model.

    n_model: raw counts of the model's samples; scale = (data points) / (model samples), which
    renormalises them to the data's count. The denominator is the Poisson variance of n_data plus
    that of the renormalised model counts (scale * n_flow); for many more model samples than data
    (scale -> 0) this is the paper's (n_flow - n_data) / sqrt(n_data). NaN where both counts are 0.
    """
    n_flow = scale * n_model
    var = n_data + scale * n_flow
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(var > 0, (n_flow - n_data) / np.sqrt(var), np.nan)


def binned_mean_significance(a: np.ndarray, b: np.ndarray, values: np.ndarray, edges_a: np.ndarray,
                             edges_b: np.ndarray, min_count: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean of values, mean / standard error, count) per bin; NaN where fewer than min_count points.

    The standard error is the sample standard deviation (ddof 1) over sqrt(count): the significance
    is how many standard errors the bin's mean lies from zero, for independent points.
    """
    n = counts(a, b, edges_a, edges_b)
    s1 = np.histogram2d(a, b, bins=(edges_a, edges_b), weights=values)[0]
    s2 = np.histogram2d(a, b, bins=(edges_a, edges_b), weights=values**2)[0]
    ok = n >= max(min_count, 2)
    mean = np.full(n.shape, np.nan)
    sig = np.full(n.shape, np.nan)
    mean[ok] = s1[ok] / n[ok]
    var = np.maximum(s2[ok] - n[ok] * mean[ok] ** 2, 0.0) / (n[ok] - 1)
    se = np.sqrt(var / n[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        sig[ok] = np.where(se > 0, mean[ok] / se, np.nan)
    return mean, sig, n
