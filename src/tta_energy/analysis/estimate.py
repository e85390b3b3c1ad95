"""What N clips of a model at S denoising steps will cost on a measured GPU, with its uncertainty.

The answer comes from the steps sweep (10-s clips, batch 1, classifier-free guidance, the model's measured
dtype, run eagerly: the settings of arXiv 2505.07615): per platform (:data:`.summaries.PLATFORM_KEYS`), the
ordinary least-squares line of every run's GPU energy against the denoiser calls it made, the line
:func:`.summaries.per_call_fit` fits (:func:`.linefit.fit_line`), is evaluated at the calls the model's
sampler makes for the asked step count (:meth:`.catalogue.ModelDefaults.denoiser_iterations`:
Make-An-Audio's 150 steps are 167 calls).
Two intervals answer two questions: the confidence interval of the line's mean (what N clips cost on
average; the total's interval is it times N) and the prediction interval of one more generation (where a
single clip's energy falls, repeat-to-repeat spread included). Energy is never negative: a lower end below
zero (far outside the measured range) is reported as 0.

The line's interval counts every run as independent. Runs of one process share its host state, so the mean
of a step count that was measured can sit outside it (``measured_outside_line`` flags that case): the line
averages over the step counts, and the process level widens what is really known
(``figures/tables/cell_intervals_h200.csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tta_energy.analysis.linefit import fit_line
from tta_energy.analysis.summaries import PLATFORM_KEYS, AnalysisError
from tta_energy.intervals import CONFIDENCE
from tta_energy.models import catalogue, spacing
from tta_energy.schema import J_PER_KWH

#: The experiment whose rows the estimate fits.
EXPERIMENT = "steps"
#: Seconds in an hour (GPU hours of the whole job).
S_PER_H = 3600.0

#: The columns of :func:`estimate_energy`, in order.
ESTIMATE_COLUMNS: tuple[str, ...] = (
    *PLATFORM_KEYS,
    "steps",
    "denoiser_calls",
    "n_generations",
    "measured_steps",
    "measured_calls_min",
    "measured_calls_max",
    "inside_measured_range",
    "r2",
    "confidence",
    "gpu_energy_J_per_clip",
    "gpu_energy_J_per_clip_ci_low",
    "gpu_energy_J_per_clip_ci_high",
    "single_generation_J_low",
    "single_generation_J_high",
    "clips",
    "energy_kWh_total",
    "energy_kWh_total_ci_low",
    "energy_kWh_total_ci_high",
    "gpu_s_per_clip",
    "gpu_h_total",
    "measured_mean_J",
    "measured_n",
    "measured_outside_line",
)


def planned_calls(model: str, steps: int, clips: int = 1, confidence: float = CONFIDENCE) -> int:
    """The denoiser calls ``model``'s sampler makes for ``steps`` steps, once the request is checked.

    Raises :class:`.summaries.AnalysisError` (one line) for a step count the sampler cannot run, ``clips`` < 1
    or a confidence outside (0, 1); :class:`tta_energy.models.catalogue.UnknownModelError` for a model outside
    the catalogue. The command line calls it before reading any table.
    """
    defaults = catalogue.entry(model).defaults
    problem = spacing.steps_problem(defaults.step_spacing, steps, defaults.train_timesteps)
    if problem is not None:
        raise AnalysisError(f"{model}: {problem}")
    if clips < 1:
        raise AnalysisError(f"clips must be >= 1, got {clips}")
    if not 0 < confidence < 1:
        raise AnalysisError(f"confidence must lie between 0 and 1, got {confidence}")
    return defaults.denoiser_iterations(steps)


def estimate_energy(runs: pd.DataFrame, model: str, steps: int, clips: int = 1,
                    confidence: float = CONFIDENCE) -> pd.DataFrame:
    """GPU energy of ``clips`` clips of ``model`` at ``steps`` denoising steps, per platform that measured
    the model's steps sweep (one row each, columns :data:`ESTIMATE_COLUMNS`).

    ``runs`` are usable run rows (:func:`.summaries.usable_runs`). Per platform, OLS of ``gpu_energy_J`` on
    ``denoiser_calls`` over every run of the steps sweep with a measured energy (``n_generations`` of them,
    all step counts together), evaluated at the calls of ``steps``: ``gpu_energy_J_per_clip`` (the line's
    mean) with its confidence interval (``gpu_energy_J_per_clip_ci_*``) and the prediction interval of one
    generation (``single_generation_J_*``);
    ``energy_kWh_total(_ci_*)`` is the mean and its interval times ``clips``, in kWh. ``gpu_s_per_clip`` is a
    second OLS line, of ``wall_s`` on the calls, at the same point (the time the GPU is held per clip);
    ``gpu_h_total`` is it times ``clips`` in hours. ``inside_measured_range`` is False where the asked calls
    lie outside the fitted calls' range (an extrapolation). ``measured_mean_J`` / ``measured_n``: the mean
    energy and number of runs measured at exactly ``steps`` (NaN / 0 when that count was not measured), and
    ``measured_outside_line`` whether that mean lies outside the line's confidence interval.

    Raises what :func:`planned_calls` raises for the request, and :class:`.summaries.AnalysisError` when
    ``runs`` holds no steps rows of ``model``, or none with a GPU energy.
    """
    calls = planned_calls(model, steps, clips, confidence)
    rows = runs[(runs["experiment"] == EXPERIMENT) & (runs["model"] == model)]
    if rows.empty:
        raise AnalysisError(f"no usable '{EXPERIMENT}' rows (status ok, not warm-up) for model {model!r} in "
                            "the run tables: the estimate fits its steps sweep")
    rows = rows[rows["gpu_energy_J"].notna()]  # a platform measured without a GPU has nothing to fit
    if rows.empty:
        raise AnalysisError(f"the '{EXPERIMENT}' rows of model {model!r} carry no GPU energy (measured "
                            "without a GPU: NaN): the estimate needs a steps sweep measured on a GPU")
    out = []
    for key, grp in rows.groupby(list(PLATFORM_KEYS), sort=True, dropna=False):
        fitted = grp[grp["gpu_energy_J"].notna() & grp["denoiser_calls"].notna()]
        x = fitted["denoiser_calls"].to_numpy(dtype="float64")
        line = fit_line(x, fitted["gpu_energy_J"].to_numpy(dtype="float64"))
        energy = line.predict(calls, confidence)
        wall = fit_line(x, fitted["wall_s"].to_numpy(dtype="float64")).predict(calls, confidence)
        at_steps = fitted.loc[fitted["steps"] == steps, "gpu_energy_J"]
        lowest, highest = (int(x.min()), int(x.max())) if len(x) else (None, None)
        out.append({
            **dict(zip(PLATFORM_KEYS, key, strict=True)),
            "steps": int(steps),
            "denoiser_calls": int(calls),
            "n_generations": line.n_points,
            "measured_steps": ",".join(str(s) for s in sorted(fitted["steps"].dropna().astype(int).unique())),
            "measured_calls_min": lowest,
            "measured_calls_max": highest,
            "inside_measured_range": bool(len(x) and lowest <= calls <= highest),
            "r2": line.r2,
            "confidence": float(confidence),
            "gpu_energy_J_per_clip": energy.mean,
            "gpu_energy_J_per_clip_ci_low": max(0.0, energy.mean_ci_low),
            "gpu_energy_J_per_clip_ci_high": energy.mean_ci_high,
            "single_generation_J_low": max(0.0, energy.obs_low),
            "single_generation_J_high": energy.obs_high,
            "clips": int(clips),
            "energy_kWh_total": energy.mean * clips / J_PER_KWH,
            "energy_kWh_total_ci_low": max(0.0, energy.mean_ci_low) * clips / J_PER_KWH,
            "energy_kWh_total_ci_high": energy.mean_ci_high * clips / J_PER_KWH,
            "gpu_s_per_clip": wall.mean,
            "gpu_h_total": wall.mean * clips / S_PER_H,
            "measured_mean_J": float(at_steps.mean()) if len(at_steps) else float("nan"),
            "measured_n": len(at_steps),
            "measured_outside_line": bool(len(at_steps) and not np.isclose(
                np.clip(at_steps.mean(), energy.mean_ci_low, energy.mean_ci_high), at_steps.mean())),
        })
    frame = pd.DataFrame(out, columns=list(ESTIMATE_COLUMNS))
    return frame.astype({"measured_calls_min": "Int64", "measured_calls_max": "Int64"})
