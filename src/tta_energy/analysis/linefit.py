"""The straight line ``y = intercept + slope x`` by ordinary least squares, one fit for the whole analysis.

:func:`.summaries.steps_fit` (through the per-step-count means), :func:`.summaries.per_call_fit` (through
every generation) and :mod:`.estimate` (evaluated at a planned number of denoiser calls) all fit it with
:func:`fit_line`: the same pairs count (both values finite), the same coefficients (scipy's ``linregress``)
and the same Student-t critical value (:func:`tta_energy.intervals.t_critical`) in every interval.

The intervals at a point are the textbook ones of simple regression, with the residual variance
``s² = slope_stderr² x Sxx`` (``Sxx``: the sum of squared deviations of x) and ``n - 2`` degrees of freedom:

* the line's mean at ``x0``: ``t x s x sqrt(1/n + (x0 - mean x)² / Sxx)``;
* one more observation at ``x0``: ``t x s x sqrt(1 + 1/n + (x0 - mean x)² / Sxx)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from tta_energy.intervals import CONFIDENCE, slope_interval, t_critical


class Prediction(NamedTuple):
    """The line at one point: its mean, the confidence interval of that mean and the prediction interval of
    one more observation."""

    mean: float
    mean_ci_low: float
    mean_ci_high: float
    obs_low: float
    obs_high: float


@dataclass(frozen=True)
class LineFit:
    """A least-squares line over ``n_points`` finite (x, y) pairs; every number NaN where the line is
    undefined (fewer than two distinct x), ``slope_stderr`` NaN with fewer than three points."""

    n_points: int
    slope: float
    intercept: float
    r2: float
    slope_stderr: float
    x_mean: float
    x_ss: float  # sum of squared deviations of x from x_mean

    def slope_interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        """The Student-t interval of the slope (:func:`tta_energy.intervals.slope_interval`)."""
        return slope_interval(self.slope, self.slope_stderr, self.n_points, confidence)

    def predict(self, at: float, confidence: float = CONFIDENCE) -> Prediction:
        """The line at ``x = at`` with its confidence and prediction intervals at ``confidence``."""
        mean = self.intercept + self.slope * float(at)
        if self.n_points < 3 or not np.isfinite(self.slope_stderr):
            return Prediction(mean, np.nan, np.nan, np.nan, np.nan)
        t = t_critical(self.n_points - 2, confidence)
        residual_var = self.slope_stderr**2 * self.x_ss
        mean_se = self.slope_stderr * np.sqrt(self.x_ss / self.n_points + (float(at) - self.x_mean) ** 2)
        obs_se = np.sqrt(mean_se**2 + residual_var)
        return Prediction(float(mean), float(mean - t * mean_se), float(mean + t * mean_se),
                          float(mean - t * obs_se), float(mean + t * obs_se))


def fit_line(x: ArrayLike, y: ArrayLike) -> LineFit:
    """Least squares of ``y`` on ``x`` over the pairs where both are finite (NaN or inf rows are left out)."""
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = len(x)
    if len(np.unique(x)) < 2:
        nan = float("nan")
        return LineFit(n, nan, nan, nan, nan, nan, nan)
    fit = stats.linregress(x, y)
    stderr = float(fit.stderr) if n > 2 else np.nan
    x_mean = float(x.mean())
    return LineFit(n, float(fit.slope), float(fit.intercept), float(fit.rvalue**2), stderr, x_mean,
                   float(((x - x_mean) ** 2).sum()))
