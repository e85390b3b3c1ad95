"""Quality against energy: Pareto fronts and the sanity check."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tta_energy.analysis.fronts import A40_POINTS, H200_DEFAULT_POINTS, H200_LEVERS_POINTS
from tta_energy.analysis.plots.common import (
    DATASET_LABELS,
    METRIC_LABELS,
    STEP_MARKERS,
    label_front,
    model_colour,
    model_label,
    n_label,
    save_figure,
    skip_figure,
    skipped_without_gpu_energy,
    slug,
    use_style,
)
from tta_energy.levers.spec import DEFAULT_SPEC
from tta_energy.models import catalogue


def _score_grid(table: pd.DataFrame, width: float, legend_height: float
                ) -> tuple[plt.Figure, np.ndarray, list[str], list[str]]:
    """One panel per (caption set, metric) of ``table``: (fig, axes, datasets, metrics)."""
    use_style()
    datasets = sorted(table["dataset"].unique())
    metrics = [m for m in METRIC_LABELS if m in set(table["metric"])]
    fig, axes = plt.subplots(
        len(datasets),
        len(metrics),
        figsize=(width * len(metrics), 4.8 * len(datasets) + legend_height),
        squeeze=False,
        layout="constrained",
    )
    return fig, axes, datasets, metrics


def _model_and_step_handles(table: pd.DataFrame) -> list:
    """Legend entries: one colour per model, one marker per step count."""
    handles = [
        plt.Line2D([], [], color=model_colour(m), marker="o", ls="", label=model_label(m))
        for m in catalogue.ordered(table["model"].unique())
    ]
    return handles + [
        plt.Line2D([], [], color="grey", marker=STEP_MARKERS[s], ls="", label=f"{s} steps")
        for s in sorted(table["steps"].unique())
        if s in STEP_MARKERS
    ]


def _frequency(front_frequency: float) -> str:
    """A front member's bootstrap frequency of being on the front, as a label's suffix, when below 100 %."""
    return "" if np.isnan(front_frequency) or front_frequency >= 0.995 else f" ({front_frequency:.0%})"


def _configuration(spec: str) -> str:
    """A lever configuration as a figure label's suffix, in plain text: ``(max)``; none for the study's
    default."""
    return "" if spec == DEFAULT_SPEC else f" ({spec})"


def _metric_names(metric: str, study_fad: bool) -> tuple[str, str]:
    """A score panel's y label and the metric's name in its title; ``study_fad``: the panel's "fad" is the
    study's, which is FAD-inf."""
    if metric == "fad" and study_fad:
        return METRIC_LABELS["fad_inf"], "FAD-inf"
    return METRIC_LABELS.get(metric, metric), metric.upper().replace("_INF", "-inf")


def _label_energy_panel(ax: plt.Axes, dataset: str, metric: str, energy: str, study_fad: bool) -> None:
    """Log x axis of GPU energy per ``energy``, y label and title of a (data set, metric) score panel."""
    ax.set_xscale("log")
    ax.set_xlabel(f"GPU energy per {energy} [J] (log)")
    ylabel, name = _metric_names(metric, study_fad)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} — {name}")


def plot_pareto(pareto: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Energy vs CLAP / FAD for each data set, the front highlighted, joined and labelled."""
    stem = f"pareto-{slug(label)}"
    if pareto.empty:
        skip_figure(figures, stem, f"{label}: no quality-experiment energies with scores", "quality")
        return None
    if skipped_without_gpu_energy(pareto["gpu_energy_J_mean"], figures, stem, label, "quality"):
        return None
    pareto = pareto.dropna(subset=["gpu_energy_J_mean"])  # a configuration without a GPU energy has no point
    fig, axes, datasets, metrics = _score_grid(pareto, 6.5, 0.8)
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            sub = pareto[(pareto["dataset"] == dataset) & (pareto["metric"] == metric)]
            for row in sub.itertuples():
                ax.scatter(
                    row.gpu_energy_J_mean,
                    row.score,
                    color=model_colour(row.model),
                    marker=STEP_MARKERS.get(int(row.steps), "o"),
                    s=70 if row.pareto_optimal else 40,
                    edgecolors="red" if row.pareto_optimal else "none",
                    linewidths=1.6,
                    zorder=3,
                )
            front = sub[sub["pareto_optimal"]].sort_values("gpu_energy_J_mean")
            ax.plot(front["gpu_energy_J_mean"], front["score"], ls="--", color="red", lw=1.1, zorder=2)
            label_front(
                ax,
                [
                    (f"{model_label(row.model)} {int(row.steps)}{_frequency(row.front_frequency)}",
                     row.gpu_energy_J_mean, row.score)
                    for row in front.itertuples()
                ],
                dx=6,
            )
            _label_energy_panel(ax, dataset, metric, "generation", study_fad=(sub["source"] == "study").all())
    handles = _model_and_step_handles(pareto)
    handles.append(plt.Line2D([], [], color="red", ls="--", marker="o", mfc="none", label="Pareto front"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize="small")
    fig.suptitle(f"Energy vs quality, Pareto fronts — {label}")
    caption = (
        f"{label}: each (model, steps) of the quality experiment, mean GPU energy per generation (log x) "
        f"against CLAP (higher is better) and FAD-inf (lower is better) per data set; red edges and the "
        f"dashed line mark the Pareto front, labels give the bootstrap frequency of being on it when "
        f"below 100 %. Drawn from this platform's rows of the analysis table pareto.csv (tables/pareto.csv "
        f"under make reproduce)."
    )
    if (pareto["source"] == "study").any():
        caption += (
            " The study's means include the first call of each of its scripts (CUDA warm-up), as its own "
            "fronts did; pareto-h200-vs-a40 leaves it out."
        )
    return save_figure(fig, figures, stem, caption, "quality")


def plot_sanity(scores: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Subset vs full-set scores against steps, per model, data set and metric (the sanity check)."""
    stem = f"sanity-scores-{slug(label)}"
    if scores is not None and "caption_id" in scores.columns:
        # one score per configuration, as the sanity table compares them; per-clip rows are not drawn
        scores = scores[scores["caption_id"].fillna("") == ""]
    if scores is None or scores.empty or not (scores.get("scope") == "full").any():
        skip_figure(figures, stem, f"{label}: no full-set scores", "quality")
        return None
    use_style()
    full = scores[scores["scope"] == "full"]
    drawn = catalogue.ordered(full["model"].unique())  # only models with full-set scores have a comparison
    subset_only = [m for m in catalogue.ordered(scores["model"].unique()) if m not in drawn]
    drawn_names = ", ".join(model_label(m) for m in drawn)
    panels = full[["metric", "dataset"]].drop_duplicates().sort_values(["metric", "dataset"])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, layout="constrained"
    )
    for ax, (metric, dataset) in zip(axes[0], panels.itertuples(index=False), strict=True):
        for model in drawn:
            for scope, ls in (("subset", "-"), ("full", "--")):
                sub = scores[
                    (scores["scope"] == scope)
                    & (scores["model"] == model)
                    & (scores["metric"] == metric)
                    & (scores["dataset"] == dataset)
                ].sort_values("steps")
                if not sub.empty:
                    ax.plot(
                        sub["steps"],
                        sub["value"],
                        ls=ls,
                        marker="o",
                        color=model_colour(model),
                        label=f"{model_label(model)} {scope}",
                    )
        ax.set_xscale("log")
        ticks = sorted(scores["steps"].unique())
        ax.set_xticks(ticks, [str(int(s)) for s in ticks])
        ax.minorticks_off()
        ax.set_xlabel("denoising steps (log)")
        ylabel, name = _metric_names(metric, study_fad=True)  # the sanity check is of the study's scores
        ax.set_ylabel(ylabel)
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} — {name}")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Sanity check of {drawn_names}: 300-caption subset (solid) vs full set (dashed) — {label}")
    only = "the only model" if len(drawn) == 1 else "the models"
    caption = (
        f"{label}, {drawn_names} ({only} with full-set scores): scores of the 300-caption subsets (solid) "
        f"and of the full AudioCaps-test / Clotho-eval sets (dashed) against steps, from the score tables "
        f"the analysis read."
    )
    if subset_only:
        caption += (
            f" {', '.join(model_label(m) for m in subset_only)}: subset scores only, nothing to compare, not "
            f"drawn."
        )
    caption += (
        " Pearson r and the slope-interaction p-value per panel: the analysis table sanity.csv "
        "(tables/sanity.csv under make reproduce)."
    )
    return save_figure(fig, figures, stem, caption, "quality")


#: How each point set of :func:`fronts.platform_fronts` is drawn: marker fill, size, front line style.
_POINT_SETS = {
    A40_POINTS: {"filled": False, "size": 45, "front": ("a40", "0.45", "--")},
    H200_DEFAULT_POINTS: {"filled": True, "size": 45, "front": ("h200_default", "black", "-")},
    H200_LEVERS_POINTS: {"filled": True, "size": 140, "front": ("h200_levers", "red", ":")},
}
_FRONT_NAMES = {
    "a40": "front, A40 (study)",
    "h200_default": "front, H200 study default",
    "h200_levers": "front, H200 default + lossless levers",
}


def plot_platform_fronts(table: pd.DataFrame, figures: str | Path, quality_source: str) -> str | None:
    """The study's quality against A40 and H200 energy per clip, with the three fronts of fronts.py."""
    stem = "pareto-h200-vs-a40"
    if table.empty:
        skip_figure(
            figures, stem, "no (model, steps) with both the study's scores and H200 energies", "quality"
        )
        return None
    fig, axes, datasets, metrics = _score_grid(table, 6.8, 1.2)
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            panel = table[(table["dataset"] == dataset) & (table["metric"] == metric)]
            for point_set, style in _POINT_SETS.items():
                part = panel[panel["point_set"] == point_set]
                for row in part.itertuples():
                    colour = model_colour(row.model)
                    marker = "*" if point_set.endswith("levers") else STEP_MARKERS.get(int(row.steps), "o")
                    if not np.isnan(row.gpu_energy_J_per_clip_ci_low):
                        ax.errorbar(
                            row.gpu_energy_J_per_clip,
                            row.score,
                            xerr=[
                                [row.gpu_energy_J_per_clip - row.gpu_energy_J_per_clip_ci_low],
                                [row.gpu_energy_J_per_clip_ci_high - row.gpu_energy_J_per_clip],
                            ],
                            color=colour,
                            lw=0.8,
                            capsize=2,
                            zorder=2,
                        )
                    ax.scatter(
                        row.gpu_energy_J_per_clip,
                        row.score,
                        marker=marker,
                        s=style["size"],
                        facecolors=colour if style["filled"] else "none",
                        edgecolors=colour,
                        linewidths=1.3,
                        zorder=3,
                    )
                name, colour, ls = style["front"]
                column = f"on_front_{name}"
                members = panel[panel[column].fillna(False).astype(bool)].sort_values("gpu_energy_J_per_clip")
                ax.plot(members["gpu_energy_J_per_clip"], members["score"], ls=ls, color=colour, lw=1.2,
                        zorder=1)
            levers_front = panel[panel["on_front_h200_levers"].fillna(False).astype(bool)].sort_values(
                "gpu_energy_J_per_clip"
            )
            label_front(
                ax,
                [
                    (f"{model_label(row.model)} {int(row.steps)}{_configuration(row.optimize)}",
                     row.gpu_energy_J_per_clip, row.score)
                    for row in levers_front.itertuples()
                ],
                dx=5,
            )
            _label_energy_panel(ax, dataset, metric, "clip", study_fad=True)  # the scores are the study's
    handles = _model_and_step_handles(table)
    handles += [
        plt.Line2D([], [], color="grey", marker="o", mfc="none", ls="", label="A40 (study), hollow"),
        plt.Line2D([], [], color="grey", marker="o", ls="", label="H200 study default, filled"),
        plt.Line2D([], [], color="grey", marker="*", ms=11, ls="", label="H200 lossless levers"),
    ]
    handles += [
        plt.Line2D(
            [], [], color=style["front"][1], ls=style["front"][2], label=_FRONT_NAMES[style["front"][0]]
        )
        for style in _POINT_SETS.values()
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=6, fontsize="small")
    fig.suptitle("The study's quality against energy per clip: A40 (study) and H200 (this project)")
    levers = table[table["point_set"] == H200_LEVERS_POINTS]
    measured = ", ".join(
        f"{model_label(m)} at {'/'.join(str(int(s)) for s in sorted(g['steps'].unique()))} steps"
        for m, g in levers.groupby("model")
    )
    h200_n = table.loc[table["point_set"] == H200_DEFAULT_POINTS, "n_runs"]
    caption = (
        f"Quality: {quality_source}. Energy per 10-s clip: A40 = the study's quality experiment (mean over "
        f"its captions, its first call per script left out); H200 study default = this project's steps "
        f"sweep (the study's prompt, batch 1, {n_label(h200_n)} runs per point, 95 % t interval as "
        f"horizontal bars); stars = the best lossless levers configuration (same output, so the study's "
        f"score holds), only where the levers were measured ({measured or 'none'}; "
        f"{n_label(levers['n_runs'])} runs, no interval; no ratio carried to other step counts). Lines: the "
        f"front of each point set; labels name the H200 front with levers (model, steps and, where not the "
        f"study's default, the levers in parentheses). Membership per configuration: tables/pareto_h200.csv."
    )
    return save_figure(fig, figures, stem, caption, "quality")
