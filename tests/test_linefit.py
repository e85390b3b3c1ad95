"""``linefit.fit_line``: the one least-squares line of steps_fit, per_call_fit and estimate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from scipy import stats

from tta_energy.analysis import estimate, summaries
from tta_energy.analysis.linefit import fit_line


def _noisy(seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.repeat([10.0, 25.0, 50.0, 100.0, 150.0, 200.0], 4)
    return x, 40.0 + 5.0 * x + rng.normal(0, 15.0, len(x))


def test_the_line_and_its_intervals_are_those_of_statsmodels_ols():
    x, y = _noisy()
    line = fit_line(x, y)
    ols = sm.OLS(y, sm.add_constant(x)).fit()
    assert line.n_points == len(x)
    assert (line.intercept, line.slope) == pytest.approx(tuple(ols.params), rel=1e-12)
    assert line.slope_stderr == pytest.approx(ols.bse[1], rel=1e-9) and line.r2 == pytest.approx(ols.rsquared)
    for at, confidence in ((80.0, 0.95), (400.0, 0.9)):  # inside the range and far outside it
        frame = ols.get_prediction(np.array([[1.0, at]])).summary_frame(alpha=1 - confidence).iloc[0]
        p = line.predict(at, confidence)
        assert p.mean == pytest.approx(frame["mean"], rel=1e-12)
        mean_ci, obs_ci = (p.mean_ci_low, p.mean_ci_high), (p.obs_low, p.obs_high)
        assert mean_ci == pytest.approx((frame["mean_ci_lower"], frame["mean_ci_upper"]), rel=1e-9)
        assert obs_ci == pytest.approx((frame["obs_ci_lower"], frame["obs_ci_upper"]), rel=1e-9)
    ci = ols.conf_int(alpha=0.05)[1]
    assert line.slope_interval() == pytest.approx(tuple(ci), rel=1e-9)


def test_only_finite_pairs_are_fitted_and_a_line_needs_two_distinct_x():
    x, y = _noisy()
    x_gap, y_gap = x.copy(), y.copy()
    x_gap[0], y_gap[5] = np.nan, np.nan
    line = fit_line(x_gap, y_gap)
    keep = np.ones(len(x), bool)
    keep[[0, 5]] = False
    assert line.n_points == len(x) - 2
    assert line.slope == pytest.approx(stats.linregress(x[keep], y[keep]).slope, rel=1e-12)
    flat = fit_line([10.0, 10.0, 10.0, np.nan], [1.0, 2.0, 3.0, 4.0])
    assert flat.n_points == 3 and math.isnan(flat.slope) and math.isnan(flat.predict(5.0).mean)
    two = fit_line([10.0, 20.0], [1.0, 2.0])  # a line, but no spread to give it an interval
    assert two.slope == pytest.approx(0.1) and math.isnan(two.slope_stderr)
    assert all(math.isnan(v) for v in two.slope_interval())
    assert two.predict(30.0).mean == pytest.approx(3.0) and math.isnan(two.predict(30.0).mean_ci_low)


def test_steps_fit_per_call_fit_and_the_estimate_share_the_line():
    x, y = _noisy()
    runs = pd.DataFrame({"source": "tta-energy", "gpu_name": "NVIDIA H200", "model": "tango",
                         "dtype": "float32", "size": "full", "experiment": "steps", "steps": x.astype(int),
                         "denoiser_calls": x.astype(int), "gpu_energy_J": y, "wall_s": 0.02 * x})
    runs.loc[3, "gpu_energy_J"] = np.nan  # an unmeasured generation is in no fit and no count
    line = fit_line(x, runs["gpu_energy_J"])
    per_call = summaries.per_call_fit(runs).iloc[0]
    assert per_call["n_generations"] == line.n_points == len(x) - 1
    assert per_call["slope_J_per_call"] == line.slope
    interval = (per_call["slope_J_per_call_ci_low"], per_call["slope_J_per_call_ci_high"])
    assert interval == line.slope_interval()
    est = estimate.estimate_energy(runs, "tango", 80).iloc[0]
    assert est["n_generations"] == line.n_points and est["r2"] == line.r2
    p = line.predict(80)
    assert (est["gpu_energy_J_per_clip"], est["gpu_energy_J_per_clip_ci_low"],
            est["single_generation_J_high"]) == (p.mean, p.mean_ci_low, p.obs_high)
    means = runs.groupby([*summaries.PLATFORM_KEYS, "steps", "denoiser_calls"], as_index=False)[
        "gpu_energy_J"].mean().rename(columns={"gpu_energy_J": "gpu_energy_J_mean"})
    by_means = fit_line(means["steps"], means["gpu_energy_J_mean"])
    fit = summaries.steps_fit(means).iloc[0]
    assert fit["slope_J_per_step"] == by_means.slope and fit["n_points"] == by_means.n_points == 6
    assert (fit["slope_J_per_step_ci_low"], fit["slope_J_per_step_ci_high"]) == by_means.slope_interval()
