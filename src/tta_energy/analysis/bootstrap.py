"""Confidence intervals: Student-t intervals of a mean and percentile-bootstrap resampling helpers."""

from __future__ import annotations

import numpy as np
from scipy import stats

#: Default confidence level of every interval the analysis reports.
CONFIDENCE = 0.95


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``values`` (NaN when fewer than 2 values)."""
    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]
    n = len(values)
    if n < 2:
        return (np.nan, np.nan)
    mean = float(values.mean())
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * values.std(ddof=1) / np.sqrt(n))
    return (mean - half, mean + half)


def bootstrap_means(values: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples (with replacement, same size) of ``values``."""
    values = np.asarray(values, dtype="float64")
    if len(values) == 0:
        return np.full(n_boot, np.nan)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    return values[idx].mean(axis=1)


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples``."""
    samples = np.asarray(samples, dtype="float64")
    samples = samples[~np.isnan(samples)]
    if len(samples) == 0:
        return (np.nan, np.nan)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(samples, [alpha, 1 - alpha])
    return (float(low), float(high))
