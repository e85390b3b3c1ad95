"""The levers experiment's figure: energy reduction against ``none`` (targets marked) and the fraction of the
GPU's ceiling reached."""

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
                 & (table["optimize"] != REFERENCE_SPEC)]
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), constrained_layout=True)
    if not cell.empty:
        sns.barplot(data=cell, x="model", y="reduction_vs_none", hue="optimize", ax=axes[0])
        for i, model in enumerate(sorted(cell["model"].unique(), key=list(cell["model"].unique()).index)):
            t = catalogue.entry(model).levers.reduction if model in catalogue.model_names() else None
            if t:
                axes[0].hlines(t, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[0].set_ylabel("energy reduction vs none (x), 100 steps, batch 1")
        axes[0].set_title("whole generation (dashed: target)")
        axes[0].tick_params(axis="x", rotation=30)
        axes[0].legend(fontsize=7, ncol=2)
    frac = table[table["fraction_of_ceiling"].notna() & (table["steps"] == 100)
                 & table["optimize"].isin(["none", "graphs", "max"])]
    if not frac.empty:
        frac = frac.assign(config=frac["optimize"] + ", batch " + frac["waveforms_per_prompt"].astype(str))
        sns.barplot(data=frac, x="model", y="fraction_of_ceiling", hue="config", ax=axes[1])
        axes[1].set_ylabel("FLOP/J as a fraction of the bf16 matmul ceiling")
        axes[1].set_title("efficiency against the GPU's limit, 100 steps")
        axes[1].tick_params(axis="x", rotation=30)
        axes[1].legend(fontsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells savefig the format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
