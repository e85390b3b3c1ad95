"""Energy against steps and against batch size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from tta_energy.analysis.plots.common import (
    MODEL_COLOURS,
    _style,
    model_label,
    save_figure,
    skip_figure,
    slug,
)


def plot_energy_vs_steps(
    summary: pd.DataFrame, figures: str | Path, label: str, *, log: bool = False
) -> str | None:
    """GPU energy per generation vs nominal steps, one line per model, error bars = sample std over runs."""
    scale = "log" if log else "linear"
    stem = f"steps-energy-{scale}-{slug(label)}"
    if summary.empty:
        skip_figure(figures, stem, f"{label}: no steps-experiment rows", "steps")
        return None
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for model, grp in summary.sort_values("steps").groupby("model", sort=False):
        ax.errorbar(
            grp["steps"],
            grp["gpu_energy_J_mean"],
            yerr=grp["gpu_energy_J_std"].fillna(0),
            marker="o",
            capsize=3,
            label=model_label(model),
            color=MODEL_COLOURS.get(model),
        )
    ax.set_xlabel("denoising steps (nominal)")
    ax.set_ylabel("GPU energy per generation [J]")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(summary["steps"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    warm = (
        summary[summary["first_generation_included"]]
        if "first_generation_included" in summary
        else summary[:0]
    )
    if not warm.empty:
        ax.scatter(
            warm["steps"],
            warm["gpu_energy_J_mean"],
            s=140,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            zorder=4,
            label="mean includes the warm-up call",
        )
    ax.set_title(f"Energy per 10-s generation vs steps — {label}")
    ax.legend(fontsize="small", ncol=2)
    caption = (
        f"{label}: GPU energy of one 10-s generation against the number of denoising steps, mean of the runs "
        f"±1 sample std ({scale} axes)."
    )
    if not warm.empty:
        caption += (
            " Circled means include the first call of a script (CUDA warm-up, never discarded by the "
            "study): their spread is inflated."
        )
    return save_figure(fig, figures, stem, caption, "steps")


def plot_batch_energy(batch: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """GPU energy per clip vs batch size, one line per model (error bars: std of per-run totals / 10)."""
    stem = f"batch-energy-per-clip-{slug(label)}"
    if batch.empty:
        skip_figure(figures, stem, f"{label}: no batch-experiment rows", "batch")
        return None
    _style()
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    data = batch[batch["n_prompts"] == 1] if "n_prompts" in batch.columns else batch
    for model, grp in data.sort_values("batch").groupby("model", sort=False):
        colour = MODEL_COLOURS.get(model)
        ax.errorbar(
            grp["batch"],
            grp["gpu_energy_J_per_clip_mean"],
            yerr=grp["gpu_energy_J_per_10_clips_std"].fillna(0) / 10,
            marker="o",
            capsize=3,
            label=model_label(model),
            color=colour,
        )
        ax_ratio.plot(
            grp["batch"], grp["ratio_to_batch1"], marker="o", color=colour, label=model_label(model)
        )
    distinct = batch[batch["n_prompts"] > 1] if "n_prompts" in batch.columns else batch[:0]
    for row in distinct.itertuples():
        for axis, y in ((ax, row.gpu_energy_J_per_clip_mean), (ax_ratio, row.ratio_to_batch1)):
            axis.scatter(
                row.batch,
                y,
                marker="D",
                s=60,
                facecolors="none",
                edgecolors=MODEL_COLOURS.get(row.model),
                linewidths=1.5,
                zorder=4,
            )
    if not distinct.empty:
        ax.scatter(
            [], [], marker="D", facecolors="none", edgecolors="grey", label="distinct prompts in one call"
        )
    for a in (ax, ax_ratio):
        a.set_xscale("log")
        ticks = sorted(data["batch"].unique())
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.minorticks_off()
        a.set_xlabel("waveforms per call (batch size)")
    ax.set_yscale("log")
    ax.set_ylabel("GPU energy per clip [J] (100 steps, 10 s)")
    ax_ratio.set_ylabel("energy per clip / energy at batch 1")
    ax_ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize="small")
    fig.suptitle(f"Batching: energy per clip — {label}")
    caption = (
        f"{label}: GPU energy per 10-s clip at 100 steps when 10 clips are made as 10x1, 5x2, 2x5 or 1x10 "
        f"waveforms per call (left, log scale, ±1 std of the per-run totals / 10) and relative to batch 1 "
        f"(right)."
    )
    if not distinct.empty:
        caption += (
            " Hollow diamonds: the clips of one call come from distinct prompts (the study batched one)."
        )
    return save_figure(fig, figures, stem, caption, "batch")
