"""This project's H200 against the study's A40."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tta_energy.analysis.plots.common import (
    model_colour,
    model_label,
    n_label,
    save_figure,
    skip_figure,
    use_style,
)


def plot_platform_comparison(
    per_steps: pd.DataFrame, per_model: pd.DataFrame, figures: str | Path, *, note: str = ""
) -> str | None:
    """Per-step energy of each model on two platforms side by side, and the ratio at each step count.

    ``note`` says how the means were made (e.g. that the study's warm-up calls were left out); it ends the
    caption and the right panel's title.
    """
    stem = "platform-comparison"
    if per_model.empty:
        skip_figure(figures, stem, "no model measured on both platforms", "comparison")
        return None
    use_style()
    ref, other = per_model["reference"].iloc[0], per_model["other"].iloc[0]
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    x = np.arange(len(per_model))
    ax.bar(x - 0.2, per_model["slope_J_per_step_reference"], 0.4, label=ref, color="0.6")
    ax.bar(
        x + 0.2,
        per_model["slope_J_per_step_other"],
        0.4,
        label=other,
        color=[model_colour(m) for m in per_model["model"]],
    )
    ax.set_xticks(x, [model_label(m) for m in per_model["model"]], rotation=25, ha="right")
    ax.set_ylabel("GPU energy per denoising step [J] (fit slope)")
    ax.legend(fontsize="small")
    for model, grp in per_steps.groupby("model"):
        n = ""
        if {"n_runs_reference", "n_runs_other"} <= set(grp.columns):
            n = f" (n = {n_label(grp['n_runs_reference'])[4:]} / {n_label(grp['n_runs_other'])[4:]})"
        ax_ratio.plot(
            grp["steps"],
            grp["ratio_other_to_reference"],
            marker="o",
            color=model_colour(model),
            label=model_label(model) + n,
        )
    ax_ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_ratio.set_xscale("log")
    ticks = sorted(per_steps["steps"].unique())
    ax_ratio.set_xticks(ticks, [str(t) for t in ticks])
    ax_ratio.minorticks_off()
    ax_ratio.set_xlabel("denoising steps (log)")
    ax_ratio.set_ylabel(f"energy ratio {other} / {ref} [-]")
    ax_ratio.set_ylim(bottom=0)
    ax_ratio.legend(fontsize="small", title=f"model (runs per point {ref} / {other})", title_fontsize="small")
    fig.suptitle(f"{other} vs {ref}: per-step energy and ratio per generation")
    caption = (
        f"Per-step GPU energy (slope of the steps fit) of each model on {ref} and {other} (left) and the "
        f"ratio of the mean energy per generation at each step count (right; runs per point in the legend)."
    )
    if note:
        caption += f" {note}"
        ax_ratio.set_title(note, fontsize="small")
    return save_figure(fig, figures, stem, caption, "comparison")
