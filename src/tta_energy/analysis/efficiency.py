"""How much of the GPU's energy turns into the model's arithmetic: FLOP per joule of the steps sweep.

For each platform and model of a steps sweep (10 s clips, batch 1, the study's settings), two ratios:

* **denoiser**: FLOPs of one denoiser call (classifier-free guidance batch of 2, counted by
  ``tta-energy describe``) over the energy of one call, the slope of energy against denoiser calls over every
  run (:func:`.summaries.per_call_fit`); its interval is the slope's, inverted;
* **generation**: FLOPs of a whole generation at the study's default of 100 steps (denoiser calls plus the
  text encoders, decoder and vocoder run once) over its mean energy, with the mean's Student-t interval.

For the batch sweep, the **denoising phase** of each layout (clips per call): the FLOPs of one clip (one
denoiser call per clip x the sampler's iterations; a denoiser's FLOPs grow linearly with its batch, which the
tests check for every model) over its measured energy per clip (``energy_denoising_J`` summed over a run's
calls, over its clips), so that batching is read in the same unit; rows without phase energies (the
study's) get no ratio.

The study's first call of each script (its CUDA warm-up) is always left out here, whatever the analysis
was asked to do with it for the study's own tables.

Where the same GPU's bf16 matrix-product ceiling was measured (``levers_ceiling.csv``, written by the levers
experiment), each ratio is also given as a fraction of it. That ceiling is a bf16 tensor-core loop; a model
run in float32 cannot reach it without changing its precision, so a low fraction there says as much about
the dtype as about the host. FLOPs are counted once per model at 10 s and batch 1; rows at another duration
or batch size get no ratio (``reason`` says why).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.analysis import summaries
from tta_energy.analysis.summaries import PLATFORM_KEYS, AnalysisError
from tta_energy.intervals import CONFIDENCE, t_interval
from tta_energy.levers.tables import CEILING_FILE, ceiling_rows, read_side
from tta_energy.models import catalogue
from tta_energy.study import STUDY_STEPS

#: The step count whose whole generation is compared: the study's default.
GENERATION_STEPS = STUDY_STEPS
#: The clip length and batch the stored FLOP counts hold (``tta-energy describe``'s table).
COUNTED_DURATION_S = catalogue.DESCRIBE_DURATION_S
COUNTED_CLIPS = 1

COLUMNS: tuple[str, ...] = (
    *PLATFORM_KEYS,
    "n_generations",
    "gflop_per_call",
    "slope_J_per_call",
    "slope_J_per_call_ci_low",
    "slope_J_per_call_ci_high",
    "denoiser_tflop_per_J",
    "denoiser_tflop_per_J_ci_low",
    "denoiser_tflop_per_J_ci_high",
    "generation_steps",
    "generation_denoiser_calls",
    "generation_gflop",
    "generation_J_mean",
    "generation_J_ci_low",
    "generation_J_ci_high",
    "generation_n",
    "generation_tflop_per_J",
    "generation_tflop_per_J_ci_low",
    "generation_tflop_per_J_ci_high",
    "ceiling_tflop_per_J",
    "denoiser_fraction_of_ceiling",
    "generation_fraction_of_ceiling",
    "reason",
)


BATCH_COLUMNS: tuple[str, ...] = (
    *PLATFORM_KEYS,
    "steps",
    "n_prompts",
    "waveforms_per_prompt",
    "n_clips",
    "n_runs",
    "n_calls",
    "denoising_gflop_per_clip",
    "denoising_J_per_clip_mean",
    "denoising_tflop_per_J",
    "denoising_tflop_per_J_ci_low",
    "denoising_tflop_per_J_ci_high",
    "ceiling_tflop_per_J",
    "denoising_fraction_of_ceiling",
    "reason",
)


def flop_counts(model: str, size: str) -> tuple[float, float] | None:
    """(GFLOP of one denoiser call, GFLOP once per generation) of ``model`` at ``size``, 10 s, batch 1, from
    the stored description table; None for a model it does not hold (a plugin's)."""
    described = catalogue.precomputed_description(model, size, COUNTED_DURATION_S)
    if described is None:
        return None
    return float(described["gflop_per_step"]), float(described["gflop_once_per_generation"])


def read_ceilings(paths: Iterable[str | Path]) -> pd.DataFrame:
    """The bf16 ceilings measured in ``paths`` (``levers_ceiling.csv`` files, or folders searched for them):
    per GPU name, the mean TFLOP per joule and how many measurements it averages."""
    found = (f for p in map(Path, paths)
             for f in (p.rglob(CEILING_FILE) if p.is_dir() else [p] if p.name == CEILING_FILE else []))
    folders = sorted({f.parent for f in found})
    for folder in folders:
        header = schema.csv_header(folder / CEILING_FILE)
        if header and not {"gpu_name", "tflop_per_J"} <= header:
            raise schema.SchemaError(f"{folder / CEILING_FILE}: a levers ceiling table needs the columns "
                                     f"gpu_name and tflop_per_J (written by tta-energy levers)")
    rows = ceiling_rows(read_side(folders, CEILING_FILE), "bf16")
    if rows.empty:
        return pd.DataFrame(columns=["gpu_name", "ceiling_tflop_per_J", "ceiling_n"])
    return (rows.groupby("gpu_name")["tflop_per_J"].agg(ceiling_tflop_per_J="mean", ceiling_n="count")
            .reset_index())


def _inverse_interval(flop: float, low_J: float, high_J: float) -> tuple[float, float]:
    """The FLOP-per-joule interval of an energy interval (low energy gives the high ratio); open above
    (NaN) where the energy interval reaches zero."""
    high = flop / low_J if low_J > 0 else np.nan
    low = flop / high_J if high_J > 0 else np.nan
    return low, high


def efficiency_table(runs: pd.DataFrame, ceilings: pd.DataFrame | None = None, *,
                     experiment: str = "steps", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per platform and model of ``experiment``'s usable rows: FLOP per joule of a denoiser call and
    of a whole generation at 100 steps, with 95% intervals and, where ``ceilings`` (:func:`read_ceilings`)
    has the platform's GPU, the fraction of its bf16 ceiling."""
    rows = summaries.without_first_generations(runs[runs["experiment"] == experiment])
    if rows.empty:
        raise AnalysisError(f"no usable '{experiment}' rows (status ok, not warm-up) in the run tables")
    ceiling_of = _ceiling_of(ceilings)
    out = []
    for _, group in rows.groupby(list(PLATFORM_KEYS), sort=True, dropna=False):
        fit = summaries.per_call_fit(group, experiment=experiment, confidence=confidence).iloc[0]
        row = {**{k: fit[k] for k in PLATFORM_KEYS}, "n_generations": fit["n_generations"],
               "slope_J_per_call": fit["slope_J_per_call"],
               "slope_J_per_call_ci_low": fit["slope_J_per_call_ci_low"],
               "slope_J_per_call_ci_high": fit["slope_J_per_call_ci_high"],
               "generation_steps": GENERATION_STEPS,
               "ceiling_tflop_per_J": ceiling_of.get(fit["gpu_name"], np.nan), "reason": ""}
        counts = flop_counts(fit["model"], fit["size"])
        durations = set(group["duration_s"].astype(float))
        clips = set(group["n_clips"].astype(int))
        if counts is None:
            row["reason"] = f"no stored FLOP count for {fit['model']} ({fit['size']})"
        elif durations != {COUNTED_DURATION_S} or clips != {COUNTED_CLIPS}:
            row["reason"] = (f"FLOPs are counted for {COUNTED_DURATION_S:g} s and {COUNTED_CLIPS} clip per "
                             f"call; these rows ask {sorted(durations)} s and {sorted(clips)} clips")
            counts = None
        if counts is not None:
            per_call, once = counts
            row["gflop_per_call"] = per_call
            tflop = per_call / 1e3
            row["denoiser_tflop_per_J"] = tflop / fit["slope_J_per_call"]
            row["denoiser_tflop_per_J_ci_low"], row["denoiser_tflop_per_J_ci_high"] = _inverse_interval(
                tflop, fit["slope_J_per_call_ci_low"], fit["slope_J_per_call_ci_high"])
            at = group[group["steps"] == GENERATION_STEPS]
            if at.empty:
                row["reason"] = f"no generation at {GENERATION_STEPS} steps"
            else:
                calls = int(at["denoiser_calls"].max())
                energy = at["gpu_energy_J"].to_numpy(dtype="float64")
                low_J, high_J = t_interval(energy, confidence)
                gflop = per_call * calls + once
                row.update(generation_denoiser_calls=calls, generation_gflop=gflop,
                           generation_J_mean=float(energy.mean()), generation_J_ci_low=low_J,
                           generation_J_ci_high=high_J, generation_n=len(energy),
                           generation_tflop_per_J=gflop / 1e3 / float(energy.mean()))
                row["generation_tflop_per_J_ci_low"], row["generation_tflop_per_J_ci_high"] = (
                    _inverse_interval(gflop / 1e3, low_J, high_J))
        out.append(row)
    table = pd.DataFrame(out).reindex(columns=list(COLUMNS))
    table["denoiser_fraction_of_ceiling"] = table["denoiser_tflop_per_J"] / table["ceiling_tflop_per_J"]
    table["generation_fraction_of_ceiling"] = table["generation_tflop_per_J"] / table["ceiling_tflop_per_J"]
    return _in_model_order(table, ["source", "gpu_name", "model"])


def batch_efficiency(runs: pd.DataFrame, ceilings: pd.DataFrame | None = None, *,
                     experiment: str = "batch", confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per platform, model and layout (prompts x waveforms per prompt) of ``experiment``: FLOP per
    joule of the denoising phase, with the fraction of the same GPU's bf16 ceiling.

    As :func:`.summaries.batch_summary` counts the batch sweep, a run (``repeat``) is the 10/b calls that
    make its clips: its denoising energy is summed over them and divided by its clips; the ratio is the
    FLOPs of one clip over the mean of those per-clip energies, and its interval is the Student-t interval
    of that mean over the runs, inverted (none with one run). A run cut short, or one with a call lacking
    the phase's energy, is left out."""
    rows = summaries.without_first_generations(runs[runs["experiment"] == experiment])
    if rows.empty:
        raise AnalysisError(f"no usable '{experiment}' rows (status ok, not warm-up) in the run tables")
    ceiling_of = _ceiling_of(ceilings)
    keys = [*PLATFORM_KEYS, "steps", "n_prompts", "waveforms_per_prompt"]
    out = []
    for key, group in rows.groupby(keys, sort=True, dropna=False):
        row = dict(zip(keys, key, strict=True))
        per_run = _per_run_denoising(group)
        row.update(n_clips=int(group["n_clips"].max()), n_calls=len(group), n_runs=len(per_run), reason="",
                   ceiling_tflop_per_J=ceiling_of.get(row["gpu_name"], np.nan))
        counts = flop_counts(row["model"], row["size"])
        if counts is None:
            row["reason"] = f"no stored FLOP count for {row['model']} ({row['size']})"
        elif set(group["duration_s"].astype(float)) != {COUNTED_DURATION_S}:
            row["reason"] = f"FLOPs are counted for {COUNTED_DURATION_S:g} s clips"
        elif per_run.empty:
            row["reason"] = "no complete run with the denoising phase's energy in these rows"
        else:
            iterations = catalogue.entry(row["model"]).defaults.denoiser_iterations(int(row["steps"]))
            tflop = counts[0] * iterations / 1e3
            per_clip = per_run.to_numpy(dtype="float64")
            low_J, high_J = t_interval(per_clip, confidence)
            row.update(denoising_gflop_per_clip=tflop * 1e3, denoising_J_per_clip_mean=float(per_clip.mean()),
                       denoising_tflop_per_J=tflop / float(per_clip.mean()))
            row["denoising_tflop_per_J_ci_low"], row["denoising_tflop_per_J_ci_high"] = _inverse_interval(
                tflop, low_J, high_J)
        out.append(row)
    table = pd.DataFrame(out).reindex(columns=list(BATCH_COLUMNS))
    table["denoising_fraction_of_ceiling"] = table["denoising_tflop_per_J"] / table["ceiling_tflop_per_J"]
    return _in_model_order(table, ["source", "gpu_name", "model", "n_prompts", "waveforms_per_prompt"])


def _per_run_denoising(group: pd.DataFrame) -> pd.Series:
    """The denoising phase's energy per clip of each complete run (``repeat``) of one layout."""
    energy = pd.to_numeric(group["energy_denoising_J"], errors="coerce")
    per_run = group.assign(_energy=energy).groupby("repeat", dropna=False).agg(
        clips=("n_clips", "sum"), energy=("_energy", "sum"), measured=("_energy", "count"),
        calls=("n_clips", "size"))
    complete = (per_run["clips"] == per_run["clips"].max()) & (per_run["measured"] == per_run["calls"])
    per_run = per_run[complete]
    return per_run["energy"] / per_run["clips"]


def _ceiling_of(ceilings: pd.DataFrame | None) -> dict[str, float]:
    if ceilings is None or ceilings.empty:
        return {}
    return dict(zip(ceilings["gpu_name"], ceilings["ceiling_tflop_per_J"], strict=True))


def _in_model_order(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``table`` sorted by ``by``, models in the catalogue's order."""
    order = {m: i for i, m in enumerate(catalogue.ordered(table["model"].unique()))}
    ordered = table.sort_values(by, key=lambda s: s.map(order) if s.name == "model" else s)
    return ordered.reset_index(drop=True)
