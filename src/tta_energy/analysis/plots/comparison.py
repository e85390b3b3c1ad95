"""This project's H200 against the study's A40."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from tta_energy.analysis.plots.common import (
    interval_errors,
    model_colour,
    model_label,
    models_in,
    n_label,
    save_figure,
    skip_figure,
    use_style,
)

#: the other platform's bars: the model's colour under white hatching (the reference's bars are plain grey)
OTHER_HATCH = "///"
REFERENCE_GREY = "0.6"


def slope_errors(per_model: pd.DataFrame, side: str) -> np.ndarray | None:
    """Error bars of the per-step slopes of one platform (``side``: ``reference`` or ``other``) from the
    interval columns of ``per_model`` (``slope_J_per_step_ci_low_<side>`` and ``_ci_high_<side>``, written by
    :func:`.summaries.steps_fit`); None when it has none."""
    low, high = f"slope_J_per_step_ci_low_{side}", f"slope_J_per_step_ci_high_{side}"
    if not {low, high} <= set(per_model.columns):
        return None
    return interval_errors(per_model[f"slope_J_per_step_{side}"], per_model[low], per_model[high])


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
    per_model = per_model.set_index("model").loc[models_in(per_model)].reset_index()  # catalogue order
    x = np.arange(len(per_model))
    errors = {side: slope_errors(per_model, side) for side in ("reference", "other")}
    bar_errors = {"capsize": 3, "ecolor": "0.2"}
    ax.bar(x - 0.2, per_model["slope_J_per_step_reference"], 0.4, color=REFERENCE_GREY,
           yerr=errors["reference"], **bar_errors)
    colours = [model_colour(m) for m in per_model["model"]]
    ax.bar(x + 0.2, per_model["slope_J_per_step_other"], 0.4, color=colours, hatch=OTHER_HATCH,
           edgecolor="white", yerr=errors["other"], **bar_errors)
    ax.set_xticks(x, [model_label(m) for m in per_model["model"]], rotation=25, ha="right")
    ax.set_ylabel("GPU energy per denoising step [J] (fit slope)")
    ax.legend(  # the other platform's bars take each model's colour: its key says so, in neutral grey
        handles=[Patch(facecolor=REFERENCE_GREY, label=f"{ref} (plain grey)"),
                 Patch(facecolor="0.35", edgecolor="white", hatch=OTHER_HATCH,
                       label=f"{other} (hatched, the model's colour)")],
        fontsize="small",
    )
    for model in models_in(per_steps):
        grp = per_steps[per_steps["model"] == model]
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
    drawn = [name for name, side in ((ref, "reference"), (other, "other")) if errors[side] is not None]
    caption = (
        f"Per-step GPU energy (slope of the steps fit) of each model on {ref} and {other} (left) and the "
        f"ratio of the mean energy per generation at each step count (right; runs per point in the legend). "
        f"Left, {ref}'s bars are grey and {other}'s hatched in the model's colour."
    )
    if drawn:
        caption += (f" Error bars: the slope's 95 % interval ({' and '.join(drawn)}; Student t on the "
                    f"standard error of the line through the step counts' means, n - 2 degrees of freedom).")
    else:
        caption += (" The slopes have no error bars: the comparison holds no interval of them "
                    "(tables/steps_fit.csv gives each slope's interval).")
    caption += " Data: tables/steps_fit.csv (left) and tables/steps_summary.csv (right)."
    if note:
        caption += f" {note}"
        ax_ratio.set_title(note, fontsize="small")
    return save_figure(fig, figures, stem, caption, "comparison")
