"""How busy the GPU was and how the host behaved (the rows' host diagnostics)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from tta_energy.analysis.compare import platform_label
from tta_energy.analysis.plots.common import (
    STEP_MARKERS,
    interval_errors,
    model_colour,
    model_label,
    models_in,
    plain_log_y,
    save_figure,
    skip_figure,
    use_style,
)

HOST_CAPTION = (
    "Left: energy per denoiser call of the denoising phase against the share of NVML's utilisation "
    "samples in which a kernel ran (one point per generation with host diagnostics, marker = step count; "
    "large markers: the model's mean busy fraction with its 95 % t interval). Models that leave the GPU "
    "mostly idle are launch-bound: the host paces them and their energy is near-idle power x host-paced "
    "time. Right: the generating process's CPU time / wall time. It is about 1 whenever the host thread "
    "waits for the GPU by spinning (CUDA synchronisation's default), so it shows that one core was held "
    "for the whole generation, not how much of that time was useful host work (launches, Python) versus "
    "waiting."
)
#: where the figure's numbers come from ({rows}: which run rows were drawn)
HOST_SOURCES = (
    "Large markers and the legend's n and power: figures/tables/host_summary.csv; small markers and the "
    "right panel: {rows} with host diagnostics (`gpu_busy_fraction`, "
    "`energy_denoising_J` / `denoiser_calls`, `cpu_time_s` / `wall_s`)."
)


def _platforms(rows: pd.DataFrame) -> str:
    """The platforms (``tta-energy H200``) of ``rows``, joined with " + " when there are several."""
    if not {"source", "gpu_name"} <= set(rows.columns):
        return "unknown platform"
    pairs = rows[["source", "gpu_name"]].astype(str).drop_duplicates().itertuples(index=False)
    return " + ".join(sorted(platform_label(source, gpu) for source, gpu in pairs))


def plot_host_diagnostics(rows: pd.DataFrame, summary: pd.DataFrame, figures: str | Path,
                          label: str = "") -> str | None:
    """Energy per denoiser call against the GPU busy fraction, and the CPU time / wall time per model.

    ``rows``: :func:`.summaries.host_rows`; ``summary``: :func:`.summaries.host_summary` of the same rows;
    ``label`` names the platform in the title and caption (default: the rows' source and GPU)."""
    stem = "host-busy-energy"
    if rows.empty:
        skip_figure(figures, stem, "no generation carries host diagnostics (cpu_time_s, gpu_busy_fraction)",
                    "host")
        return None
    label = label or _platforms(rows)
    use_style()
    fig, (ax, ax_cpu) = plt.subplots(1, 2, figsize=(12, 5.6), layout="constrained",
                                     gridspec_kw={"width_ratios": [3, 2]})
    models = models_in(rows)
    for model in models:
        grp = rows[rows["model"] == model]
        colour = model_colour(model)
        for steps, at in grp.groupby("steps"):
            ax.scatter(at["gpu_busy_fraction"], at["denoising_J_per_call"], color=colour, alpha=0.55, s=22,
                       marker=STEP_MARKERS.get(int(steps), "P"), linewidths=0)
        s = summary[summary["model"] == model]
        if not s.empty:
            xerr = interval_errors(s["gpu_busy_fraction_mean"], s["gpu_busy_fraction_ci_low"],
                                   s["gpu_busy_fraction_ci_high"])
            ax.errorbar(s["gpu_busy_fraction_mean"], s["denoising_J_per_call_mean"], xerr=xerr, marker="o",
                        ms=9, mec="black", color=colour, capsize=3, ls="none",
                        label=f"{model_label(model)} (n = {int(s['n_generations'].iloc[0])}, "
                              f"{s['power_W_mean'].iloc[0]:.0f} W)")
    ax.set_xlim(0, 1)
    ax.set_yscale("log")
    plain_log_y(ax)
    ax.set_xlabel("GPU busy fraction (share of utilisation samples with a kernel running)")
    ax.set_ylabel("GPU energy per denoiser call, denoising phase [J]")
    ax.set_title("Energy per denoiser call vs how busy the GPU was")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize="small",
               title="model (generations with diagnostics, mean GPU power)", title_fontsize="small")
    present = sorted(int(s) for s in rows["steps"].unique())
    ax.legend(handles=[Line2D([], [], marker=STEP_MARKERS.get(s, "P"), color="grey", ls="none", label=str(s))
                       for s in present], fontsize="x-small", loc="lower right", title="steps",
              title_fontsize="x-small", ncols=2)
    y = np.arange(len(models))
    for i, model in enumerate(models):
        ratio = rows.loc[rows["model"] == model, "cpu_time_per_wall"]
        jitter = np.random.default_rng(i).uniform(-0.15, 0.15, len(ratio))
        ax_cpu.scatter(ratio, i + jitter, color=model_colour(model), s=16, alpha=0.6, linewidths=0)
    ax_cpu.axvline(1.0, color="grey", lw=0.8, ls=":")
    ax_cpu.set_yticks(y, [model_label(m) for m in models])
    ax_cpu.invert_yaxis()
    ax_cpu.set_xlabel("CPU time / wall time of the process")
    ax_cpu.set_title("Host: CPU time of the generating process")
    fig.suptitle(f"How busy the GPU was, and the host — {label}")
    drawn = "the run rows"
    if "experiment" in rows.columns:
        drawn += f" of the {' and '.join(sorted(rows['experiment'].astype(str).unique()))} sweep"
    caption = f"{label}: {HOST_CAPTION} {HOST_SOURCES.format(rows=drawn)}"
    return save_figure(fig, figures, stem, caption, "host")
