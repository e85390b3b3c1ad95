"""The levers experiment's figure: energy reduction against ``none`` (targets marked) and the fraction of the
measured bf16 matmul ceiling reached by the study default and the best configurations (targets marked)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tta_energy.fileio import atomic_path
from tta_energy.levers.spec import DEFAULT_SPEC, parse_levers
from tta_energy.levers.tables import LEVERS_TABLE
from tta_energy.models import catalogue

#: the ceiling panel's bars (``role`` in :func:`tta_energy.levers.report.ceiling_bars`)
STUDY_DEFAULT_BAR = "study default (none), batch 1"
BEST_LOSSLESS_BAR = "best lossless"
BEST_ANY_BAR = "best at any precision (changes the output)"
#: how the ceiling panel tells its bars apart, each in its model's colour: (alpha, hatch) per role
ROLE_STYLES = {STUDY_DEFAULT_BAR: (0.4, ""), BEST_LOSSLESS_BAR: (1.0, ""), BEST_ANY_BAR: (1.0, "xxx")}


#: the order of the reduction panel's configurations: the study default first, then each family (its first
#: lever) from the least to the most changed, each followed by its variants (``graphs,tf32`` after ``graphs``)
FAMILY_ORDER = (DEFAULT_SPEC, "graphs", "compile", "compile-graphs", "max")


def configuration_order(specs: list[str]) -> list[str]:
    """``specs`` in the reduction panel's order (:data:`FAMILY_ORDER`, other families last, then fewer levers
    first), so that a family's bars stand together and take neighbouring colours of the palette."""
    def key(spec: str) -> tuple[int, int, str]:
        items = parse_levers(spec).items
        family = FAMILY_ORDER.index(items[0]) if items[0] in FAMILY_ORDER else len(FAMILY_ORDER)
        return family, len(items), spec

    return sorted(dict.fromkeys(specs), key=key)


def plot_levers(cell: pd.DataFrame, path: Path, steps: int, batch: int, ceiling: pd.DataFrame) -> None:
    """Two panels: reduction vs ``none`` at the summary's ``steps`` and ``batch``, one bar per row of ``cell``
    (each configuration from its own run: :func:`tta_energy.levers.report.reduction_bars`; targets marked),
    and the fraction of the ceiling of the bars ``ceiling``
    (the study default, the best lossless and the best at any precision per model, labelled, targets
    marked: :func:`tta_energy.levers.report.ceiling_bars`), each in its model's colour; models by their
    catalogue labels, in the catalogue's order, and the GPU (``gpu_name`` of ``cell``) in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.patches import Patch

    from tta_energy.analysis.plots.common import model_colour, model_label

    # legends go beside the panels so that no bar is hidden; only configurations with a bar are listed
    fig, axes = plt.subplots(1, 2, figsize=(16, 5), constrained_layout=True)
    if not cell.empty:
        # a bar is one run's mean over its repeats (generations) of the cell
        low, high = int(cell["n_runs"].min()), int(cell["n_runs"].max())
        n = f"{low}" if low == high else f"{low}-{high}"
        n_text = f"n = {n} repeats per bar, each from one run, no interval"
        # up to 20 configurations in distinct colours (tab20: each hue in a dark and a light shade)
        order = configuration_order(list(cell["optimize"]))
        palette = dict(zip(order, sns.color_palette("tab20", max(len(order), 1)), strict=False))
        models = catalogue.ordered(cell["model"])
        sns.barplot(data=cell, x="model", y="reduction_vs_none", hue="optimize", ax=axes[0], order=models,
                    hue_order=order, palette=palette, errorbar=None)
        for i, model in enumerate(models):
            t = catalogue.entry(model).levers.reduction if model in catalogue.model_names() else None
            if t:
                axes[0].hlines(t, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[0].set_xticks(range(len(models)), [model_label(m) for m in models], rotation=30, ha="right")
        axes[0].set_xlabel("model")
        axes[0].set_ylabel(f"energy reduction vs none [x], {steps} steps, batch {batch}")
        axes[0].set_ylim(bottom=0)
        axes[0].set_title(f"whole generation (dashed: target)\n{n_text}")
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, title="configuration")
    if not ceiling.empty:
        models = catalogue.ordered(ceiling["model"])
        roles = [r for r in (STUDY_DEFAULT_BAR, BEST_LOSSLESS_BAR, BEST_ANY_BAR) if r in set(ceiling["role"])]
        width = 0.8 / len(roles)
        for j, role in enumerate(roles):
            sub = ceiling[ceiling["role"] == role]
            xs = [models.index(m) + (j - (len(roles) - 1) / 2) * width for m in sub["model"]]
            alpha, hatch = ROLE_STYLES[role]
            # each bar in its model's colour (grey outside the catalogue); the role by shade and hatching, a
            # light bar outlined in the full colour, a hatched one hatched in white
            colours = [model_colour(m) or (0.5, 0.5, 0.5) for m in sub["model"]]
            drawn = axes[1].bar(xs, sub["fraction_of_ceiling"], width, color=[(*c, alpha) for c in colours],
                                hatch=hatch, edgecolor="white" if hatch else colours, linewidth=1)
            axes[1].bar_label(drawn, labels=list(sub["label"]), rotation=90, fontsize=6, padding=2)
        for i, model in enumerate(models):
            target = float(ceiling.loc[ceiling["model"] == model, "target"].iloc[0])
            axes[1].hlines(target, i - 0.45, i + 0.45, colors="k", linestyles="--")
        axes[1].set_xticks(range(len(models)), [model_label(m) for m in models], rotation=30, ha="right")
        axes[1].set_xlabel("model")
        axes[1].set_ylabel("FLOP/J as a fraction of the measured bf16 matmul ceiling")
        axes[1].set_ylim(0, max(1.0, float(ceiling["fraction_of_ceiling"].max()) * 1.15))
        axes[1].set_title("against the bf16 matmul ceiling measured in each run (dashed: target)\n"
                          f"any batch size (b), {steps} steps unless labelled")
        keys = [Patch(facecolor=(0.3, 0.3, 0.3, ROLE_STYLES[role][0]), hatch=ROLE_STYLES[role][1],
                      edgecolor="white" if ROLE_STYLES[role][1] else (0.3, 0.3, 0.3), label=role)
                for role in roles]
        axes[1].legend(handles=keys, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7,
                       title="bar (in the model's colour)")
    gpus = sorted(set(cell["gpu_name"].dropna().astype(str))) if "gpu_name" in cell.columns else []
    fig.suptitle(f"Levers on {' and '.join(gpus) if gpus else 'a GPU the rows do not name'} "
                 f"(data: {LEVERS_TABLE} beside this figure)")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, suffix=path.suffix) as tmp:  # the suffix tells savefig the format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
