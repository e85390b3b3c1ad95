"""Quality against energy: Pareto fronts and the sanity check."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from tta_energy.analysis.plots.common import (
    DATASET_LABELS,
    METRIC_LABELS,
    MODEL_COLOURS,
    STEP_MARKERS,
    _style,
    model_label,
    save_figure,
    skip_figure,
    slug,
)
from tta_energy.analysis.study_import import CANONICAL_MODELS


def plot_pareto(pareto: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Energy vs CLAP / FAD for each data set, the front highlighted, joined and labelled."""
    stem = f"pareto-{slug(label)}"
    if pareto.empty:
        skip_figure(figures, stem, f"{label}: no quality-experiment energies with scores", "quality")
        return None
    _style()
    datasets = sorted(pareto["dataset"].unique())
    metrics = [m for m in METRIC_LABELS if m in set(pareto["metric"])]
    fig, axes = plt.subplots(
        len(datasets),
        len(metrics),
        figsize=(6.5 * len(metrics), 4.8 * len(datasets) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            sub = pareto[(pareto["dataset"] == dataset) & (pareto["metric"] == metric)]
            for row in sub.itertuples():
                ax.scatter(
                    row.gpu_energy_J_mean,
                    row.score,
                    color=MODEL_COLOURS.get(row.model),
                    marker=STEP_MARKERS.get(int(row.steps), "o"),
                    s=70 if row.pareto_optimal else 40,
                    edgecolors="red" if row.pareto_optimal else "none",
                    linewidths=1.6,
                    zorder=3,
                )
            front = sub[sub["pareto_optimal"]].sort_values("gpu_energy_J_mean")
            ax.plot(front["gpu_energy_J_mean"], front["score"], ls="--", color="red", lw=1.1, zorder=2)
            for k, row in enumerate(front.itertuples()):
                freq = (
                    ""
                    if np.isnan(row.front_frequency) or row.front_frequency >= 0.995
                    else f" ({row.front_frequency:.0%})"
                )
                ax.annotate(
                    f"{model_label(row.model)} {int(row.steps)}{freq}",
                    (row.gpu_energy_J_mean, row.score),
                    textcoords="offset points",
                    xytext=(6, 5 if k % 2 == 0 else -11),
                    fontsize=7,
                    color="darkred",
                )
            ax.set_xscale("log")
            ax.set_xlabel("GPU energy per generation [J] (log)")
            study_fad = metric == "fad" and (sub["source"] == "study").all()  # the study's "fad" is FAD-inf
            ax.set_ylabel(METRIC_LABELS["fad_inf"] if study_fad else METRIC_LABELS.get(metric, metric))
            name = "FAD-inf" if study_fad else metric.upper().replace("_INF", "-inf")
            ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} — {name}")
    handles = [
        plt.Line2D([], [], color=MODEL_COLOURS.get(m), marker="o", ls="", label=model_label(m))
        for m in sorted(pareto["model"].unique(), key=CANONICAL_MODELS.index)
    ]
    handles += [
        plt.Line2D([], [], color="grey", marker=STEP_MARKERS[s], ls="", label=f"{s} steps")
        for s in sorted(pareto["steps"].unique())
        if s in STEP_MARKERS
    ]
    handles.append(plt.Line2D([], [], color="red", ls="--", marker="o", mfc="none", label="Pareto front"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 7), fontsize="small")
    fig.suptitle(f"Energy vs quality, Pareto fronts — {label}")
    caption = (
        f"{label}: each (model, steps) of the quality experiment, mean GPU energy per generation (log x) "
        f"against CLAP (higher is better) and FAD-inf (lower is better) per data set; red edges and the "
        f"dashed line mark the Pareto front, labels give the bootstrap frequency of being on it when "
        f"below 100 %."
    )
    return save_figure(fig, figures, stem, caption, "quality")


def plot_sanity(scores: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Subset vs full-set scores against steps, per model, data set and metric (the sanity check)."""
    stem = f"sanity-scores-{slug(label)}"
    if scores is None or scores.empty or not (scores.get("scope") == "full").any():
        skip_figure(figures, stem, f"{label}: no full-set scores", "quality")
        return None
    _style()
    full = scores[scores["scope"] == "full"]
    panels = full[["metric", "dataset"]].drop_duplicates().sort_values(["metric", "dataset"])
    fig, axes = plt.subplots(
        1, len(panels), figsize=(4.2 * len(panels), 3.8), squeeze=False, layout="constrained"
    )
    for ax, (metric, dataset) in zip(axes[0], panels.itertuples(index=False), strict=True):
        for model in sorted(full["model"].unique()):
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
                        color=MODEL_COLOURS.get(model),
                        label=f"{model_label(model)} {scope}",
                    )
        ax.set_xscale("log")
        ax.set_xlabel("denoising steps (log)")
        ax.set_ylabel(METRIC_LABELS.get("fad_inf" if metric == "fad" else metric, metric))
        ax.set_title(
            f"{DATASET_LABELS.get(dataset, dataset)} — {'FAD-inf' if metric == 'fad' else metric.upper()}"
        )
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Sanity check: 300-caption subset (solid) vs full set (dashed) — {label}")
    caption = (
        f"{label}: scores of the 300-caption subsets (solid) and of the full AudioCaps-test / Clotho-eval "
        f"sets (dashed) against steps; the sanity table gives Pearson r and the slope-interaction p-value."
    )
    return save_figure(fig, figures, stem, caption, "quality")
