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
from matplotlib import path as mpath  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.container import ErrorbarContainer  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
from matplotlib.transforms import Bbox, offset_copy  # noqa: E402

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
    place_front_labels(fig)
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
    errorbar_clipped_at(ax, x, rows["gpu_energy_J_mean"], rows["gpu_energy_J_ci_low"],
                        rows["gpu_energy_J_ci_high"], None, **style)


#: the legend entry and caption sentence of an interval whose lower end a log axis cannot show
CLIPPED_LABEL = "interval reaches below 0 (bar clipped)"
CLIPPED_SIZE = 70  # the triangle's marker area [points^2]
CLIPPED_CAPTION = (
    " An interval reaching below zero cannot be drawn on a log axis: its bar is clipped at the "
    "bottom of the axis and marked there with a downward triangle."
)


def log_floor(mean: pd.Series, low: pd.Series) -> float:
    """The bottom of a log axis that shows every mean and every positive lower end of an interval, with a
    margin below the lowest (a fixed bottom, so that bars clipped there end on it)."""
    values = pd.concat([mean, low]).astype(float)
    values = values[np.isfinite(values) & (values > 0)]
    return float(values.min()) / 1.4 if not values.empty else 1.0


def errorbar_clipped_at(ax: plt.Axes, x: pd.Series, mean: pd.Series, low: pd.Series, high: pd.Series,
                        floor: float | None, **style: object) -> bool:
    """``mean`` against ``x`` with its interval (``low``, ``high``) as error bars (none where the interval is
    missing, n = 1); on a log axis (``floor`` given) a lower end at or below zero is drawn down to ``floor``
    and marked there with a triangle. True when a bar was clipped so."""
    clipped = (low <= 0) if floor is not None else pd.Series(False, index=low.index)
    shown_low = low.mask(clipped, floor)
    ax.errorbar(x, mean, yerr=interval_errors(mean, shown_low, high), marker="o", capsize=3, **style)
    if clipped.any():  # lifted by half its height, so that its tip rests on the bottom of the axis
        lifted = offset_copy(ax.transData, fig=ax.figure, y=CLIPPED_SIZE**0.5 / 2, units="points")
        ax.scatter(x[clipped], [floor] * int(clipped.sum()), marker="v", s=CLIPPED_SIZE,
                   color=style.get("color"), edgecolors="black", linewidths=0.6, zorder=5, transform=lifted)
    return bool(clipped.any())


def mark_clipped_in_legend(ax: plt.Axes) -> None:
    """A legend entry for the triangles of :func:`errorbar_clipped_at`."""
    ax.scatter([], [], marker="v", s=CLIPPED_SIZE, color="grey", edgecolors="black", linewidths=0.6,
               label=CLIPPED_LABEL)


def lines_first(ax: plt.Axes) -> tuple[list, list[str]]:
    """``ax``'s legend entries with the models' error-bar lines first, in the order drawn (the catalogue's),
    then the keys of the markers (hollow diamonds, circles, clipped bars), which matplotlib lists first."""
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(handles)), key=lambda k: not isinstance(handles[k], ErrorbarContainer))
    return [handles[k] for k in order], [labels[k] for k in order]


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


#: The gid of a Pareto front's labels: :func:`save_figure` places them once the figure's layout is final.
FRONT_LABEL = "front-label"
FRONT_LABEL_COLOUR = "darkred"
#: Where a front's label may sit around its point: a direction and the text's alignment there, in the order
#: preferred when several places are free. Markers count as squares, so a diagonal goes to their corner.
_LABEL_DIRECTIONS = (
    ((1.0, 0.0), "left", "center"),
    ((1.0, 1.0), "left", "bottom"),
    ((1.0, -1.0), "left", "top"),
    ((0.0, 1.0), "center", "bottom"),
    ((0.0, -1.0), "center", "top"),
    ((-1.0, 0.0), "right", "center"),
    ((-1.0, 1.0), "right", "bottom"),
    ((-1.0, -1.0), "right", "top"),
)
#: How much farther (points) than the nearest ring a crowded label may move, joined to its point by a line.
_LABEL_RINGS = (0.0, 10.0, 22.0, 36.0)
#: Space (points) kept free around a label, so that neighbours stay apart.
_LABEL_GAP = 1.5


def label_front(ax: plt.Axes, points: list[tuple[str, float, float]], dx: float) -> None:
    """Name the points of a Pareto front (text, x, y) in dark red, at least ``dx`` points from them. Where
    each label goes is decided when the figure is saved (:func:`place_front_labels`): the nearest place around
    its point that overlaps no other label or marker and stays inside the panel; where none is free nearby,
    a farther one joined to the point by a thin line."""
    for text, x, y in points:
        label = ax.annotate(
            text,
            (x, y),
            textcoords="offset points",
            xytext=(dx, 0),
            ha="left",
            va="center",
            fontsize=7,
            color=FRONT_LABEL_COLOUR,
            zorder=5,
            bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.75},
            arrowprops={"arrowstyle": "-", "color": FRONT_LABEL_COLOUR, "lw": 0.6, "shrinkA": 0},
        )
        label.arrow_patch.set_visible(False)  # the leader line shows only where the label had to move away
        label.set_in_layout(False)  # the placement keeps it inside its panel; the layout need not make room
        label.set_gid(FRONT_LABEL)


def _marker_boxes(ax: plt.Axes, pixels_per_point: float) -> list[Bbox]:
    """Window boxes of the markers drawn in ``ax``: scatter points and the markers of lines."""
    boxes = []
    for collection in ax.collections:
        if not isinstance(collection, PathCollection) or not len(collection.get_offsets()):
            continue
        centres = collection.get_offset_transform().transform(collection.get_offsets())
        sizes = collection.get_sizes() if len(collection.get_sizes()) else np.array([36.0])
        for (cx, cy), size in zip(centres, np.broadcast_to(sizes, len(centres)), strict=True):
            half = np.sqrt(size) / 2 * pixels_per_point
            boxes.append(Bbox.from_extents(cx - half, cy - half, cx + half, cy + half))
    for line in ax.lines:
        if line.get_marker() in (None, "None", "none", "", " "):
            continue
        half = line.get_markersize() / 2 * pixels_per_point
        for cx, cy in line.get_transform().transform(line.get_xydata()):
            boxes.append(Bbox.from_extents(cx - half, cy - half, cx + half, cy + half))
    return [b for b in boxes if np.isfinite(b.extents).all()]


def _line_paths(ax: plt.Axes) -> list[mpath.Path]:
    """The lines drawn in ``ax`` (fronts, error bars) as window paths, for a label to avoid crossing."""
    polylines = [line.get_transform().transform(line.get_xydata()) for line in ax.lines
                 if line.get_linestyle() not in ("None", "none", "", " ")]
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            polylines += [collection.get_transform().transform(s) for s in collection.get_segments()]
    paths = []
    for xy in polylines:
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) >= 2:
            paths.append(mpath.Path(xy))
    return paths


def _covered(box: Bbox, other: Bbox) -> float:
    """The share of ``box`` that ``other`` covers (0 to 1)."""
    both = Bbox.intersection(box, other)
    return 0.0 if both is None else both.width * both.height / max(box.width * box.height, 1e-9)


def _label_box(anchor: np.ndarray, offset: np.ndarray, size: tuple[float, float], ha: str, va: str) -> Bbox:
    """The window box of a text of ``size`` (width, height) aligned (ha, va) at ``anchor`` + ``offset``."""
    x, y = anchor + offset
    width, height = size
    x0 = {"left": x, "center": x - width / 2, "right": x - width}[ha]
    y0 = {"bottom": y, "center": y - height / 2, "top": y - height}[va]
    return Bbox.from_bounds(x0, y0, width, height)


def place_front_labels(fig: plt.Figure) -> None:
    """Move each label of :func:`label_front` to the free place nearest its point, greedily in the order the
    labels were made: the places tried lie in rings around the point, each scored by how much the label
    would overlap labels placed before it, markers, the panel's edge and lines; ties go to the nearer, more
    preferred place. Deterministic: the same figure gets the same places."""
    panels = [(ax, [t for t in ax.texts if t.get_gid() == FRONT_LABEL]) for ax in fig.axes]
    panels = [(ax, labels) for ax, labels in panels if labels]
    if not panels:
        return
    fig.draw_without_rendering()  # the final layout: every window position below is the saved one
    renderer = fig.canvas.get_renderer()
    pixels_per_point = renderer.points_to_pixels(1.0)
    gap = _LABEL_GAP * pixels_per_point
    for ax, labels in panels:
        panel = ax.get_window_extent(renderer)
        markers = _marker_boxes(ax, pixels_per_point)
        lines = _line_paths(ax)
        placed: list[Bbox] = []
        for label in labels:
            anchor = ax.transData.transform(label.xy)
            extent = Text.get_window_extent(label, renderer)
            size = (extent.width + 2 * gap, extent.height + 2 * gap)
            # the label's own marker sets its nearest distance, so that it never covers its point
            own = [b for b in markers if b.contains(*anchor)]
            radius = max([b.width / 2 for b in own], default=0.0)
            nearest = max(abs(label.xyann[0]) * pixels_per_point, radius + gap)
            candidates = []  # (cost, ring, offset in points, ha, va)
            for ring, extra in enumerate(_LABEL_RINGS):
                for rank, (direction, ha, va) in enumerate(_LABEL_DIRECTIONS):
                    offset = np.asarray(direction) * (nearest + extra * pixels_per_point)
                    box = _label_box(anchor, offset, size, ha, va)
                    cost = 3.0 * ring + 0.01 * rank
                    outside = 1.0 - _covered(box, panel)
                    cost += 100 + 100 * outside if outside > 1e-6 else 0.0
                    cost += sum(100 + 100 * c for b in placed if (c := _covered(box, b)) > 0)
                    cost += sum(30 + 100 * c for b in markers if (c := _covered(box, b)) > 0)
                    # a line only counts where it crosses the text itself, not the gap around it
                    text = Bbox.from_extents(box.x0 + gap, box.y0 + gap, box.x1 - gap, box.y1 - gap)
                    cost += 4.0 * sum(p.intersects_bbox(text, filled=False) for p in lines)
                    candidates.append((cost, ring, tuple(offset / pixels_per_point), ha, va))
            # min keeps the first of equal costs: the nearer ring, the more preferred direction
            _, ring, offset_points, ha, va = min(candidates, key=lambda c: c[0])
            label.xyann = offset_points
            label.set_horizontalalignment(ha)
            label.set_verticalalignment(va)
            if ring:  # moved away from its point: a thin line shows which point it names
                label.arrow_patch.shrinkB = radius / pixels_per_point + 1
                label.arrow_patch.set_visible(True)
            placed.append(_label_box(anchor, np.asarray(offset_points) * pixels_per_point, size, ha, va))
