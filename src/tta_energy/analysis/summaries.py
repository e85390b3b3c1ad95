"""Per-configuration summaries of run tables: the steps and batch experiments, per-step fits and the
parameter sweeps beyond the study (duration, guidance, precision).

Every function takes a run table (schema rows, from the project's sweeps or imported from the study) and
keeps platforms apart: rows are grouped by :data:`PLATFORM_KEYS` (who measured, on which GPU, which model,
dtype and size) before anything is averaged. Energies are joules; the ``*_kWh_*`` columns repeat the
study's own arithmetic on its kWh columns so that its files can be compared number for number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from tta_energy import schema
from tta_energy.analysis.linefit import fit_line
from tta_energy.errors import TtaError
from tta_energy.experiments.grids import EXPERIMENTS
from tta_energy.intervals import CONFIDENCE, t_interval
from tta_energy.models import catalogue
from tta_energy.precision import DTYPE_NAMES
from tta_energy.schema import J_PER_KWH
from tta_energy.study import CLIPS_PER_REPEAT, STUDY_DURATION_S

#: Rows are only ever averaged within one platform and model configuration.
PLATFORM_KEYS: tuple[str, ...] = ("source", "gpu_name", "model", "dtype", "size")

#: The column each parameter sweep beyond the study varies (:func:`parameter_summary`).
PARAMETER_COLUMNS: dict[str, str] = {name: spec.columns[0] for name, spec in EXPERIMENTS.items()
                                     if not spec.in_study}
#: What ``ratio_to_reference`` divides by: the study's 10-s request and the float32 yardstick.
REFERENCE_DURATION_S = STUDY_DURATION_S
REFERENCE_DTYPE = "float32"
DTYPE_ORDER: tuple[str, ...] = DTYPE_NAMES
#: Joules in one watt-hour: the AI Energy Score leaderboard reports GPU energy as Wh per 1000 queries.
J_PER_WH = J_PER_KWH / 1000


def wh_per_1000_clips(joules_per_clip: pd.Series) -> pd.Series:
    """Energy per clip in the AI Energy Score leaderboard's unit: Wh per 1000 clips (J x 1000 / 3600)."""
    return joules_per_clip * 1000 / J_PER_WH


class AnalysisError(TtaError):
    """Input the analysis cannot use (no rows for an experiment, inconsistent runs, ...)."""


def mark_first_generations(runs: pd.DataFrame) -> pd.Series:
    """True for the first generation of each of the study's scripts (per source='study', model, experiment).

    The study never discarded a warm-up generation: the first call of every script carries CUDA/cuDNN
    warm-up (run 1 at 10 steps, batch-10 run 1). The first row in time order is it.
    """
    flag = np.zeros(len(runs), dtype=bool)
    positions = np.flatnonzero((runs["source"] == "study").to_numpy())
    if len(positions):  # by position: a table concatenated without a new index repeats labels
        study = runs.iloc[positions].assign(_position=positions)
        order = study.sort_values(["timestamp", "_position"], kind="stable")
        flag[order.groupby(["model", "experiment"], sort=False).head(1)["_position"].to_numpy()] = True
    return pd.Series(flag, index=runs.index)


def usable_runs(runs: pd.DataFrame, *, drop_study_warmup: bool = False) -> pd.DataFrame:
    """Rows that enter summaries: status ok, not flagged warm-up; optionally without the study's first calls.

    Adds ``first_generation`` (the study's unflagged warm-up rows) so that summaries can say which means
    contain one.
    """
    runs = runs.copy()
    runs["first_generation"] = mark_first_generations(runs)
    usable = runs[schema.measured_generations(runs)]
    return without_first_generations(usable) if drop_study_warmup else usable


def without_first_generations(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without the study's first call of each script (``first_generation``, its CUDA warm-up)."""
    if "first_generation" not in rows.columns:
        return rows
    return rows[~rows["first_generation"].fillna(False).astype(bool)]


def _require(runs: pd.DataFrame, experiment: str) -> pd.DataFrame:
    """A copy of the rows of ``experiment``; ``first_generation`` False where usable_runs did not set it."""
    rows = runs[runs["experiment"] == experiment]
    if rows.empty:
        raise AnalysisError(f"no usable '{experiment}' rows (status ok, not warm-up) in the run tables")
    rows = rows.copy()
    if "first_generation" not in rows.columns:
        rows["first_generation"] = False
    return rows


def _ci_columns(
    frame: pd.DataFrame, groups: pd.core.groupby.DataFrameGroupBy, column: str, prefix: str, confidence: float
) -> None:
    intervals = groups[column].apply(lambda s: t_interval(s.to_numpy(), confidence))
    frame[f"{prefix}_ci_low"] = [iv[0] for iv in intervals]
    frame[f"{prefix}_ci_high"] = [iv[1] for iv in intervals]


def steps_summary(
    runs: pd.DataFrame, *, experiment: str = "steps", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Energy per generation for each (platform, model, steps): mean, sample std (ddof 1), SEM, t interval.

    ``gpu_energy_J_mean`` / ``gpu_energy_J_std`` are the study's ``<Model>-mean.csv`` / ``-std.csv``
    ``gpu_energy`` in joules when given its rows; ``energy_J_mean`` is CodeCarbon's ``energy_consumed``.
    """
    df = _require(runs, experiment)
    df["energy_J"] = df["energy_consumed"] * J_PER_KWH  # CodeCarbon's total: the energy_J_* columns
    df["gpu_energy_J_per_audio_s"] = df["gpu_energy_J"] / df["audio_seconds"]
    keys = [*PLATFORM_KEYS, "steps"]
    g = df.groupby(keys, sort=True, dropna=False)
    out = g.agg(
        denoiser_calls=("denoiser_calls", "max"),
        n_runs=("gpu_energy_J", "count"),
        gpu_energy_J_mean=("gpu_energy_J", "mean"),
        gpu_energy_J_std=("gpu_energy_J", "std"),
        gpu_energy_J_sem=("gpu_energy_J", "sem"),
        energy_J_mean=("energy_J", "mean"),
        energy_J_std=("energy_J", "std"),
        cpu_energy_J_mean=("cpu_energy_J", "mean"),
        ram_energy_J_mean=("ram_energy_J", "mean"),
        gpu_energy_net_J_mean=("gpu_energy_net_J", "mean"),
        codecarbon_duration_s_mean=("duration", "mean"),
        codecarbon_duration_s_std=("duration", "std"),
        wall_s_mean=("wall_s", "mean"),
        gpu_energy_J_per_audio_s_mean=("gpu_energy_J_per_audio_s", "mean"),
        gpu_energy_kWh_mean=("gpu_energy", "mean"),
        gpu_energy_kWh_std=("gpu_energy", "std"),
        first_generation_included=("first_generation", "any"),
    ).reset_index()
    _ci_columns(out, g, "gpu_energy_J", "gpu_energy_J", confidence)
    _ci_columns(out, g, "gpu_energy_J_per_audio_s", "gpu_energy_J_per_audio_s", confidence)
    out["gpu_energy_J_per_denoiser_call"] = out["gpu_energy_J_mean"] / out["denoiser_calls"]
    out["gpu_energy_Wh_per_1000_clips_mean"] = wh_per_1000_clips(out["gpu_energy_J_mean"])
    first = [
        "model",
        "steps",
        "n_runs",
        "gpu_energy_J_mean",
        "gpu_energy_J_std",
        "gpu_energy_J_per_audio_s_mean",
        "gpu_energy_Wh_per_1000_clips_mean",
        "energy_J_mean",
        "codecarbon_duration_s_mean",
    ]
    return out[first + [c for c in out.columns if c not in first]]


def steps_fit(summary: pd.DataFrame, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per model: least-squares line of the per-step-count mean GPU energy vs nominal steps and vs calls.

    ``n_points`` is the number of step counts with a mean energy, the points the line through the steps
    fits; ``slope_J_per_step_ci_low`` / ``_ci_high`` is the slope's Student-t interval at ``confidence``
    from its standard error (``slope_stderr_J``, ``n_points - 2`` degrees of freedom). The second fit
    matters where nominal steps and iterations differ (Make-An-Audio (2) at 150 steps runs 167 DDIM
    iterations).
    """
    rows = []
    for key, grp in summary.groupby(list(PLATFORM_KEYS), sort=True, dropna=False):
        grp = grp.sort_values("steps")
        y = grp["gpu_energy_J_mean"].to_numpy(dtype="float64")
        by_steps = fit_line(grp["steps"].to_numpy(dtype="float64"), y)
        by_calls = fit_line(grp["denoiser_calls"].to_numpy(dtype="float64"), y)
        low, high = by_steps.slope_interval(confidence)
        rows.append(
            {
                **dict(zip(PLATFORM_KEYS, key, strict=True)),
                "n_points": by_steps.n_points,
                "slope_J_per_step": by_steps.slope,
                "intercept_J": by_steps.intercept,
                "r2": by_steps.r2,
                "slope_stderr_J": by_steps.slope_stderr,
                "slope_J_per_step_ci_low": low,
                "slope_J_per_step_ci_high": high,
                "slope_J_per_call": by_calls.slope,
                "intercept_J_calls": by_calls.intercept,
                "r2_calls": by_calls.r2,
                "slope_calls_stderr_J": by_calls.slope_stderr,
                "steps_differ_from_calls": bool((grp["steps"] != grp["denoiser_calls"]).any()),
            }
        )
    out = pd.DataFrame(rows)
    first = ["model", "slope_J_per_step", "intercept_J", "r2"]
    return out[first + [c for c in out.columns if c not in first]]


def per_call_fit(runs: pd.DataFrame, *, experiment: str = "steps",
                 confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Per platform and model: least squares of every run's GPU energy against the denoiser calls it made.

    The slope is the energy of one denoiser call (with classifier-free guidance, at the sweep's duration and
    batch), with its Student-t interval from the slope's standard error; unlike :func:`steps_fit` (a line
    through the per-step-count means) it weighs each generation once, so its interval reflects the repeats.
    ``n_generations`` counts the generations fitted (a GPU energy and a call count), all step counts
    together.
    """
    df = _require(runs, experiment)
    rows = []
    for key, grp in df.groupby(list(PLATFORM_KEYS), sort=True, dropna=False):
        line = fit_line(grp["denoiser_calls"].to_numpy(dtype="float64"),
                        grp["gpu_energy_J"].to_numpy(dtype="float64"))
        low, high = line.slope_interval(confidence)
        rows.append({**dict(zip(PLATFORM_KEYS, key, strict=True)), "n_generations": line.n_points,
                     "slope_J_per_call": line.slope, "slope_J_per_call_ci_low": low,
                     "slope_J_per_call_ci_high": high, "intercept_J": line.intercept, "r2": line.r2})
    return pd.DataFrame(rows)


def batch_summary(
    runs: pd.DataFrame, *, experiment: str = "batch", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Energy to make 10 clips at each batch size (``n_clips``, the clips of one call), summed per run over
    its calls as the study did.

    Per run: the GPU energy of its calls is summed (10/b calls of b clips); the mean over runs equals the
    study's ``total.csv`` (b = 1, 2, 5) / ``averaged_batch10.csv`` (b = 10). ``..._std`` is the sample
    standard deviation of the per-run totals, for every b. The study's own error bars are in
    ``study_error_J`` (a standard error sqrt(sum_i var_i / n) for b < 10, a standard deviation for b = 10,
    as its repository computes them) so that its figures can be redrawn; ``study_error_kind`` says which.
    """
    df = _require(runs, experiment)
    df["n_clips"] = df["n_clips"].astype(int)
    df["energy_J"] = df["energy_consumed"] * J_PER_KWH  # CodeCarbon's total: energy_J_per_10_clips_*
    if "batch_call_index" not in df.columns:  # the position of a call within its run, in table order
        df["batch_call_index"] = df.groupby(
            [*PLATFORM_KEYS, "n_prompts", "n_clips", "repeat"], dropna=False
        ).cumcount()
    keys = [*PLATFORM_KEYS, "n_prompts", "n_clips"]
    per_run = (
        df.groupby([*keys, "repeat"], sort=True, dropna=False)
        .agg(
            calls=("repeat", "size"),
            measured=("gpu_energy_J", "count"),
            gpu_J=("gpu_energy_J", "sum"),
            gpu_kWh=("gpu_energy", "sum"),
            energy_measured=("energy_J", "count"),
            energy_J=("energy_J", "sum"),
            duration_measured=("duration", "count"),
            duration=("duration", "sum"),
            audio_s=("audio_seconds", "sum"),
            first_generation=("first_generation", "any"),
        )
        .reset_index()
    )
    per_run["clips"] = per_run["n_clips"] * per_run["calls"]
    # a call without a GPU energy (or a CodeCarbon column) makes its run's total unknown, not smaller
    per_run.loc[per_run["measured"] < per_run["calls"], ["gpu_J", "gpu_kWh"]] = np.nan
    per_run.loc[per_run["energy_measured"] < per_run["calls"], "energy_J"] = np.nan
    per_run.loc[per_run["duration_measured"] < per_run["calls"], "duration"] = np.nan
    # a run cut short (an interrupted sweep) is left out rather than extrapolated
    full = per_run.groupby(keys, dropna=False)["clips"].transform("max")
    per_run["incomplete"] = per_run["clips"] < full
    dropped = (
        per_run[per_run["incomplete"]].groupby(keys, dropna=False).size().rename("incomplete_runs_dropped")
    )
    per_run = per_run[~per_run["incomplete"]].copy()
    scale = CLIPS_PER_REPEAT / per_run["clips"]
    per_run["gpu_J_per_10"] = per_run["gpu_J"] * scale
    per_run["gpu_kWh_per_10"] = per_run["gpu_kWh"] * scale
    per_run["energy_J_per_10"] = per_run["energy_J"] * scale
    per_run["duration_per_10"] = per_run["duration"] * scale
    per_run["gpu_J_per_audio_s"] = per_run["gpu_J"] / per_run["audio_s"]
    g = per_run.groupby(keys, sort=True, dropna=False)
    out = g.agg(
        n_runs=("gpu_J_per_10", "count"),
        calls_per_run=("calls", "median"),
        clips_per_run=("clips", "median"),
        gpu_energy_J_per_10_clips_mean=("gpu_J_per_10", "mean"),
        gpu_energy_J_per_10_clips_std=("gpu_J_per_10", "std"),
        gpu_energy_J_per_10_clips_sem=("gpu_J_per_10", "sem"),
        energy_J_per_10_clips_mean=("energy_J_per_10", "mean"),
        codecarbon_duration_s_per_10_clips_mean=("duration_per_10", "mean"),
        gpu_energy_J_per_audio_s_mean=("gpu_J_per_audio_s", "mean"),
        gpu_energy_kWh_per_10_clips_mean=("gpu_kWh_per_10", "mean"),
        first_generation_included=("first_generation", "any"),
    ).reset_index()
    _ci_columns(out, g, "gpu_J_per_10", "gpu_energy_J_per_10_clips", confidence)
    out["gpu_energy_J_per_clip_mean"] = out["gpu_energy_J_per_10_clips_mean"] / CLIPS_PER_REPEAT
    out["gpu_energy_Wh_per_1000_clips_mean"] = wh_per_1000_clips(out["gpu_energy_J_per_clip_mean"])
    # the baseline is one clip per call (one prompt): distinct-prompt batches compare against it too
    single = out[(out["n_clips"] == 1) & (out["n_prompts"] == 1)]
    base = single.set_index(list(PLATFORM_KEYS))["gpu_energy_J_per_10_clips_mean"]
    idx = pd.MultiIndex.from_frame(out[list(PLATFORM_KEYS)])
    out["ratio_to_batch1"] = out["gpu_energy_J_per_10_clips_mean"].to_numpy() / base.reindex(idx).to_numpy()
    errors = _study_batch_errors(df, keys)
    out = out.merge(errors, on=keys, how="left")
    out = out.merge(dropped.reset_index(), on=keys, how="left")
    out["incomplete_runs_dropped"] = out["incomplete_runs_dropped"].fillna(0).astype(int)
    first = [
        "model",
        "n_clips",
        "gpu_energy_J_per_10_clips_mean",
        "gpu_energy_J_per_10_clips_std",
        "gpu_energy_J_per_clip_mean",
        "gpu_energy_J_per_audio_s_mean",
        "gpu_energy_Wh_per_1000_clips_mean",
        "ratio_to_batch1",
    ]
    return out[first + [c for c in out.columns if c not in first]]


def _study_batch_errors(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The study's error bars: sqrt(sum of the calls' across-run variances / runs) if b < 10, else std."""
    rows = []
    for key, grp in df.groupby(keys, sort=True, dropna=False):
        n_runs = grp["repeat"].nunique()
        if grp.groupby("repeat").size().max() == 1:  # one call per run
            err, kind = grp["gpu_energy_J"].std(ddof=1), "standard deviation"
        else:
            # a call some run did not measure leaves its variance, so the error, unknown (NaN, not smaller)
            calls = grp.groupby("batch_call_index")["gpu_energy_J"]
            var = calls.var(ddof=1).where(calls.count() == calls.size())
            err, kind = float(np.sqrt(var.sum(min_count=len(var)) / n_runs)), "standard error"
        rows.append({**dict(zip(keys, key, strict=True)), "study_error_J": err, "study_error_kind": kind})
    return pd.DataFrame(rows)


def parameter_summary(runs: pd.DataFrame, experiment: str, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Energy per generation at each value of a swept parameter: ``duration``, ``guidance`` or ``precision``.

    One row per (platform, model, steps, clips per call, requested duration, guidance scale, dtype), so the
    swept column (:data:`PARAMETER_COLUMNS`: ``duration_s``, ``guidance_scale`` or ``dtype``) varies within
    a model and nothing else does. Columns: ``n_runs``; ``gpu_energy_J`` mean, sample std (ddof 1), SEM
    and t interval (NaN with one run); ``gpu_energy_J_per_audio_s_mean`` (per second of audio returned,
    ``audio_seconds``) and ``gpu_energy_J_per_latent_s_mean`` (per second the denoiser computed,
    ``latent_seconds`` per clip); ``wall_s_mean``; ``audio_seconds`` and ``latent_seconds`` (means);
    ``cfg`` (classifier-free guidance on: scale > 1; NA when the scale is unknown).

    ``ratio_to_reference`` is the mean energy over that of the row flagged ``is_reference`` among the
    model's rows that differ only in the swept parameter (NaN when that row was not measured):

    * duration: the request of :data:`REFERENCE_DURATION_S` (10 s, the study's);
    * guidance: guidance on at the model's own scale (the one scale > 1 measured; if several, the scale of
      the model's other sweeps on the same platform, else the largest);
    * precision: :data:`REFERENCE_DTYPE` (float32) for every model, also where the model runs in float16
      by default (Stable Audio Open, AudioLDM, AudioLDM 2): the ratio is the saving over full precision.

    Models that ignore the requested length show it in ``latent_seconds``: Stable Audio Open computes
    47.55 s of latents at every duration and Tango 10.24 s, so their energy does not follow ``duration_s``
    while the energy per second of audio returned does.

    Raises :class:`AnalysisError` for another experiment name or when ``runs`` has no rows of it.
    """
    if experiment not in PARAMETER_COLUMNS:
        raise AnalysisError(
            f"parameter_summary: experiment {experiment!r} is not one of {', '.join(PARAMETER_COLUMNS)}"
        )
    param = PARAMETER_COLUMNS[experiment]
    df = _require(runs, experiment)
    df["gpu_energy_J_per_audio_s"] = df["gpu_energy_J"] / df["audio_seconds"]
    df["gpu_energy_J_per_latent_s"] = df["gpu_energy_J"] / (df["latent_seconds"] * df["n_clips"])
    keys = [*PLATFORM_KEYS, "steps", "n_clips", "duration_s", "guidance_scale"]
    g = df.groupby(keys, sort=True, dropna=False)
    out = g.agg(
        n_runs=("gpu_energy_J", "count"),
        gpu_energy_J_mean=("gpu_energy_J", "mean"),
        gpu_energy_J_std=("gpu_energy_J", "std"),
        gpu_energy_J_sem=("gpu_energy_J", "sem"),
        gpu_energy_J_per_audio_s_mean=("gpu_energy_J_per_audio_s", "mean"),
        gpu_energy_J_per_latent_s_mean=("gpu_energy_J_per_latent_s", "mean"),
        wall_s_mean=("wall_s", "mean"),
        audio_seconds=("audio_seconds", "mean"),
        latent_seconds=("latent_seconds", "mean"),
        first_generation_included=("first_generation", "any"),
    ).reset_index()
    _ci_columns(out, g, "gpu_energy_J", "gpu_energy_J", confidence)
    scale = out["guidance_scale"].astype("float64")
    out["cfg"] = pd.array([pd.NA if np.isnan(v) else catalogue.runs_guidance(m, v)
                           for m, v in zip(out["model"], scale, strict=True)], dtype="boolean")
    out["is_reference"] = False
    out["ratio_to_reference"] = np.nan
    base = [k for k in keys if k != param]
    for _, grp in out.groupby(base, sort=False, dropna=False):
        ref = _reference_index(grp, experiment, runs)
        if ref is None:
            continue
        out.loc[ref, "is_reference"] = True
        reference = grp.loc[ref, "gpu_energy_J_mean"]
        out.loc[grp.index, "ratio_to_reference"] = grp["gpu_energy_J_mean"] / reference
    if experiment == "precision":
        rank = {d: i for i, d in enumerate(DTYPE_ORDER)}
        out["_order"] = out["dtype"].map(lambda d: rank.get(d, len(rank)))
        out = out.sort_values([*[k for k in keys if k != "dtype"], "_order"], kind="stable").drop(
            columns="_order"
        )
        out = out.reset_index(drop=True)
    first = list(parameter_summary_columns(experiment))
    return out[first + [c for c in out.columns if c not in first]]


def parameter_summary_columns(experiment: str) -> tuple[str, ...]:
    """The leading columns of :func:`parameter_summary` (what a reader looks at first), in order."""
    return (
        "model",
        PARAMETER_COLUMNS[experiment],
        *(("cfg",) if experiment == "guidance" else ()),
        "n_runs",
        "gpu_energy_J_mean",
        "gpu_energy_J_std",
        "gpu_energy_J_ci_low",
        "gpu_energy_J_ci_high",
        "gpu_energy_J_per_audio_s_mean",
        "wall_s_mean",
        "audio_seconds",
        "latent_seconds",
        "ratio_to_reference",
    )


def _reference_index(grp: pd.DataFrame, experiment: str, runs: pd.DataFrame) -> int | None:
    """The row of ``grp`` (a model's values of the swept parameter) that ``ratio_to_reference`` divides by."""
    if experiment == "duration":
        hit = grp.index[np.isclose(grp["duration_s"].astype("float64"), REFERENCE_DURATION_S)]
    elif experiment == "precision":
        hit = grp.index[grp["dtype"] == REFERENCE_DTYPE]
    else:
        on = grp[[catalogue.runs_guidance(m, v) for m, v in zip(grp["model"], grp["guidance_scale"].astype(
            "float64"), strict=True)]]
        if len(on) <= 1:
            hit = on.index
        else:
            first = grp.iloc[0]
            same = runs["experiment"] != experiment
            for k in PLATFORM_KEYS:
                same &= (runs[k] == first[k]) | (runs[k].isna() & pd.isna(first[k]))
            used = runs.loc[same, "guidance_scale"].mode()
            hit = on.index[on["guidance_scale"].isin(used)]
            if hit.empty:
                hit = on.index[[int(np.argmax(on["guidance_scale"].to_numpy(dtype="float64")))]]
    return int(hit[0]) if len(hit) else None


#: The caption set ``ratio_to_reference_dataset`` divides by in :func:`quality_energy_summary`.
REFERENCE_DATASET = "audiocaps"
#: How the caption sets are printed.
DATASET_LABELS: dict[str, str] = {"audiocaps": "AudioCaps", "clotho": "Clotho"}
#: The leading columns of :func:`quality_energy_summary` (what a reader looks at first), in order.
QUALITY_ENERGY_COLUMNS: tuple[str, ...] = (
    "model",
    "steps",
    "dataset",
    "n_captions",
    "gpu_energy_J_mean",
    "gpu_energy_J_std",
    "gpu_energy_J_ci_low",
    "gpu_energy_J_ci_high",
    "ratio_to_reference_dataset",
    "welch_p",
    "spearman_rho_prompt_chars",
    "spearman_p_prompt_chars",
)


def _spearman(x: pd.Series, y: pd.Series) -> tuple[float, float]:
    """Spearman's rho and its p value; NaN where it is undefined (fewer than 3 pairs or a constant side)."""
    ok = x.notna() & y.notna()
    x, y = x[ok], y[ok]
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return float("nan"), float("nan")
    res = stats.spearmanr(x, y)
    return float(res.statistic), float(res.pvalue)


def quality_energy_summary(runs: pd.DataFrame, *, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Energy per caption of the quality sweep, per (platform, model, steps, caption set).

    The quality sweep makes one generation per caption, so the spread here is over captions (and the
    moment each ran), not over repeats of one configuration. Columns: ``n_captions``; ``gpu_energy_J``
    mean, sample std (ddof 1), SEM and t interval; ``gpu_energy_J_per_audio_s_mean``; ``wall_s_mean``;
    ``prompt_chars_mean`` and Spearman's rho / p of energy against the caption's length in characters
    (``spearman_rho_prompt_chars``: longer captions cost more only where the text encoder's work grows with
    them, e.g. AudioLDM 2's GPT-2 and T5); ``ratio_to_reference_dataset``: the mean over that of
    :data:`REFERENCE_DATASET` at the same platform and steps; ``welch_p``: Welch's t test of the two caption
    sets' energies (the same on both rows; NaN with one set or fewer than two captions in one). Whether the
    caption set changes the energy matters because the study reports its energy per caption subset.

    Raises :class:`AnalysisError` when ``runs`` has no usable quality rows or none names its caption set.
    """
    df = _require(runs, "quality")
    named = df["dataset"].fillna("") != "" if "dataset" in df.columns else pd.Series(False, index=df.index)
    if not named.any():
        raise AnalysisError("the 'quality' rows do not say which caption set they come from (column dataset)")
    df = df[named].copy()
    df["gpu_energy_J_per_audio_s"] = df["gpu_energy_J"] / df["audio_seconds"]
    df["prompt_chars"] = df["prompt"].fillna("").astype(str).str.len()
    keys = [*PLATFORM_KEYS, "steps", "dataset"]
    g = df.groupby(keys, sort=True, dropna=False)
    out = g.agg(
        n_captions=("gpu_energy_J", "count"),
        gpu_energy_J_mean=("gpu_energy_J", "mean"),
        gpu_energy_J_std=("gpu_energy_J", "std"),
        gpu_energy_J_sem=("gpu_energy_J", "sem"),
        gpu_energy_J_per_audio_s_mean=("gpu_energy_J_per_audio_s", "mean"),
        wall_s_mean=("wall_s", "mean"),
        prompt_chars_mean=("prompt_chars", "mean"),
        first_generation_included=("first_generation", "any"),
    ).reset_index()
    _ci_columns(out, g, "gpu_energy_J", "gpu_energy_J", confidence)
    rho = g.apply(lambda grp: _spearman(grp["prompt_chars"], grp["gpu_energy_J"]), include_groups=False)
    out["spearman_rho_prompt_chars"] = [r[0] for r in rho]
    out["spearman_p_prompt_chars"] = [r[1] for r in rho]
    base = [*PLATFORM_KEYS, "steps"]
    welch = {}
    for key, grp in df.groupby(base, sort=False, dropna=False):
        sets = [s["gpu_energy_J"] for _, s in grp.groupby("dataset", sort=True)]
        if len(sets) == 2 and min(len(s) for s in sets) >= 2:
            welch[key] = float(stats.ttest_ind(*sets, equal_var=False).pvalue)
    out["welch_p"] = [welch.get(tuple(row), np.nan) for row in out[base].itertuples(index=False)]
    reference = out[out["dataset"] == REFERENCE_DATASET].set_index(base)["gpu_energy_J_mean"]
    out["ratio_to_reference_dataset"] = (
        out["gpu_energy_J_mean"].to_numpy()
        / reference.reindex(pd.MultiIndex.from_frame(out[base])).to_numpy()
    )
    first = list(QUALITY_ENERGY_COLUMNS)
    return out[first + [c for c in out.columns if c not in first]]


# --------------------------------------------------------------------------------------------------------
# Host diagnostics: how busy the GPU was, how the host behaved

#: The run-table columns the host diagnostics read; rows measured before they existed leave them empty.
HOST_INPUT_COLUMNS: tuple[str, ...] = ("cpu_time_s", "gpu_busy_fraction")


def host_rows(runs: pd.DataFrame, *, experiment: str = "steps") -> pd.DataFrame:
    """The generations of ``experiment`` that carry host diagnostics, with per-generation ratios added:
    ``power_W`` (GPU energy / wall time), ``denoising_J_per_call`` (denoising phase energy / denoiser calls),
    ``idle_energy_share`` (what the GPU's idle power over the same wall time would have cost, over the
    energy measured) and ``cpu_time_per_wall`` (the process's CPU time / wall time; about 1 whenever the
    host thread waits for the GPU by spinning, as CUDA synchronisation does by default)."""
    df = _require(runs, experiment)
    for column in HOST_INPUT_COLUMNS:
        if column not in df.columns:
            df[column] = np.nan
    df = df[df["gpu_busy_fraction"].notna() & df["cpu_time_s"].notna()].copy()
    if df.empty:
        raise AnalysisError(f"no {experiment} row carries host diagnostics (cpu_time_s, gpu_busy_fraction)")
    df["power_W"] = df["gpu_energy_J"] / df["wall_s"]
    df["denoising_J_per_call"] = df["energy_denoising_J"] / df["denoiser_calls"]
    df["cpu_time_per_wall"] = df["cpu_time_s"] / df["wall_s"]
    df["idle_energy_share"] = df["gpu_idle_power_W"] * df["wall_s"] / df["gpu_energy_J"]
    return df


def host_summary(
    runs: pd.DataFrame, *, experiment: str = "steps", confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """Per platform and model, over the generations of ``experiment`` with host diagnostics (all step
    counts together): ``n_generations`` (how many), the mean GPU busy fraction with its Student-t interval,
    mean GPU power and idle power (W), the share of the energy idle power alone accounts for, mean energy per
    denoiser call of the denoising phase (J), and the mean ratio of the process's CPU time to wall time."""
    df = host_rows(runs, experiment=experiment)
    g = df.groupby(list(PLATFORM_KEYS), sort=True, dropna=False)
    out = g.agg(
        n_generations=("gpu_busy_fraction", "count"),
        gpu_busy_fraction_mean=("gpu_busy_fraction", "mean"),
        power_W_mean=("power_W", "mean"),
        idle_power_W_mean=("gpu_idle_power_W", "mean"),
        idle_energy_share_mean=("idle_energy_share", "mean"),
        denoising_J_per_call_mean=("denoising_J_per_call", "mean"),
        cpu_time_per_wall_mean=("cpu_time_per_wall", "mean"),
        cpu_time_per_wall_min=("cpu_time_per_wall", "min"),
        cpu_time_per_wall_max=("cpu_time_per_wall", "max"),
        host_cpu_model=("host_cpu_model", "first"),
        host_cpu_count=("host_cpu_count", "first"),
    ).reset_index()
    _ci_columns(out, g, "gpu_busy_fraction", "gpu_busy_fraction", confidence)
    _ci_columns(out, g, "power_W", "power_W", confidence)
    first = ["model", "n_generations", "gpu_busy_fraction_mean", "gpu_busy_fraction_ci_low",
             "gpu_busy_fraction_ci_high", "power_W_mean", "idle_power_W_mean", "idle_energy_share_mean",
             "denoising_J_per_call_mean", "cpu_time_per_wall_mean"]
    return out[first + [c for c in out.columns if c not in first]]
