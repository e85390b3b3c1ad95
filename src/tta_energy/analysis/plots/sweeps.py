"""The sweeps beyond the study: duration, guidance, precision."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from tta_energy.analysis.plots.common import (
    energy_errorbar,
    interval_errors,
    label_bar,
    mark_not_measured,
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
from tta_energy.analysis.summaries import DTYPE_ORDER

_DTYPE_HATCHES = {"float32": "", "float16": "//", "bfloat16": ".."}


def _ignored_lengths(duration: pd.DataFrame) -> dict[str, float]:
    """Models whose computed latent length does not follow the requested duration: model -> latent seconds."""
    out = {}
    for model, grp in duration.groupby("model", sort=False):
        latent = grp["latent_seconds"].dropna().unique()
        if len(latent) == 1 and not np.allclose(grp["latent_seconds"], grp["duration_s"]):
            out[model] = float(latent[0])
    return out


def plot_parameter_sweeps(
    duration: pd.DataFrame,
    guidance: pd.DataFrame,
    precision: pd.DataFrame,
    figures: str | Path,
    label: str,
) -> str | None:
    """The sweeps beyond the study from :func:`summaries.parameter_summary` tables, in four panels.

    Energy per generation vs the requested duration (with the latent length of models that ignore the
    request) and per second of audio returned; guidance on vs off; float32 / float16 / bfloat16 (log y).
    An empty table leaves its panel(s) saying "not measured"; all three empty: the figure is skipped.
    """
    stem = f"new-sweeps-{slug(label)}"
    if duration.empty and guidance.empty and precision.empty:
        skip_figure(figures, stem, f"{label}: no duration, guidance or precision rows", "new")
        return None
    tables = [duration, guidance, precision]
    if skipped_without_gpu_energy(pd.concat([t["gpu_energy_J_mean"] for t in tables if not t.empty]), figures,
                                  stem, label, "new"):
        return None
    # a sweep measured without a GPU has no energy to draw: its panels say "not measured"
    duration, guidance, precision = (
        t if not t.empty and t["gpu_energy_J_mean"].notna().any() else t.iloc[0:0] for t in tables
    )
    use_style()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    (ax_dur, ax_per_s), (ax_cfg, ax_dtype) = axes
    ignored: dict[str, float] = {}

    if duration.empty:
        mark_not_measured(ax_dur, "Requested duration")
        mark_not_measured(ax_per_s, "Energy per second of audio returned")
    else:
        ignored = _ignored_lengths(duration)
        for model in models_in(duration):
            grp = duration[duration["model"] == model].sort_values("duration_s")
            colour = model_colour(model)
            name = model_label(model)
            if model in ignored:
                name += f" (computes {ignored[model]:.2f} s)"
            energy_errorbar(
                ax_dur,
                grp["duration_s"],
                grp,
                color=colour,
                label=name,
            )
            ax_per_s.plot(
                grp["duration_s"], grp["gpu_energy_J_per_audio_s_mean"], marker="o", color=colour, label=name
            )
            if model in ignored:
                last = grp.iloc[-1]
                ax_dur.annotate(
                    f"{ignored[model]:.2f} s of latents\n"
                    + ("whatever is asked" if len(grp) > 1 else f"when {last['duration_s']:g} s is asked"),
                    (last["duration_s"], last["gpu_energy_J_mean"]),
                    textcoords="offset points",
                    xytext=(-6, 8),
                    ha="right",
                    fontsize=7,
                    color=colour,
                )
        ticks = sorted(duration["duration_s"].unique())
        for ax in (ax_dur, ax_per_s):
            ax.set_xscale("log")
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("requested duration [s] (log)")
        ax_dur.set_ylim(0, 1.25 * float(np.nanmax(duration["gpu_energy_J_mean"])))
        ax_dur.set_ylabel("GPU energy per generation [J]")
        ax_dur.set_title("Requested duration")
        ax_dur.legend(fontsize="small", loc="lower center", ncol=2)
        ax_per_s.set_yscale("log")
        plain_log_y(ax_per_s)
        ax_per_s.set_ylabel("GPU energy per second of audio returned [J/s] (log)")
        ax_per_s.set_title("Energy per second of audio returned")

    if guidance.empty:
        mark_not_measured(ax_cfg, "Classifier-free guidance")
    else:
        models = models_in(guidance)
        for i, model in enumerate(models):
            grp = guidance[guidance["model"] == model]
            colour = model_colour(model)
            on = grp[grp["cfg"].fillna(False).astype(bool)]
            off = grp[~grp["cfg"].fillna(True).astype(bool)]
            for offset, part, hatch in ((-0.2, on, ""), (0.2, off, "//")):
                if part.empty:
                    continue
                row = part.iloc[0]
                ax_cfg.bar(
                    i + offset,
                    row["gpu_energy_J_mean"],
                    0.38,
                    yerr=interval_errors(
                        pd.Series([row["gpu_energy_J_mean"]]),
                        pd.Series([row["gpu_energy_J_ci_low"]]),
                        pd.Series([row["gpu_energy_J_ci_high"]]),
                    ),
                    color=colour,
                    hatch=hatch,
                    edgecolor="white" if hatch else colour,
                    alpha=1.0 if not hatch else 0.6,
                )
                text = f"scale {row['guidance_scale']:g}"
                if hatch and not pd.isna(row["ratio_to_reference"]):
                    text = f"x{row['ratio_to_reference']:.2f}"
                label_bar(ax_cfg, i + offset, row["gpu_energy_J_mean"], text)
        ax_cfg.set_xticks(np.arange(len(models)), [model_label(m) for m in models])
        ax_cfg.set_ylabel("GPU energy per generation [J]")
        ax_cfg.set_title("Classifier-free guidance: on (solid) vs off (hatched, scale 1)")
        ax_cfg.margins(y=0.12)

    if precision.empty:
        mark_not_measured(ax_dtype, "Precision")
    else:
        models = models_in(precision)
        dtypes = [d for d in DTYPE_ORDER if d in set(precision["dtype"])] + sorted(
            set(precision["dtype"]) - set(DTYPE_ORDER)
        )
        width = 0.8 / len(dtypes)
        for i, model in enumerate(models):
            grp = precision[precision["model"] == model].set_index("dtype")
            for j, dtype in enumerate(dtypes):
                if dtype not in grp.index:
                    continue
                row = grp.loc[dtype]
                x = i + (j - (len(dtypes) - 1) / 2) * width
                ax_dtype.bar(
                    x,
                    row["gpu_energy_J_mean"],
                    width * 0.95,
                    color=model_colour(model),
                    hatch=_DTYPE_HATCHES.get(dtype, "xx"),
                    edgecolor="white",
                )
                if not pd.isna(row["ratio_to_reference"]) and not row["is_reference"]:
                    label_bar(ax_dtype, x, row["gpu_energy_J_mean"], f"x{row['ratio_to_reference']:.2f}")
        ax_dtype.set_xticks(np.arange(len(models)), [model_label(m) for m in models])
        ax_dtype.set_yscale("log")
        plain_log_y(ax_dtype)
        ax_dtype.set_ylabel("GPU energy per generation [J] (log)")
        ax_dtype.set_title("Precision (ratios to float32 above the bars)")
        ax_dtype.legend(
            handles=[
                Patch(facecolor="0.55", hatch=_DTYPE_HATCHES.get(d, "xx"), edgecolor="white", label=d)
                for d in dtypes
            ],
            fontsize="small",
        )
        ax_dtype.margins(y=0.12)

    caption = (
        f"{label}: GPU energy of one generation (mean of the runs, 95 % Student-t interval where n > 1) "
        f"against the requested "
        f"duration, and per second of audio returned (top); with classifier-free guidance on at the "
        f"model's scale and off (scale 1; the ratio off/on above the bar), and in float32, float16 and "
        f"bfloat16 (log scale; ratios to float32) (bottom)."
    )
    n_runs = pd.concat([t["n_runs"] for t in (duration, guidance, precision) if not t.empty])
    fig.suptitle(
        f"Beyond the study: duration, guidance, precision — {label} ({n_label(n_runs)} runs per point"
        + ("; no error bars)" if n_runs.max() <= 1 else "; bars: 95 % t interval)")
    )
    if n_runs.max() <= 1:
        caption += " One run per point (n = 1): no error bars."
    else:
        caption += f" Runs per point: {n_label(n_runs)}; points with n = 1 have no error bar."
    if ignored:
        caption += " " + " ".join(
            f"{model_label(m)} computes {s:.2f} s of latents "
            + (
                "whatever duration is asked."
                if (duration["model"] == m).sum() > 1
                else "(one duration measured)."
            )
            for m, s in ignored.items()
        )
    return save_figure(fig, figures, stem, caption, "new")
