"""Figures (PDF + PNG) from the analysis tables, and the caption manifest behind ``figures/index.md``.

Each ``plot_*`` function draws one figure from a table (never from raw files), saves it with
:func:`save_figure` and returns the stem, or records a skipped figure with a note and returns ``None``.
Every model keeps one colour and every step count one marker across all figures.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; no display is ever needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from tta_energy.analysis.study_import import CANONICAL_MODELS  # noqa: E402
from tta_energy.analysis.summaries import DTYPE_ORDER  # noqa: E402
from tta_energy.models.catalogue import CATALOGUE  # noqa: E402
from tta_energy.schema import PHASES  # noqa: E402

MANIFEST = "manifest.json"
MODEL_LABELS: dict[str, str] = {e.name: e.label for e in CATALOGUE}
MODEL_COLOURS: dict[str, tuple[float, float, float]] = dict(
    zip(CANONICAL_MODELS, sns.color_palette("colorblind", len(CANONICAL_MODELS)), strict=True)
)
STEP_MARKERS: dict[int, str] = {10: "o", 25: "s", 50: "D", 100: "^", 150: "<", 200: "X"}
DATASET_LABELS = {"audiocaps": "AudioCaps", "clotho": "Clotho"}
#: The study's "fad" is FAD-inf; the quality module's tables name plain FAD "fad" and FAD-inf "fad_inf".
METRIC_LABELS = {
    "clap": "CLAP score (higher is better)",
    "fad": "FAD / the study's FAD-inf (lower is better)",
    "fad_inf": "FAD-inf (lower is better)",
    "fad_inf_without_replacement": "FAD-inf, subsets without replacement (lower is better)",
}


def model_label(model: str) -> str:
    return MODEL_LABELS.get(model, model)


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


def skip_figure(figures: str | Path, stem: str, reason: str, group: str = "") -> None:
    """Record that a figure could not be drawn, and why (shown in ``index.md``)."""
    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    _record(figures, stem, {"caption": reason, "group": group, "status": "skipped"})
    print(f"figure {stem} not drawn: {reason}")


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.1)


# --------------------------------------------------------------------------------------------------------
# Steps and batch


def plot_energy_vs_steps(
    summary: pd.DataFrame, figures: str | Path, label: str, *, log: bool = False
) -> str | None:
    """GPU energy per generation vs nominal steps, one line per model, error bars = sample std over runs."""
    scale = "log" if log else "linear"
    stem = f"steps-energy-{scale}-{slug(label)}"
    if summary.empty:
        skip_figure(figures, stem, f"{label}: no steps-experiment rows", "steps")
        return None
    _style()
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for model, grp in summary.sort_values("steps").groupby("model", sort=False):
        ax.errorbar(
            grp["steps"],
            grp["gpu_energy_J_mean"],
            yerr=grp["gpu_energy_J_std"].fillna(0),
            marker="o",
            capsize=3,
            label=model_label(model),
            color=MODEL_COLOURS.get(model),
        )
    ax.set_xlabel("denoising steps (nominal)")
    ax.set_ylabel("GPU energy per generation [J]")
    if log:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = sorted(summary["steps"].unique())
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
    warm = (
        summary[summary["first_generation_included"]]
        if "first_generation_included" in summary
        else summary[:0]
    )
    if not warm.empty:
        ax.scatter(
            warm["steps"],
            warm["gpu_energy_J_mean"],
            s=140,
            facecolors="none",
            edgecolors="black",
            linewidths=1.2,
            zorder=4,
            label="mean includes the warm-up call",
        )
    ax.set_title(f"Energy per 10-s generation vs steps — {label}")
    ax.legend(fontsize="small", ncol=2)
    caption = (
        f"{label}: GPU energy of one 10-s generation against the number of denoising steps, mean of the runs "
        f"±1 sample std ({scale} axes)."
    )
    if not warm.empty:
        caption += (
            " Circled means include the first call of a script (CUDA warm-up, never discarded by the "
            "study): their spread is inflated."
        )
    return save_figure(fig, figures, stem, caption, "steps")


def plot_batch_energy(batch: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """GPU energy per clip vs batch size, one line per model (error bars: std of per-run totals / 10)."""
    stem = f"batch-energy-per-clip-{slug(label)}"
    if batch.empty:
        skip_figure(figures, stem, f"{label}: no batch-experiment rows", "batch")
        return None
    _style()
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
    data = batch[batch["n_prompts"] == 1] if "n_prompts" in batch.columns else batch
    for model, grp in data.sort_values("batch").groupby("model", sort=False):
        colour = MODEL_COLOURS.get(model)
        ax.errorbar(
            grp["batch"],
            grp["gpu_energy_J_per_clip_mean"],
            yerr=grp["gpu_energy_J_per_10_clips_std"].fillna(0) / 10,
            marker="o",
            capsize=3,
            label=model_label(model),
            color=colour,
        )
        ax_ratio.plot(
            grp["batch"], grp["ratio_to_batch1"], marker="o", color=colour, label=model_label(model)
        )
    distinct = batch[batch["n_prompts"] > 1] if "n_prompts" in batch.columns else batch[:0]
    for row in distinct.itertuples():
        for axis, y in ((ax, row.gpu_energy_J_per_clip_mean), (ax_ratio, row.ratio_to_batch1)):
            axis.scatter(
                row.batch,
                y,
                marker="D",
                s=60,
                facecolors="none",
                edgecolors=MODEL_COLOURS.get(row.model),
                linewidths=1.5,
                zorder=4,
            )
    if not distinct.empty:
        ax.scatter(
            [], [], marker="D", facecolors="none", edgecolors="grey", label="distinct prompts in one call"
        )
    for a in (ax, ax_ratio):
        a.set_xscale("log")
        ticks = sorted(data["batch"].unique())
        a.set_xticks(ticks, [str(t) for t in ticks])
        a.minorticks_off()
        a.set_xlabel("waveforms per call (batch size)")
    ax.set_yscale("log")
    ax.set_ylabel("GPU energy per clip [J] (100 steps, 10 s)")
    ax_ratio.set_ylabel("energy per clip / energy at batch 1")
    ax_ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize="small")
    fig.suptitle(f"Batching: energy per clip — {label}")
    caption = (
        f"{label}: GPU energy per 10-s clip at 100 steps when 10 clips are made as 10x1, 5x2, 2x5 or 1x10 "
        f"waveforms per call (left, log scale, ±1 std of the per-run totals / 10) and relative to batch 1 "
        f"(right)."
    )
    if not distinct.empty:
        caption += (
            " Hollow diamonds: the clips of one call come from distinct prompts (the study batched one)."
        )
    return save_figure(fig, figures, stem, caption, "batch")


# --------------------------------------------------------------------------------------------------------
# Beyond the study: duration, guidance, precision

_DTYPE_HATCHES = {"float32": "", "float16": "//", "bfloat16": ".."}


def _models_in(summary: pd.DataFrame) -> list[str]:
    present = set(summary["model"])
    return [m for m in CANONICAL_MODELS if m in present] + sorted(present - set(CANONICAL_MODELS))


def _not_measured(ax: plt.Axes, title: str) -> None:
    ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)


def _ignored_lengths(duration: pd.DataFrame) -> dict[str, float]:
    """Models whose computed latent length does not follow the requested duration: model -> latent seconds."""
    out = {}
    for model, grp in duration.groupby("model", sort=False):
        latent = grp["latent_seconds"].dropna().unique()
        if len(latent) == 1 and not np.allclose(grp["latent_seconds"], grp["duration_s"]):
            out[model] = float(latent[0])
    return out


def _plain_log_y(ax: plt.Axes) -> None:
    """Plain numbers on a log y axis: every decade and its 2s and 5s (20, 50, 200, 500, ...)."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def _bar_label(ax: plt.Axes, x: float, y: float, text: str) -> None:
    ax.annotate(text, (x, y), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7)


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
    _style()
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), layout="constrained")
    (ax_dur, ax_per_s), (ax_cfg, ax_dtype) = axes
    ignored: dict[str, float] = {}

    if duration.empty:
        _not_measured(ax_dur, "Requested duration")
        _not_measured(ax_per_s, "Energy per second of audio returned")
    else:
        ignored = _ignored_lengths(duration)
        for model in _models_in(duration):
            grp = duration[duration["model"] == model].sort_values("duration_s")
            colour = MODEL_COLOURS.get(model)
            name = model_label(model)
            if model in ignored:
                name += f" (computes {ignored[model]:.2f} s)"
            ax_dur.errorbar(
                grp["duration_s"],
                grp["gpu_energy_J_mean"],
                yerr=grp["gpu_energy_J_std"].fillna(0),
                marker="o",
                capsize=3,
                color=colour,
                label=name,
            )
            ax_per_s.plot(
                grp["duration_s"], grp["gpu_energy_J_per_audio_s_mean"], marker="o", color=colour, label=name
            )
            if model in ignored:
                last = grp.iloc[-1]
                ax_dur.annotate(
                    f"{ignored[model]:.2f} s of latents\n"
                    + ("whatever is asked" if len(grp) > 1 else f"when {last['duration_s']:g} s is asked"),
                    (last["duration_s"], last["gpu_energy_J_mean"]),
                    textcoords="offset points",
                    xytext=(-6, 8),
                    ha="right",
                    fontsize=7,
                    color=colour,
                )
        ticks = sorted(duration["duration_s"].unique())
        for ax in (ax_dur, ax_per_s):
            ax.set_xscale("log")
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
            ax.minorticks_off()
            ax.set_xlabel("requested duration [s] (log)")
        ax_dur.set_ylim(0, 1.25 * float(np.nanmax(duration["gpu_energy_J_mean"])))
        ax_dur.set_ylabel("GPU energy per generation [J]")
        ax_dur.set_title("Requested duration")
        ax_dur.legend(fontsize="small", loc="lower center", ncol=2)
        ax_per_s.set_yscale("log")
        _plain_log_y(ax_per_s)
        ax_per_s.set_ylabel("GPU energy per second of audio returned [J/s] (log)")
        ax_per_s.set_title("Energy per second of audio returned")

    if guidance.empty:
        _not_measured(ax_cfg, "Classifier-free guidance")
    else:
        models = _models_in(guidance)
        for i, model in enumerate(models):
            grp = guidance[guidance["model"] == model]
            colour = MODEL_COLOURS.get(model)
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
                    yerr=0 if pd.isna(row["gpu_energy_J_std"]) else row["gpu_energy_J_std"],
                    color=colour,
                    hatch=hatch,
                    edgecolor="white" if hatch else colour,
                    alpha=1.0 if not hatch else 0.6,
                )
                text = f"scale {row['guidance_scale']:g}"
                if hatch and not pd.isna(row["ratio_to_reference"]):
                    text = f"x{row['ratio_to_reference']:.2f}"
                _bar_label(ax_cfg, i + offset, row["gpu_energy_J_mean"], text)
        ax_cfg.set_xticks(np.arange(len(models)), [model_label(m) for m in models])
        ax_cfg.set_ylabel("GPU energy per generation [J]")
        ax_cfg.set_title("Classifier-free guidance: on (solid) vs off (hatched, scale 1)")
        ax_cfg.margins(y=0.12)

    if precision.empty:
        _not_measured(ax_dtype, "Precision")
    else:
        models = _models_in(precision)
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
                    color=MODEL_COLOURS.get(model),
                    hatch=_DTYPE_HATCHES.get(dtype, "xx"),
                    edgecolor="white",
                )
                if not pd.isna(row["ratio_to_reference"]) and not row["is_reference"]:
                    _bar_label(ax_dtype, x, row["gpu_energy_J_mean"], f"x{row['ratio_to_reference']:.2f}")
        ax_dtype.set_xticks(np.arange(len(models)), [model_label(m) for m in models])
        ax_dtype.set_yscale("log")
        _plain_log_y(ax_dtype)
        ax_dtype.set_ylabel("GPU energy per generation [J] (log)")
        ax_dtype.set_title("Precision (ratios to float32 above the bars)")
        ax_dtype.legend(
            handles=[
                Patch(facecolor="0.55", hatch=_DTYPE_HATCHES.get(d, "xx"), edgecolor="white", label=d)
                for d in dtypes
            ],
            fontsize="small",
        )
        ax_dtype.margins(y=0.12)

    fig.suptitle(f"Beyond the study: duration, guidance, precision — {label}")
    caption = (
        f"{label}: GPU energy of one generation (mean ± 1 sample std over runs) against the requested "
        f"duration, and per second of audio returned (top); with classifier-free guidance on at the "
        f"model's scale and off (scale 1; the ratio off/on above the bar), and in float32, float16 and "
        f"bfloat16 (log scale; ratios to float32) (bottom)."
    )
    n_runs = pd.concat([t["n_runs"] for t in (duration, guidance, precision) if not t.empty])
    if n_runs.max() <= 1:
        caption += " One run per point: no error bars."
    if ignored:
        caption += " " + " ".join(
            f"{model_label(m)} computes {s:.2f} s of latents "
            + (
                "whatever duration is asked."
                if (duration["model"] == m).sum() > 1
                else "(one duration measured)."
            )
            for m, s in ignored.items()
        )
    return save_figure(fig, figures, stem, caption, "new")


# --------------------------------------------------------------------------------------------------------
# Pareto fronts


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
        ax.set_xlabel("steps")
        ax.set_title(f"{DATASET_LABELS.get(dataset, dataset)} — {metric.upper()}")
        ax.legend(fontsize="x-small")
    fig.suptitle(f"Sanity check: 300-caption subset (solid) vs full set (dashed) — {label}")
    caption = (
        f"{label}: scores of the 300-caption subsets (solid) and of the full AudioCaps-test / Clotho-eval "
        f"sets (dashed) against steps; the sanity table gives Pearson r and the slope-interaction p-value."
    )
    return save_figure(fig, figures, stem, caption, "quality")


# --------------------------------------------------------------------------------------------------------
# Phases and power


def phase_means(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean GPU energy per phase for each model and step count (rows with every phase measured)."""
    cols = [f"energy_{p}_J" for p in PHASES]
    if not set(cols) <= set(runs.columns):
        return pd.DataFrame()
    rows = runs.dropna(subset=cols, how="all")
    if rows.empty:
        return pd.DataFrame()
    return rows.groupby(["model", "steps"], sort=True)[cols].mean().reset_index()


def plot_phases(runs: pd.DataFrame, figures: str | Path, label: str) -> str | None:
    """Stacked bars of the GPU energy of each phase (text encoding, denoising, decoding, vocoder)."""
    stem = f"phase-energy-{slug(label)}"
    means = phase_means(runs)
    if means.empty:
        skip_figure(
            figures,
            stem,
            f"{label}: no per-phase energies (energy_<phase>_J columns) in these runs; "
            f"the study measured whole generations only",
            "phases",
        )
        return None
    _style()
    models = _models_in(means)
    fig, axes = plt.subplots(
        1, len(models), figsize=(3.0 * len(models) + 1, 4.2), squeeze=False, layout="constrained"
    )
    colours = sns.color_palette("Set2", len(PHASES))
    for ax, model in zip(axes[0], models, strict=True):
        sub = means[means["model"] == model].sort_values("steps")
        bottom = np.zeros(len(sub))
        x = np.arange(len(sub))
        for phase, colour in zip(PHASES, colours, strict=True):
            values = sub[f"energy_{phase}_J"].fillna(0).to_numpy()
            ax.bar(x, values, bottom=bottom, color=colour, label=phase.replace("_", " "))
            bottom += values
        ax.set_xticks(x, [str(int(s)) for s in sub["steps"]])
        ax.set_xlabel("steps")
        ax.set_title(model_label(model))
    axes[0][0].set_ylabel("GPU energy per generation [J]")
    axes[0][-1].legend(fontsize="small")
    fig.suptitle(f"Energy per phase — {label}")
    caption = (
        f"{label}: mean GPU energy of each phase of a generation (text encoding, denoising loop, latent "
        f"decoding, vocoder), stacked, per model and step count."
    )
    return save_figure(fig, figures, stem, caption, "phases")


#: Time columns in order of preference: absolute clocks first (the meter's traces have ``unix_time`` and a
#: monotonic ``t``), so that a generation's window (from its row's timestamp) can be found in the trace.
_TIME_COLUMNS = ("unix_time", "timestamp", "timestamp_s", "t_s", "time_s", "elapsed_s", "t", "time")
_POWER_COLUMNS = ("power_W", "power_w", "gpu_power_W", "power_instant_W", "power")


def read_trace(path: str | Path) -> pd.DataFrame:
    """A power trace (CSV, optionally gzip-compressed) as ``t_s`` (seconds from its start) and ``power_W``."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        df = pd.read_csv(fh)
    tcol = next((c for c in _TIME_COLUMNS if c in df.columns), None)
    pcol = next((c for c in _POWER_COLUMNS if c in df.columns), None)
    if tcol is None or pcol is None:
        raise ValueError(
            f"{path}: a power trace needs a time column ({', '.join(_TIME_COLUMNS)}) and a power "
            f"column ({', '.join(_POWER_COLUMNS)})"
        )
    time = pd.to_numeric(df[tcol], errors="coerce")
    if time.isna().all():  # ISO timestamps
        stamps = pd.to_datetime(df[tcol], errors="coerce", utc=True, format="ISO8601")
        time = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    out = pd.DataFrame({"t_abs": time.astype("float64"), "power_W": pd.to_numeric(df[pcol], errors="coerce")})
    for extra in ("device", "power_instant_W", "temperature_C", "sm_clock_MHz"):
        if extra in df.columns:
            out[extra] = df[extra]
    out = out.dropna(subset=["t_abs", "power_W"]).sort_values("t_abs")
    out["t_s"] = out["t_abs"] - out["t_abs"].min()
    return out


def resolve_trace(trace_path: str, table_dir: Path, repo_root: Path | None = None) -> Path | None:
    """Find a run's trace file: as written, next to its run table, or under ``traces/`` there."""
    if not trace_path:
        return None
    p = Path(trace_path)
    candidates = [p, table_dir / p, table_dir / "traces" / p.name, table_dir / p.name]
    if repo_root is not None:
        candidates.append(repo_root / p)
    return next((c for c in candidates if c.is_file()), None)


def plot_power_trace(
    trace: pd.DataFrame | None,
    figures: str | Path,
    label: str,
    *,
    window: tuple[float, float] | None = None,
    title: str = "",
    reason: str = "",
) -> str | None:
    """GPU power against time for one generation (``window``: its start and end on the trace's clock)."""
    stem = f"power-trace-{slug(label)}"
    if trace is None or trace.empty:
        skip_figure(
            figures,
            stem,
            reason or f"{label}: no power trace file found for these runs; the study logged none",
            "power",
        )
        return None
    _style()
    data = trace
    if window is not None:
        start, end = window
        margin = max(0.5, 0.15 * (end - start))
        data = trace[(trace["t_abs"] >= start - margin) & (trace["t_abs"] <= end + margin)]
        if data.empty:
            data = trace
            window = None
    fig, ax = plt.subplots(figsize=(8, 3.8), layout="constrained")
    t0 = data["t_abs"].min()
    devices = sorted(data["device"].unique()) if "device" in data.columns else [None]
    for device in devices:
        part = data if device is None else data[data["device"] == device]
        suffix = "" if len(devices) == 1 else f" (GPU {device})"
        ax.plot(part["t_abs"] - t0, part["power_W"], lw=1.2, label=f"power{suffix}")
        if "power_instant_W" in part.columns and part["power_instant_W"].notna().any():
            ax.plot(
                part["t_abs"] - t0,
                pd.to_numeric(part["power_instant_W"], errors="coerce"),
                lw=0.8,
                ls="--",
                label=f"instantaneous power{suffix}",
            )
    if window is not None:
        ax.axvspan(window[0] - t0, window[1] - t0, color="orange", alpha=0.2, label="generation")
    ax.legend(fontsize="small")
    ax.set_xlabel("time [s]")
    ax.set_ylabel("GPU power [W]")
    ax.set_title(title or f"Power during one generation — {label}")
    caption = (
        f"{label}: GPU power sampled by the meter during one generation{' (' + title + ')' if title else ''}."
    )
    return save_figure(fig, figures, stem, caption, "power")


# --------------------------------------------------------------------------------------------------------
# Platform comparison


def plot_platform_comparison(
    per_steps: pd.DataFrame, per_model: pd.DataFrame, figures: str | Path
) -> str | None:
    """Per-step energy of each model on two platforms side by side, and the ratio at each step count."""
    stem = "platform-comparison"
    if per_model.empty:
        skip_figure(figures, stem, "no model measured on both platforms", "comparison")
        return None
    _style()
    ref, other = per_model["reference"].iloc[0], per_model["other"].iloc[0]
    fig, (ax, ax_ratio) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    x = np.arange(len(per_model))
    ax.bar(x - 0.2, per_model["slope_J_per_step_reference"], 0.4, label=ref, color="0.6")
    ax.bar(
        x + 0.2,
        per_model["slope_J_per_step_other"],
        0.4,
        label=other,
        color=[MODEL_COLOURS.get(m) for m in per_model["model"]],
    )
    ax.set_xticks(x, [model_label(m) for m in per_model["model"]], rotation=25, ha="right")
    ax.set_ylabel("GPU energy per denoising step [J] (fit slope)")
    ax.legend(fontsize="small")
    for model, grp in per_steps.groupby("model"):
        ax_ratio.plot(
            grp["steps"],
            grp["ratio_other_to_reference"],
            marker="o",
            color=MODEL_COLOURS.get(model),
            label=model_label(model),
        )
    ax_ratio.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_ratio.set_xscale("log")
    ticks = sorted(per_steps["steps"].unique())
    ax_ratio.set_xticks(ticks, [str(t) for t in ticks])
    ax_ratio.minorticks_off()
    ax_ratio.set_xlabel("steps")
    ax_ratio.set_ylabel(f"energy ratio {other} / {ref}")
    ax_ratio.legend(fontsize="small")
    fig.suptitle(f"{other} vs {ref}: per-step energy and ratio per generation")
    caption = (
        f"Per-step GPU energy (slope of the steps fit) of each model on {ref} and {other} (left) and the "
        f"ratio of energy per generation at each step count (right)."
    )
    return save_figure(fig, figures, stem, caption, "comparison")


def generation_trace(
    rows: pd.DataFrame, repo: Path | None = None
) -> tuple[pd.DataFrame | None, tuple[float, float] | None, str]:
    """The power trace around one generation of ``rows`` (prefers the steps sweep at 100 steps).

    Returns (trace, window, title) or (None, None, reason). ``window`` is the generation's (start, end) in
    seconds since the epoch, from its ``timestamp`` (end, UTC) and ``wall_s``; None when the trace's clock
    is not absolute or does not cover it.
    """
    if "trace_path" not in rows.columns:
        return None, None, "the run tables have no trace_path column"
    cand = rows[rows["trace_path"].fillna("").astype(str) != ""]
    if cand.empty:
        return None, None, "no run lists a power trace (trace_path is empty)"
    preference = (cand["experiment"] != "steps").astype(int) * 2 + (cand["steps"] != 100).astype(int)
    cand = cand.assign(_pref=preference.to_numpy()).sort_values("_pref", kind="stable")
    tried = set()
    for row in cand.itertuples():
        table_dir = Path(row.table_path).parent if getattr(row, "table_path", "") else Path(".")
        path = resolve_trace(str(row.trace_path), table_dir, repo)
        if path is None or path in tried:
            continue
        tried.add(path)
        try:
            trace = read_trace(path)
        except (ValueError, OSError) as exc:
            return None, None, f"trace {path} unreadable: {exc}"
        window = None
        try:
            end = pd.Timestamp(str(row.timestamp)).timestamp()
            start = end - float(row.wall_s)
            if trace["t_abs"].min() <= start and trace["t_abs"].max() >= end:
                window = (start, end)
        except (ValueError, TypeError):
            pass
        title = f"{model_label(row.model)}, {int(row.steps)} steps, {row.experiment} sweep"
        return trace, window, title
    return None, None, "the trace files named in trace_path were not found next to the run tables"
