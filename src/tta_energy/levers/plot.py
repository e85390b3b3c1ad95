"""The levers experiment's figure: energy reduction against ``none`` (targets marked) and the fraction of the
measured bf16 matmul ceiling reached."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from tta_energy.fileio import atomic_path
from tta_energy.levers.spec import REFERENCE_SPEC
from tta_energy.models import catalogue


def reduction_bars(table: pd.DataFrame, steps: int, batch: int, runs: Mapping[str, str]) -> pd.DataFrame:
    """The rows the reduction panel draws: at ``steps`` and ``batch``, each configuration of a model from the
    one run ``runs`` names for it (the run the summary reports), one row per bar."""
    cell = table[(table["steps"] == steps) & (table["waveforms_per_prompt"] == batch)
                 & (table["optimize"] != REFERENCE_SPEC) & table["reduction_vs_none"].notna()]
    return cell[cell["run_id"].astype(str) == cell["model"].map(runs)]


def plot_levers(table: pd.DataFrame, path: Path, steps: int, batch: int, runs: Mapping[str, str]) -> None:
    """Two panels: reduction vs ``none`` at the summary's ``steps`` and ``batch``, from the run per model the
    summary reports (``runs``; targets marked), and the fraction of the ceiling at ``steps``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cell = reduction_bars(table, steps, batch, runs)
    # legends go beside the panels so that no bar is hidden; only configurations with a bar are listed
    fig, axes = plt.subplots(1, 2, figsize=(16, 5), constrained_layout=True)
    if not cell.empty:
        # a bar is one run's mean over its repeats (generations) of the cell
        low, high = int(cell["repeats"].min()), int(cell["repeats"].max())
        n = f"{low}" if low == high else f"{low}-{high}"
        n_text = f"n = {n} repeats per bar, one run per model, no interval"
        sns.barplot(data=cell, x="model", y="reduction_vs_none", hue="optimize", ax=axes[0],
                    hue_order=sorted(cell["optimize"].unique()), errorbar=None)
        for i, model in enumerate(sorted(cell["model"].unique(), key=list(cell["model"].unique()).index)):
            t = catalogue.entry(model).levers.reduction if model in catalogue.model_names() else None
            if t:
                axes[0].hlines(t, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[0].set_ylabel(f"energy reduction vs none [x], {steps} steps, batch {batch}")
        axes[0].set_ylim(bottom=0)
        axes[0].set_title(f"whole generation (dashed: target)\n{n_text}")
        axes[0].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    frac = table[table["fraction_of_ceiling"].notna() & (table["steps"] == steps)
                 & table["optimize"].isin(["none", "graphs", "max"])]
    if not frac.empty:
        frac = frac.assign(config=frac["optimize"] + ", batch " + frac["waveforms_per_prompt"].astype(str))
        sns.barplot(data=frac, x="model", y="fraction_of_ceiling", hue="config", ax=axes[1], errorbar=None)
        ceiling = float(frac["ceiling_flop_per_joule"].median()) / 1e12
        axes[1].set_ylabel("FLOP/J as a fraction of the measured bf16 matmul ceiling")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title(f"against the measured bf16 matmul ceiling ({ceiling:.2f} TFLOP/J), {steps} steps")
        axes[1].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells savefig the format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
