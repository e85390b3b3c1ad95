"""The levers experiment's figure: energy reduction against ``none`` (targets marked) and the fraction of the
measured bf16 matmul ceiling reached."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tta_energy.fileio import atomic_path
from tta_energy.levers.experiment import REFERENCE_SPEC
from tta_energy.models import catalogue


def plot_levers(table: pd.DataFrame, path: Path) -> None:
    """Two panels: reduction vs ``none`` at 100 steps batch 1 (targets marked) and fraction of the ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cell = table[(table["steps"] == 100) & (table["waveforms_per_prompt"] == 1)
                 & (table["optimize"] != REFERENCE_SPEC) & table["reduction_vs_none"].notna()]
    runs = table["repeats"].dropna().astype(int)
    n_text = (f"n = {runs.min()}" if runs.min() == runs.max() else f"n = {runs.min()}-{runs.max()}") + \
        " runs per bar, no interval"
    # legends go beside the panels so that no bar is hidden; only configurations with a bar are listed
    fig, axes = plt.subplots(1, 2, figsize=(16, 5), constrained_layout=True)
    if not cell.empty:
        sns.barplot(data=cell, x="model", y="reduction_vs_none", hue="optimize", ax=axes[0],
                    hue_order=sorted(cell["optimize"].unique()), errorbar=None)
        for i, model in enumerate(sorted(cell["model"].unique(), key=list(cell["model"].unique()).index)):
            t = catalogue.entry(model).levers.reduction if model in catalogue.model_names() else None
            if t:
                axes[0].hlines(t, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[0].set_ylabel("energy reduction vs none [x], 100 steps, batch 1")
        axes[0].set_ylim(bottom=0)
        axes[0].set_title(f"whole generation (dashed: target; {n_text})")
        axes[0].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    frac = table[table["fraction_of_ceiling"].notna() & (table["steps"] == 100)
                 & table["optimize"].isin(["none", "graphs", "max"])]
    if not frac.empty:
        frac = frac.assign(config=frac["optimize"] + ", batch " + frac["waveforms_per_prompt"].astype(str))
        sns.barplot(data=frac, x="model", y="fraction_of_ceiling", hue="config", ax=axes[1], errorbar=None)
        ceiling = float(frac["ceiling_flop_per_joule"].median()) / 1e12
        axes[1].set_ylabel("FLOP/J as a fraction of the measured bf16 matmul ceiling")
        axes[1].set_ylim(bottom=0)
        axes[1].set_title(f"against the measured bf16 matmul ceiling ({ceiling:.2f} TFLOP/J), 100 steps")
        axes[1].tick_params(axis="x", rotation=30)
        sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells savefig the format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
