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
#: how far apart (in decades of the log duration axis) the points of models that coincide are drawn
_DODGE_DECADES = 0.025
#: points within this share of the duration panel's height of each other coincide
_COINCIDE_SHARE = 0.03


def _ignored_lengths(duration: pd.DataFrame) -> dict[str, float]:
    """Models whose computed latent length does not follow the requested duration: model -> latent seconds."""
    out = {}
    for model, grp in duration.groupby("model", sort=False):
        latent = grp["latent_seconds"].dropna().unique()
        if len(latent) == 1 and not np.allclose(grp["latent_seconds"], grp["duration_s"]):
            out[model] = float(latent[0])
    return out


def _coinciding(duration: pd.DataFrame, ignored: dict[str, float], y_span: float) -> list[list[str]]:
    """Groups of two or more models that compute the same latent length at the same requested durations
    with mean energies within ``_COINCIDE_SHARE`` of ``y_span``: drawn at one spot, one would hide the
    other (Tango and Tango 2)."""
    groups: dict[tuple[float, tuple[float, ...]], list[str]] = {}
    for model in models_in(duration):
        if model in ignored:
            durations = tuple(sorted(duration.loc[duration["model"] == model, "duration_s"]))
            groups.setdefault((round(ignored[model], 3), durations), []).append(model)
    out = []
    for members in groups.values():
        energies = np.array([duration[duration["model"] == m].sort_values("duration_s")["gpu_energy_J_mean"]
                             for m in members])
        if len(members) > 1 and np.all(np.ptp(energies, axis=0) <= _COINCIDE_SHARE * y_span):
            out.append(members)
    return out


def _row_errors(row: pd.Series) -> np.ndarray:
    """The 95 % interval of one summary row as a bar's error bar (none with one run)."""
    return interval_errors(
        pd.Series([row["gpu_energy_J_mean"]]),
        pd.Series([row["gpu_energy_J_ci_low"]]),
        pd.Series([row["gpu_energy_J_ci_high"]]),
    )


def _label_above(ax: plt.Axes, x: float, row: pd.Series, text: str) -> None:
    """``text`` upright (turned 90°) just above a bar and its error bar: neighbouring bars' labels stay
    apart however narrow the bars."""
    mean, high = row["gpu_energy_J_mean"], row["gpu_energy_J_ci_high"]
    top = high if pd.notna(high) and high > mean else mean
    ax.annotate(text, (x, top), textcoords="offset points", xytext=(0, 3), ha="center", va="bottom",
                rotation=90, fontsize=7)


def _model_ticks(ax: plt.Axes, models: list[str]) -> None:
    """Model names under the bar groups, slanted so that long names do not run into each other."""
    ax.set_xticks(np.arange(len(models)), [model_label(m) for m in models], rotation=25, ha="right",
                  rotation_mode="anchor")


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
    fig = plt.figure(figsize=(12, 9.5), layout="constrained")
    # a row each, so that the top row's legend goes above its panels and under the title
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.08, 1])
    ax_dur, ax_per_s = top.subplots(1, 2)
    ax_cfg, ax_dtype = bottom.subplots(1, 2)
    ignored: dict[str, float] = {}
    coinciding: list[list[str]] = []

    if duration.empty:
        mark_not_measured(ax_dur, "Requested duration")
        mark_not_measured(ax_per_s, "Energy per second of audio returned")
    else:
        ignored = _ignored_lengths(duration)
        y_top = 1.25 * float(np.nanmax(duration["gpu_energy_J_mean"]))
        coinciding = _coinciding(duration, ignored, y_top)
        # models that would hide one another are drawn a little apart along x (a factor: the axis is log)
        shift = {
            model: 10 ** ((j - (len(group) - 1) / 2) * _DODGE_DECADES)
            for group in coinciding
            for j, model in enumerate(group)
        }
        noted: set[str] = set()
        for model in models_in(duration):
            grp = duration[duration["model"] == model].sort_values("duration_s")
            colour = model_colour(model)
            name = model_label(model)
            if model in ignored:
                name += f" (computes {ignored[model]:.2f} s)"
            x = grp["duration_s"] * shift.get(model, 1.0)
            energy_errorbar(ax_dur, x, grp, color=colour, label=name)
            ax_per_s.plot(x, grp["gpu_energy_J_per_audio_s_mean"], marker="o", color=colour, label=name)
            if model in ignored and model not in noted:
                # one note for models drawn at one spot
                group = next((g for g in coinciding if model in g), [model])
                noted.update(group)
                last = grp["duration_s"].iloc[-1]
                at_last = duration[duration["model"].isin(group) & (duration["duration_s"] == last)]
                who = "" if len(group) == 1 else " and ".join(model_label(m) for m in group) + ":\n"
                ax_dur.annotate(
                    f"{who}{ignored[model]:.2f} s of latents\n"
                    + ("whatever is asked" if len(grp) > 1 else f"when {last:g} s is asked"),
                    (last, at_last["gpu_energy_J_mean"].max()),
                    textcoords="offset points",
                    xytext=(-10, 8),
                    ha="right",
                    fontsize=7,
                    color=colour if len(group) == 1 else "0.25",
                )
        ticks = sorted(duration["duration_s"].unique())
        for ax in (ax_dur, ax_per_s):
            ax.set_xscale("log")
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("requested duration [s] (log)")
        ax_dur.set_ylim(0, y_top)
        ax_dur.set_ylabel("GPU energy per generation [J]")
        ax_dur.set_title("Requested duration")
        # one legend for both top panels, above them: inside either it would hide lines
        top.legend(*ax_dur.get_legend_handles_labels(), loc="outside upper center", ncols=4,
                   fontsize="small")
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
                    yerr=_row_errors(row),
                    color=colour,
                    hatch=hatch,
                    edgecolor="white" if hatch else colour,
                    alpha=1.0 if not hatch else 0.6,
                )
                text = f"scale {row['guidance_scale']:g}"
                if hatch and not pd.isna(row["ratio_to_reference"]):
                    text = f"x{row['ratio_to_reference']:.2f}"
                _label_above(ax_cfg, i + offset, row, text)
        _model_ticks(ax_cfg, models)
        ax_cfg.set_ylabel("GPU energy per generation [J]")
        ax_cfg.set_title("Classifier-free guidance: on (solid) vs off (hatched, scale 1)")
        ax_cfg.margins(y=0.2)  # room for the upright labels above the tallest bar

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
                    yerr=_row_errors(row),
                    color=model_colour(model),
                    hatch=_DTYPE_HATCHES.get(dtype, "xx"),
                    edgecolor="white",
                )
                if not pd.isna(row["ratio_to_reference"]) and not row["is_reference"]:
                    _label_above(ax_dtype, x, row, f"x{row['ratio_to_reference']:.2f}")
        _model_ticks(ax_dtype, models)
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
        ax_dtype.margins(y=0.2)

    caption = (
        f"{label}: GPU energy of one generation (mean of the runs, 95 % Student-t interval where n > 1) "
        f"against the requested "
        f"duration, and per second of audio returned (top); with classifier-free guidance on at the "
        f"model's scale and off (scale 1; the ratio off/on above the bar), and in float32, float16 and "
        f"bfloat16 (log scale; ratios to float32) (bottom). Drawn from the run rows of the duration, "
        f"guidance and precision sweeps (`gpu_energy_J`; per second of audio returned: `gpu_energy_J` / "
        f"`audio_seconds`; latent length: `latent_seconds`), averaged per model and setting."
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
        together = {m: g for g in coinciding for m in g}
        sentences = []
        for model, seconds in ignored.items():
            group = together.get(model, [model])
            if model != group[0]:
                continue  # said with the first of its group
            names = " and ".join(model_label(m) for m in group)
            sentences.append(
                f"{names} {'computes' if len(group) == 1 else 'compute'} {seconds:.2f} s of latents "
                + (
                    "whatever duration is asked."
                    if (duration["model"] == model).sum() > 1
                    else "(one duration measured)."
                )
                + (
                    ""
                    if len(group) == 1
                    else f" Their points would coincide: they are drawn slightly apart along the duration "
                    f"axis ({', '.join(model_label(m) for m in group)} from left to right)."
                )
            )
        caption += " " + " ".join(sentences)
    return save_figure(fig, figures, stem, caption, "new")
