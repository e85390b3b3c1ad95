"""What every figure shares: labels, colours, markers, saving and the caption manifest behind ``index.md``."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from tta_energy.analysis.summaries import DATASET_LABELS  # noqa: E402,F401  (re-exported)
from tta_energy.models import catalogue  # noqa: E402

MANIFEST = "manifest.json"
#: the palette models take their colours from, in catalogue order (it repeats beyond its 10 colours)
MODEL_PALETTE = "colorblind"
STEP_MARKERS: dict[int, str] = {10: "o", 25: "s", 50: "D", 100: "^", 150: "<", 200: "X"}
#: The study's "fad" is FAD-inf; the quality module's tables name plain FAD "fad" and FAD-inf "fad_inf".
METRIC_LABELS = {
    "clap": "CLAP score (higher is better)",
    "fad": "FAD / the study's FAD-inf (lower is better)",
    "fad_inf": "FAD-inf (lower is better)",
    "fad_inf_without_replacement": "FAD-inf, subsets without replacement (lower is better)",
}


def model_label(model: str) -> str:
    """How figures print ``model``: its catalogue label (plugins' models included), else the name."""
    return catalogue.label(model)


def model_colour(model: str) -> tuple[float, float, float] | None:
    """The colour ``model`` keeps in every figure: the palette's colour at its catalogue position (the
    built-in models first, then the plugins'); None (matplotlib's next colour) outside the catalogue."""
    names = catalogue.model_names()
    if model not in names:
        return None
    palette = sns.color_palette(MODEL_PALETTE)
    return tuple(palette[names.index(model) % len(palette)])  # type: ignore[return-value]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --------------------------------------------------------------------------------------------------------
# Saving and the manifest


def _manifest_path(figures: Path) -> Path:
    return figures / MANIFEST


def read_manifest(figures: str | Path) -> dict[str, dict[str, str]]:
    path = _manifest_path(Path(figures))
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _record(figures: Path, stem: str, entry: dict[str, str]) -> None:
    manifest = read_manifest(figures)
    manifest[stem] = entry
    tmp = _manifest_path(figures).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, _manifest_path(figures))


def save_figure(fig: plt.Figure, figures: str | Path, stem: str, caption: str, group: str = "") -> str:
    """Write ``<stem>.pdf`` and ``<stem>.png`` (each atomically) and record the caption; closes ``fig``."""
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    for ext in ("pdf", "png"):
        tmp = figures / f".{stem}.tmp.{ext}"
        # constrained layout already fits the figure: no extra "tight" drawing pass per file
        fig.savefig(tmp, format=ext, dpi=110, metadata={"CreationDate": None} if ext == "pdf" else None)
        os.replace(tmp, figures / f"{stem}.{ext}")
    plt.close(fig)
    _record(figures, stem, {"caption": caption, "group": group, "status": "drawn"})
    return stem


#: Why a figure of GPU energies is not drawn for rows measured without a GPU (their energies are NaN).
NO_GPU_ENERGY = "no GPU energy in these runs (measured without a GPU: NaN, never 0)"


def skipped_without_gpu_energy(energies: pd.Series, figures: str | Path, stem: str, label: str,
                               group: str) -> bool:
    """True, the figure recorded as skipped, when none of ``energies`` was measured (rows of a CPU run)."""
    if pd.to_numeric(energies, errors="coerce").notna().any():
        return False
    skip_figure(figures, stem, f"{label}: {NO_GPU_ENERGY}", group)
    return True


def skip_figure(figures: str | Path, stem: str, reason: str, group: str = "") -> None:
    """Record that a figure could not be drawn, and why (shown in ``index.md``)."""
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    _record(figures, stem, {"caption": reason, "group": group, "status": "skipped"})
    print(f"figure {stem} not drawn: {reason}")


def use_style() -> None:
    """The figures' one look (seaborn's white grid, paper context)."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


def models_in(summary: pd.DataFrame) -> list[str]:
    """The models of ``summary``, in the catalogue's order (every figure lists them alike)."""
    present = set(summary["model"])
    return catalogue.ordered(present)


def mark_not_measured(ax: plt.Axes, title: str) -> None:
    """An empty panel that says so, under ``title``."""
    ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)


def plain_log_y(ax: plt.Axes) -> None:
    """Plain numbers on a log y axis: every decade and its 2s and 5s (20, 50, 200, 500, ...)."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def label_bar(ax: plt.Axes, x: float, y: float, text: str) -> None:
    """``text`` just above the point (x, y) of a bar."""
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)


def n_label(n_values: pd.Series) -> str:
    """``n = 5`` or ``n = 2-5`` for the runs behind a line's points."""
    n = n_values.dropna().astype(int)
    if n.empty:
        return "n = 0"
    return f"n = {n.min()}" if n.min() == n.max() else f"n = {n.min()}-{n.max()}"


def interval_errors(mean: pd.Series, low: pd.Series, high: pd.Series) -> np.ndarray:
    """Asymmetric error bars from an interval; zero (no bar) where the interval is missing (n = 1)."""
    below = (mean - low).fillna(0).clip(lower=0)
    above = (high - mean).fillna(0).clip(lower=0)
    return np.vstack([below.to_numpy(), above.to_numpy()])


def energy_errorbar(ax: plt.Axes, x: pd.Series, rows: pd.DataFrame, **style: Any) -> None:
    """``gpu_energy_J_mean`` of ``rows`` against ``x``, its 95 % interval as error bars (none for n = 1)."""
    mean = rows["gpu_energy_J_mean"]
    yerr = interval_errors(mean, rows["gpu_energy_J_ci_low"], rows["gpu_energy_J_ci_high"])
    ax.errorbar(x, mean, yerr=yerr, marker="o", capsize=3, **style)


def circle_warm_means(ax: plt.Axes, summary: pd.DataFrame, x: str, y: str) -> bool:
    """Circle the means that include the first call of one of the study's scripts (its CUDA warm-up, which
    the study never discarded; ``first_generation_included``); True when there was one to circle."""
    if "first_generation_included" not in summary.columns:
        return False
    warm = summary[summary["first_generation_included"].astype(bool)]
    if warm.empty:
        return False
    ax.scatter(
        warm[x],
        warm[y],
        s=140,
        facecolors="none",
        edgecolors="black",
        linewidths=1.2,
        zorder=4,
        label="mean includes the study's warm-up call",
    )
    return True


def label_front(ax: plt.Axes, points: list[tuple[str, float, float]], dx: float) -> None:
    """Name the points of a Pareto front (text, x, y) in dark red, ``dx`` points to their right and
    alternately above and below them, so that neighbours' labels do not overlap."""
    for k, (text, x, y) in enumerate(points):
        ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, 5 if k % 2 == 0 else -11),
            fontsize=7,
            color="darkred",
        )
