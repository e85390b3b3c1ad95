"""Seeded confidence intervals, one module for the analysis and the quality scores.

* a mean over repeats (energies): Student-t interval (:func:`t_interval`);
* a least-squares slope (energy per step or per denoiser call): Student-t interval (:func:`slope_interval`);
* a ratio of two such means (an energy reduction): :func:`ratio_interval`;
* resampled means (Pareto front energies): :func:`bootstrap_means` + :func:`percentile_interval`;
* CLAP score (a mean of per-clip cosines): percentile bootstrap over clips
  (:func:`percentile_bootstrap_mean`);
* FAD: half-sampling over clips (a subsampling bootstrap, i.e. a delete-d jackknife,
  :func:`half_sampling_interval`): each replicate draws half of the generated clips and half of the reference
  clips *without* replacement and recomputes the distance; the interval is the point estimate plus the
  quantiles of the centred replicates, scaled by sqrt(m / (n - m)) (= 1 for halves) to the full sample size.
  The ordinary bootstrap is unusable for FAD: a resample with replacement repeats clips, and a covariance from
  about 63 % distinct clips in 512 dimensions inflates the distance. With 300 x 512-d synthetic clips
  (benchmarks/results/quality_resampling.json): FAD 0.317, with-replacement replicates 0.514-0.554, their
  "basic" interval 0.080-0.119, true run-to-run range 0.313-0.323, half-sampling interval 0.306-0.326 (its sd
  1.6x the true sd: conservative).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from tta_energy.errors import TtaError

#: Default confidence level of every interval the package reports.
CONFIDENCE = 0.95
#: The most resamples an interval or a front frequency may ask for. The 2.5 % and 97.5 % percentiles settle
#: to a fraction of a percent within a few thousand resamples, so more only costs time and memory: the front
#: frequencies hold every resample of every configuration at once (100 000 on the study's quality subset:
#: about 10 s and 0.8 GB), and a count such as 10^11 would ask for terabytes.
MAX_RESAMPLES = 100_000
#: The resamples an interval or a front frequency takes unless told otherwise (every command's --bootstrap).
DEFAULT_RESAMPLES = 1000


def check_resamples(count: int, option: str = "--bootstrap") -> int:
    """``count`` when it is a number of resamples from 0 (no interval) to :data:`MAX_RESAMPLES`, else a
    :class:`TtaError` naming ``option`` and the allowed range: the one bound of every resampling option."""
    if not 0 <= count <= MAX_RESAMPLES:
        raise TtaError(f"{option} must be from 0 (no resampling) to {MAX_RESAMPLES} resamples, got {count}")
    return count


def t_critical(df: float, confidence: float = CONFIDENCE) -> float:
    """The two-sided Student-t critical value with ``df`` degrees of freedom."""
    from scipy import stats  # here, not at import: importing the package stays fast

    return float(stats.t.ppf(0.5 + confidence / 2, df))


def slope_interval(slope: float, stderr: float, n_points: int,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Student-t interval of a least-squares slope from its standard error ``stderr`` over
    ``n_points`` fitted points (``n_points - 2`` degrees of freedom); NaN with fewer than 3 points or no
    standard error."""
    if n_points < 3 or not np.isfinite(stderr):
        return (np.nan, np.nan)
    half = t_critical(n_points - 2, confidence) * stderr
    return (float(slope - half), float(slope + half))


def t_half_width_of(sd: ArrayLike, n: ArrayLike, confidence: float = CONFIDENCE) -> np.ndarray | float:
    """Half-width of the Student-t interval of a mean from the sample standard deviation ``sd`` of its ``n``
    values (NaN where n < 2); scalars give a float, aligned arrays or Series an array."""
    from scipy import stats

    count = np.asarray(n, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.5 + confidence / 2, np.where(count > 1, count - 1, np.nan))
        half = t * np.asarray(sd, dtype="float64") / np.sqrt(count)
    return float(half) if np.ndim(half) == 0 else half


def t_half_width(values: np.ndarray, confidence: float = CONFIDENCE) -> float:
    """Half-width of the Student-t interval of the mean of ``values`` (NaN when fewer than 2 values)."""
    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return np.nan
    return t_half_width_of(values.std(ddof=1), len(values), confidence)


def t_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Two-sided Student-t interval of the mean of ``values`` (NaN when fewer than 2 values)."""
    values = np.asarray(values, dtype="float64")
    values = values[~np.isnan(values)]
    if len(values) < 2:
        return (np.nan, np.nan)
    mean = float(values.mean())
    half = t_half_width(values, confidence)
    return (mean - half, mean + half)


def ratio_interval(mean_a: float, sd_a: float, n_a: int, mean_b: float, sd_b: float, n_b: int,
                   confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of ``mean_a / mean_b``, two independent means of ``n_a`` and ``n_b`` repeats with standard
    deviations ``sd_a`` and ``sd_b`` (an energy reduction: the default's energy over a lever's, one run): the
    delta method on the log scale, where the squared relative standard errors add, with Welch-Satterthwaite
    degrees of freedom. NaN when either side has fewer than 2 repeats or a value is missing."""
    values = np.array([mean_a, sd_a, mean_b, sd_b], dtype="float64")
    if min(n_a, n_b) < 2 or not np.isfinite(values).all() or mean_a <= 0 or mean_b <= 0:
        return (np.nan, np.nan)
    ratio = mean_a / mean_b
    var_a, var_b = (sd_a / mean_a) ** 2 / n_a, (sd_b / mean_b) ** 2 / n_b
    if var_a + var_b == 0:
        return (ratio, ratio)
    df = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    spread = t_critical(df, confidence) * np.sqrt(var_a + var_b)
    return (float(ratio * np.exp(-spread)), float(ratio * np.exp(spread)))


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


def percentile_bootstrap_mean(
    values: np.ndarray, *, n_resamples: int, seed: int, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (NaN, NaN when it cannot be formed)."""
    values = np.asarray(values, dtype=np.float64)
    if n_resamples <= 0 or len(values) < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 2_000_000 // len(values))  # bounded memory for large sets
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, len(values), size=(stop - start, len(values)))].mean(
            axis=1
        )
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def half_sampling_interval(
    generated: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    statistic: Callable[[np.ndarray, np.ndarray], float],
    estimate: float,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = CONFIDENCE,
    min_half: int = 2,
) -> tuple[float, float]:
    """Half-sampling interval of a two-set statistic of grouped embeddings (one group per clip).

    ``statistic(x, y)`` gets the stacked rows of the chosen generated / reference clips; ``estimate`` is its
    value on all clips. Returns (NaN, NaN) when there are too few clips or no resamples.
    """
    n_gen, n_ref = len(generated), len(reference)
    m_gen, m_ref = n_gen // 2, n_ref // 2
    if n_resamples <= 0 or m_gen < min_half or m_ref < min_half:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_resamples)
    for i in range(n_resamples):
        pick_gen = rng.choice(n_gen, size=m_gen, replace=False)
        pick_ref = rng.choice(n_ref, size=m_ref, replace=False)
        replicates[i] = statistic(
            np.concatenate([generated[j] for j in pick_gen]), np.concatenate([reference[j] for j in pick_ref])
        )
    scale = np.sqrt(0.5 * (m_gen / (n_gen - m_gen) + m_ref / (n_ref - m_ref)))
    centred = (replicates - replicates.mean()) * scale
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(centred, [alpha, 1.0 - alpha])
    return float(estimate + low), float(estimate + high)
