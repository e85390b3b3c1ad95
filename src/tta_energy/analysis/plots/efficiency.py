"""FLOP per joule of the steps sweep, per platform, against the GPU's measured ceiling."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter

from tta_energy.analysis.compare import platform_label
from tta_energy.analysis.plots.common import (
    interval_errors,
    lines_first,
    model_colour,
    model_label,
    models_in,
    save_figure,
    skip_figure,
    use_style,
)

EFFICIENCY_CAPTION = (
    "FLOP per joule at the study's settings (10 s, batch 1, classifier-free guidance, the study's dtype, "
    "eager), log axis. Left: one denoiser call (its FLOPs over the slope of energy against denoiser calls"
    " over every run); middle: a whole generation at 100 steps (denoiser, text encoders, decoder and "
    "vocoder over the mean energy); platforms in black and grey with their own markers. Right: the "
    "denoising phase of the batch sweep (100 steps) against the clips one call makes (one prompt; hollow "
    "circles, drawn just right of their clip count: distinct prompts in one call), per model in its "
    "colour, on the platform whose rows carry phase energies. Bars: 95 % intervals (none where a layout "
    "has one run). Dashed: the bf16 matrix-product ceiling measured on the same GPU with the same meter, "
    "drawn only for a GPU whose runs came with one (levers_ceiling.csv). Models in float32 (Tango, Tango "
    "2, Make-An-Audio 1/2) cannot reach a bf16 ceiling at their precision; the launch-bound ones sit far "
    "below it at batch 1 on any GPU. Data: tables/efficiency.csv (left, middle) and "
    "tables/batch_efficiency.csv (right)."
)
#: one marker and one colour per platform, in the order platforms appear: black and greys, which no model
#: takes (models keep their palette colours in every figure; the palette's own grey, 0.58, is avoided)
PLATFORM_MARKERS = ("o", "s", "D", "^")
PLATFORM_COLOURS = ("black", "0.45", "0.7", "0.25")


def plot_flop_efficiency(table: pd.DataFrame, batch: pd.DataFrame, figures: str | Path) -> str | None:
    """Denoiser and whole-generation TFLOP/J per model and platform (:func:`.efficiency.efficiency_table`),
    and the batch sweep's denoising phase per layout (:func:`.efficiency.batch_efficiency`)."""
    stem = "flop-per-joule"
    usable = table.dropna(subset=["denoiser_tflop_per_J"]) if not table.empty else table
    if usable.empty:
        skip_figure(figures, stem, "no steps sweep of a model with stored FLOP counts (10 s, batch 1)",
                    "comparison")
        return None
    use_style()
    fig = plt.figure(figsize=(15, 4.8), layout="constrained")
    left = fig.add_subplot(1, 3, 1)
    axes = [left, fig.add_subplot(1, 3, 2, sharey=left)]
    models = models_in(usable)
    platforms = list(usable[["source", "gpu_name"]].drop_duplicates().itertuples(index=False, name=None))
    offsets = np.linspace(-0.18, 0.18, len(platforms)) if len(platforms) > 1 else [0.0]
    colours = [PLATFORM_COLOURS[k % len(PLATFORM_COLOURS)] for k in range(len(platforms))]
    for ax, part, title in ((axes[0], "denoiser", "One denoiser call"),
                            (axes[1], "generation", "Whole generation, 100 steps")):
        column = f"{part}_tflop_per_J"
        for k, (source, gpu) in enumerate(platforms):
            rows = usable[(usable["source"] == source) & (usable["gpu_name"] == gpu)].dropna(subset=[column])
            y = [models.index(m) + offsets[k] for m in rows["model"]]
            xerr = interval_errors(rows[column], rows[f"{column}_ci_low"], rows[f"{column}_ci_high"])
            ax.errorbar(rows[column], y, xerr=xerr, marker=PLATFORM_MARKERS[k % len(PLATFORM_MARKERS)],
                        ls="none", capsize=3, color=colours[k], label=platform_label(source, gpu))
            ceiling = rows["ceiling_tflop_per_J"].dropna()
            if not ceiling.empty:
                ax.axvline(float(ceiling.iloc[0]), color=colours[k], ls="--", lw=1)
                ax.annotate(f"{gpu} bf16 ceiling {float(ceiling.iloc[0]):.2f} TFLOP/J",
                            (float(ceiling.iloc[0]), 1.0),
                            xycoords=("data", "axes fraction"), xytext=(-3, -3), textcoords="offset points",
                            rotation=90, ha="right", va="top", fontsize=7, color=colours[k])
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("TFLOP per joule (GPU energy)")
        ax.set_title(title)
    axes[0].set_yticks(range(len(models)), [_label_with_dtype(usable, m) for m in models])
    axes[0].invert_yaxis()
    axes[1].tick_params(labelleft=False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(platforms),
               fontsize="small")
    _batch_panel(fig.add_subplot(1, 3, 3), batch)
    return save_figure(fig, figures, stem, EFFICIENCY_CAPTION + _without_ceiling(usable, batch), "comparison")


def _without_ceiling(table: pd.DataFrame, batch: pd.DataFrame) -> str:
    """The caption's sentence naming the platforms drawn without a ceiling (none measured with their runs);
    empty when every platform has one."""
    rows = pd.concat([table, batch.dropna(subset=["denoising_tflop_per_J"]) if not batch.empty else batch])
    missing = [platform_label(source, gpu)
               for (source, gpu), grp in rows.groupby(["source", "gpu_name"], sort=False)
               if grp["ceiling_tflop_per_J"].isna().all()]
    if not missing:
        return ""
    return f" No measured ceiling here for {' and '.join(missing)}, so none is drawn for it."


def _batch_panel(ax: plt.Axes, batch: pd.DataFrame) -> None:
    """The denoising phase's TFLOP/J against clips per call, one line per model (one prompt), the layout of
    distinct prompts hollow; the ceiling of the GPU dashed."""
    usable = batch.dropna(subset=["denoising_tflop_per_J"]) if not batch.empty else batch
    ax.set_title("Denoising phase vs clips per call")
    if usable.empty:
        ax.text(0.5, 0.5, "no batch rows with phase energies", transform=ax.transAxes, ha="center",
                va="center", color="grey")
        return
    gpu = usable["gpu_name"].iloc[0]  # one platform: the phases exist on this project's GPU rows only
    usable = usable[usable["gpu_name"] == gpu]
    for model in models_in(usable):
        rows = usable[usable["model"] == model]
        colour = model_colour(model)
        one = rows[rows["n_prompts"] == 1].sort_values("n_clips")
        yerr = interval_errors(one["denoising_tflop_per_J"], one["denoising_tflop_per_J_ci_low"],
                               one["denoising_tflop_per_J_ci_high"])
        ax.errorbar(one["n_clips"], one["denoising_tflop_per_J"], yerr=yerr, marker="o", capsize=3,
                    color=colour, label=model_label(model))
        distinct = rows[rows["n_prompts"] > 1]
        # beside the one-prompt point of as many clips (log axis: a factor), not on top of it
        ax.scatter(distinct["n_clips"] * 1.12, distinct["denoising_tflop_per_J"], s=60, facecolors="none",
                   edgecolors=colour, zorder=3)
    if (usable["n_prompts"] > 1).any():
        ax.scatter([], [], s=60, facecolors="none", edgecolors="grey", label="distinct prompts in one call")
    ceiling = usable["ceiling_tflop_per_J"].dropna()
    if not ceiling.empty:
        ax.axhline(float(ceiling.iloc[0]), color="grey", ls="--", lw=1)
        ax.annotate(f"{gpu} bf16 ceiling {float(ceiling.iloc[0]):.2f} TFLOP/J",
                    (1.0, float(ceiling.iloc[0])),
                    xycoords=("axes fraction", "data"), xytext=(-3, -3), textcoords="offset points",
                    ha="right", va="top", fontsize=7, color="grey")
    ax.set_xscale("log")
    ax.set_yscale("log")
    clips = sorted(int(c) for c in usable["n_clips"].unique())
    ax.set_xticks(clips, [str(c) for c in clips])
    ax.minorticks_off()
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel(f"clips per call ({gpu}, 100 steps)")
    ax.set_ylabel("TFLOP per joule, denoising phase")
    ax.legend(*lines_first(ax), fontsize="x-small", ncols=3, loc="upper left", framealpha=0.9)
    ax.set_ylim(top=max(ax.get_ylim()[1], 2.5))  # room for the legend above the ceiling


def _label_with_dtype(table: pd.DataFrame, model: str) -> str:
    dtypes = sorted(set(table.loc[table["model"] == model, "dtype"].astype(str)))
    return f"{model_label(model)} ({', '.join(dtypes)})"
