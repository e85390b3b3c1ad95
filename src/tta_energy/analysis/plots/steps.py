"""Energy against steps and against batch size."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullLocator

from tta_energy.analysis.plots.common import (
    CLIPPED_CAPTION,
    circle_warm_means,
    errorbar_clipped_at,
    lines_first,
    log_floor,
    mark_clipped_in_legend,
    model_colour,
    model_label,
    models_in,
    n_label,
    plain_log_y,
    save_figure,
    skip_figure,
    skipped_without_gpu_energy,
    slug,
    use_style,
)
from tta_energy.study import CLIPS_PER_REPEAT


def plot_energy_vs_steps(
    summary: pd.DataFrame, figures: str | Path, label: str, *, log: bool = False
) -> str | None:
    """GPU energy per generation vs denoiser calls, one line per model, error bars = 95 % t interval.

    The x axis is the number of denoiser calls the sampler actually made (the nominal step count except for
    Make-An-Audio (2) at 150 steps: 167 calls), so that no point bends a line that is straight in calls.
    """
    scale = "log" if log else "linear"
    stem = f"steps-energy-{scale}-{slug(label)}"
    if summary.empty:
        skip_figure(figures, stem, f"{label}: no steps-experiment rows", "steps")
        return None
    if skipped_without_gpu_energy(summary["gpu_energy_J_mean"], figures, stem, label, "steps"):
        return None
    use_style()
    fig, ax = plt.subplots(figsize=(9.5, 4.8), layout="constrained")
    x_col = "denoiser_calls" if "denoiser_calls" in summary.columns else "steps"
    summary = summary.assign(x_calls=summary[x_col].fillna(summary["steps"]))
    floor = log_floor(summary["gpu_energy_J_mean"], summary["gpu_energy_J_ci_low"]) if log else None
    single = clipped = False
    for model in models_in(summary):
        grp = summary[summary["model"] == model].sort_values("x_calls")
        clipped |= errorbar_clipped_at(
            ax,
            grp["x_calls"],
            grp["gpu_energy_J_mean"],
            grp["gpu_energy_J_ci_low"],
            grp["gpu_energy_J_ci_high"],
            floor,
            label=f"{model_label(model)} ({n_label(grp['n_runs'])})",
            color=model_colour(model),
        )
        single |= bool((grp["n_runs"] < 2).any())
    differs = summary[summary["x_calls"] != summary["steps"]]
    for row in differs.itertuples():
        # below and right of the point, where a rising line leaves room, tied to it by a leader in the
        # model's colour; the text is dark, as readable as the axis labels whatever the model's colour
        ax.annotate(
            f"{int(row.steps)} steps\n= {int(row.x_calls)} calls",
            (row.x_calls, row.gpu_energy_J_mean),
            textcoords="offset points",
            xytext=(10, -12),
            ha="left",
            va="top",
            fontsize=7,
            color="0.15",
            arrowprops={"arrowstyle": "-", "color": model_colour(row.model), "lw": 1.2, "shrinkA": 0,
                        "shrinkB": 3},
        )
    ax.set_xlabel("denoiser calls per generation (= nominal steps unless marked)")
    ax.set_ylabel("GPU energy per generation [J]")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(summary["steps"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_locator(NullLocator())  # the step counts only; the y axis keeps its 2s and 5s
        plain_log_y(ax)
        ax.set_ylim(bottom=floor)
        if not differs.empty:  # room right of the last marked point for its note, inside the axes
            ax.set_xlim(right=max(ax.get_xlim()[1], float(differs["x_calls"].max()) * 1.5))
        if clipped:
            mark_clipped_in_legend(ax)
    else:
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    warm = circle_warm_means(ax, summary, "x_calls", "gpu_energy_J_mean")
    ax.set_title(f"Energy per 10-s generation vs denoiser calls — {label}")
    ax.legend(
        *lines_first(ax),
        fontsize="small",
        title="model (runs per point)",
        title_fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
    )
    caption = (
        f"{label}: GPU energy of one 10-s generation against the denoiser calls actually made (the nominal "
        f"steps, except where marked), mean of the runs with its 95 % Student-t interval ({scale} axes); "
        f"the legend gives the runs per point (n). Data: tables/steps_summary.csv (this platform's rows)."
    )
    if single:
        caption += " Points with n = 1 have no error bar."
    if clipped:
        caption += CLIPPED_CAPTION
    if not differs.empty:
        caption += (
            " Make-An-Audio (2) at 150 nominal steps runs 167 denoiser calls (LDM's DDIM spacing) and is "
            "drawn at 167."
        )
    if warm:
        caption += (
            " Circled means include the first call of one of the study's scripts (CUDA warm-up, never "
            "discarded by the study): they are inflated, and so is their interval."
        )
    return save_figure(fig, figures, stem, caption, "steps")


def plot_batch_energy(batch: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """GPU energy per clip vs batch size, one line per model (error bars: 95 % t interval over runs)."""
    stem = f"batch-energy-per-clip-{slug(label)}"
    if batch.empty:
        skip_figure(figures, stem, f"{label}: no batch-experiment rows", "batch")
        return None
    if skipped_without_gpu_energy(batch["gpu_energy_J_per_clip_mean"], figures, stem, label, "batch"):
        return None
    use_style()
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")
    data = batch[batch["n_prompts"] == 1] if "n_prompts" in batch.columns else batch
    single = bool((data["n_runs"] < 2).any())
    low = data["gpu_energy_J_per_10_clips_ci_low"] / CLIPS_PER_REPEAT
    high = data["gpu_energy_J_per_10_clips_ci_high"] / CLIPS_PER_REPEAT
    floor = log_floor(batch["gpu_energy_J_per_clip_mean"], low)  # every point, distinct prompts included
    clipped = False
    for model in models_in(data):
        grp = data[data["model"] == model].sort_values("n_clips")
        colour = model_colour(model)
        clipped |= errorbar_clipped_at(
            ax,
            grp["n_clips"],
            grp["gpu_energy_J_per_clip_mean"],
            low[grp.index],
            high[grp.index],
            floor,
            label=f"{model_label(model)} ({n_label(grp['n_runs'])})",
            color=colour,
        )
        ax_ratio.plot(
            grp["n_clips"], grp["ratio_to_batch1"], marker="o", color=colour, label=model_label(model)
        )
    distinct = batch[batch["n_prompts"] > 1] if "n_prompts" in batch.columns else batch[:0]
    for row in distinct.itertuples():
        for axis, y in ((ax, row.gpu_energy_J_per_clip_mean), (ax_ratio, row.ratio_to_batch1)):
            axis.scatter(
                row.n_clips,
                y,
                marker="D",
                s=60,
                facecolors="none",
                edgecolors=model_colour(row.model),
                linewidths=1.5,
                zorder=4,
            )
    if not distinct.empty:
        ax.scatter(
            [], [], marker="D", facecolors="none", edgecolors="grey", label="distinct prompts in one call"
        )
    for a in (ax, ax_ratio):
        a.set_xscale("log")
        ticks = sorted(data["n_clips"].unique())
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.minorticks_off()
        a.set_xlabel("clips per call (batch size)")
    ax.set_yscale("log")
    plain_log_y(ax)
    ax.set_ylim(bottom=floor)
    if clipped:
        mark_clipped_in_legend(ax)
    ax.set_ylabel("GPU energy per clip [J] (100 steps, 10 s; log)")
    ax_ratio.set_ylabel("energy per clip / energy at batch 1")
    ax_ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_ratio.set_ylim(bottom=0)
    warm = circle_warm_means(ax, data, "n_clips", "gpu_energy_J_per_clip_mean")
    handles, labels = lines_first(ax)
    fig.legend(  # beside the panels: a legend inside would hide points
        handles,
        labels,
        loc="outside right upper",
        fontsize="small",
        title="model (runs per point)",
        title_fontsize="small",
    )
    fig.suptitle(f"Batching: energy per clip — {label}")
    caption = (
        f"{label}: GPU energy per 10-s clip at 100 steps when 10 clips are made as 10x1, 5x2, 2x5 or 1x10 "
        f"waveforms per call (left, log scale, 95 % Student-t interval of the per-run totals / 10) and "
        f"relative to batch 1 (right); the legend gives the runs per point (n). Data: "
        f"tables/batch_summary.csv (this platform's rows)."
    )
    if single:
        caption += " Points with n = 1 (one run of 10 clips) have no error bar."
    if clipped:
        caption += CLIPPED_CAPTION
    if warm:
        caption += (
            " Circled means include the first call of one of the study's scripts (CUDA warm-up): they are "
            "inflated."
        )
    if not distinct.empty:
        caption += (
            " Hollow diamonds: the clips of one call come from distinct prompts (the study batched one)."
        )
    return save_figure(fig, figures, stem, caption, "batch")
