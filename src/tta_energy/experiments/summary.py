"""Summaries of sweep tables: warm-ups and failed rows out, mean / sample std over repeats.

``summarize`` gives per configuration: GPU energy (gross and net of idle), energy per clip, energy per
second of audio generated, wall time. ``batch_summary`` gives the batch experiment's view: energy for the
10 clips of a repeat (the sum over its 10/b calls), then mean and sample std over the repeats, and per clip.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: what distinguishes one configuration from another inside a table
CONFIG_KEYS: tuple[str, ...] = ("model", "experiment", "size", "weights", "dtype", "optimize", "steps",
                                "n_prompts", "waveforms_per_prompt", "duration_s", "guidance_scale")


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that enter a summary: not warm-ups, status ok."""
    return df[(~df["is_warmup"]) & (df["status"] == "ok")].copy()


def _with_derived(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    df["gpu_J_per_clip"] = df["gpu_energy_J"] / df["n_clips"].astype(float)
    df["gpu_J_per_audio_s"] = df["gpu_energy_J"] / df["audio_seconds"]
    df["gpu_J_per_denoiser_call"] = df["gpu_energy_J"] / df["denoiser_calls"].astype(float)
    return df


def summarize(df: pd.DataFrame, by: tuple[str, ...] = CONFIG_KEYS) -> pd.DataFrame:
    """Mean, sample std (ddof 1) and count per configuration of the ok, non-warm-up rows."""
    rows = _with_derived(measured(df))
    keys = [k for k in by if k in rows.columns]
    values = ["gpu_energy_J", "gpu_energy_net_J", "gpu_J_per_clip", "gpu_J_per_audio_s",
              "gpu_J_per_denoiser_call", "wall_s", "denoiser_calls", "latent_seconds"]
    values = [v for v in values if v in rows.columns]
    grouped = rows.groupby(keys, dropna=False)[values]
    out = grouped.agg(["mean", "std"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    out["n"] = grouped.size()
    return out.reset_index()


def batch_summary(df: pd.DataFrame, clips: int = 10) -> pd.DataFrame:
    """Energy per ``clips`` clips and per clip for each batch layout (prompts x waveforms per prompt).

    Per repeat, the energies of the 10/b calls are summed (a repeat that lacks a call is left out, so a
    partial repeat never passes for a cheap one); then mean and sample std over the complete repeats.
    """
    rows = measured(df[df["experiment"] == "batch"])
    keys = ["model", "dtype", "steps", "n_prompts", "waveforms_per_prompt"]
    per_repeat = rows.groupby([*keys, "repeat"], dropna=False).agg(
        gpu_energy_J=("gpu_energy_J", "sum"), gpu_energy_net_J=("gpu_energy_net_J", "sum"),
        wall_s=("wall_s", "sum"), n_clips=("n_clips", "sum"), calls=("config_id", "size")).reset_index()
    per_repeat = per_repeat[per_repeat["n_clips"] == clips]
    grouped = per_repeat.groupby(keys, dropna=False)
    out = grouped.agg(
        gpu_J_per_10_clips_mean=("gpu_energy_J", "mean"), gpu_J_per_10_clips_std=("gpu_energy_J", "std"),
        net_J_per_10_clips_mean=("gpu_energy_net_J", "mean"), wall_s_per_10_clips_mean=("wall_s", "mean"),
        calls_per_repeat=("calls", "first"), repeats=("repeat", "size")).reset_index()
    out["batch"] = np.where(out["n_prompts"] > 1, "p" + out["n_prompts"].astype(str),
                            out["waveforms_per_prompt"].astype(str))
    out["gpu_J_per_clip_mean"] = out["gpu_J_per_10_clips_mean"] / clips
    out["gpu_J_per_clip_std"] = out["gpu_J_per_10_clips_std"] / clips
    if clips != 10:
        out = out.rename(columns=lambda c: c.replace("10_clips", f"{clips}_clips"))
    return out
