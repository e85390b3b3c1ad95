"""``tta-energy analyze --figures``: the notebooks' standard figures, drawn from the analysis tables.

Each figure is drawn by the same :mod:`tta_energy.analysis.plots` function the notebooks call, one per
platform (source x GPU) where the notebooks draw one per platform; a figure whose inputs are absent is
recorded as skipped with its reason. ``index.md`` is :func:`.reproduce.write_index`'s.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from tta_energy.analysis import compare, plots, reproduce, summaries
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.analysis.tables import FIGURES_FOLDER, INDEX_FILE, AnalysisInput, AnalysisResult
from tta_energy.devices import PROJECT_GPU, names_gpu
from tta_energy.study import STUDY_GPU_NAME

#: The reference of the platform comparison, when present: the study's own platform (arXiv 2505.07615).
STUDY_PLATFORM = ("study", STUDY_GPU_NAME)
NO_DATA = "no data"


def by_platform(table: pd.DataFrame, of: pd.DataFrame | None = None) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows of ``table``) for each (source, GPU) of ``of`` (default: of ``table``); ``[("no data",
    empty)]`` when there is none, so that the figure is recorded as skipped, as the notebooks record it."""
    of = table if of is None else of
    if of.empty:
        return [(NO_DATA, table.iloc[0:0])]
    return [
        (
            compare.platform_label(source, gpu),
            table[(table["source"] == source) & (table["gpu_name"] == gpu)] if not table.empty else table,
        )
        for source, gpu in compare.platforms(of)
    ]


def _or_empty(compute: Callable[..., pd.DataFrame], *args: object) -> pd.DataFrame:
    """``compute(*args)``, or an empty table where the rows lack what it needs (its figure is skipped)."""
    try:
        return compute(*args)
    except AnalysisError:
        return pd.DataFrame()


def measured_platforms(steps: pd.DataFrame) -> list[tuple[str, str]]:
    """The platforms of a steps summary with GPU energies (rows measured on a CPU have none to compare)."""
    measured = steps.dropna(subset=["gpu_energy_J_mean"]) if not steps.empty else steps
    return compare.platforms(measured) if not measured.empty else []


def comparison_pair(steps: pd.DataFrame) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """The two platforms the comparison sets side by side: the study's A40 as reference when present, else an
    H200 (this project's campaign), else the first; the other is the first remaining. None: fewer than two
    with GPU energies."""
    available = measured_platforms(steps)
    if len(available) < 2:
        return None
    h200 = [p for p in available if names_gpu(PROJECT_GPU, p[1])]
    reference = STUDY_PLATFORM if STUDY_PLATFORM in available else (h200 or available)[0]
    return reference, next(p for p in available if p != reference)


def draw_all(
    runs: pd.DataFrame,
    result: AnalysisResult,
    scores: pd.DataFrame | None,
    figures: Path,
    *,
    warmup_dropped: bool,
) -> None:
    """Every standard figure into ``figures`` (``runs``: the usable rows the tables were computed from)."""
    steps, fits = result.tables["steps_summary"], result.tables["steps_fit"]
    for label, summary in by_platform(steps):  # notebooks/01
        plots.plot_energy_vs_steps(summary, figures, label)
        plots.plot_energy_vs_steps(summary, figures, label, log=True)
    for label, rows in by_platform(runs[runs["experiment"] == "steps"]):
        if label == NO_DATA:
            continue
        plots.plot_phases(rows, figures, label)
        trace, window, note = plots.generation_trace(rows, reproduce.repo_root())
        plots.plot_power_trace(trace, figures, label, window=window, title=note if trace is not None else "",
                               reason=f"{label}: {note}")
    for label, batch in by_platform(result.tables["batch_summary"]):  # notebooks/02
        plots.plot_batch_energy(batch, figures, label)
    for label, pareto in by_platform(result.tables["pareto"], of=runs[runs["experiment"] == "quality"]):
        plots.plot_pareto(pareto, figures, label)  # notebooks/03
    if scores is not None:
        study_only = (scores["source"] == "study").all()
        plots.plot_sanity(scores, figures, "study A40" if study_only else "all scores")
    pair = comparison_pair(steps)  # notebooks/04
    if pair is None:
        plots.skip_figure(figures, "platform-comparison",
                          "steps sweeps of two platforms (source x GPU) with GPU energies are needed; the "
                          f"steps table holds {len(measured_platforms(steps))}", "comparison")
    else:
        per_steps, per_model = compare.platform_comparison(steps, fits, *pair)
        warmup = "Means leave out the study's first call of each script (CUDA warm-up)."
        note = warmup if warmup_dropped and "study" in (pair[0][0], pair[1][0]) else ""
        plots.plot_platform_comparison(per_steps, per_model, figures, note=note)
    plots.plot_host_diagnostics(_or_empty(summaries.host_rows, runs), result.tables["host_summary"], figures)
    plots.plot_flop_efficiency(result.tables["efficiency"], result.tables["batch_efficiency"], figures)
    sweeps = runs[runs["experiment"].isin(summaries.PARAMETER_COLUMNS)]  # notebooks/05
    for label, rows in by_platform(sweeps):
        duration, guidance, precision = (
            _or_empty(summaries.parameter_summary, rows, experiment)
            for experiment in ("duration", "guidance", "precision")
        )
        plots.plot_parameter_sweeps(duration, guidance, precision, figures, label)


#: who wrote a figures folder, as its index.md says
ANALYZE_GENERATED_BY = "`tta-energy analyze --figures`"


def drop_figures(out: str | Path) -> None:
    """Remove the figures and index an earlier ``analyze --figures`` wrote to ``out/figures`` (only those
    its manifest lists; the folder goes when nothing else is in it). A folder that ``analyze`` did not write
    (``make reproduce``'s ``figures/``) is left alone."""
    figures = Path(out) / FIGURES_FOLDER
    index = figures / INDEX_FILE
    written_by_analyze = f"Generated by {ANALYZE_GENERATED_BY};"
    if not index.is_file() or written_by_analyze not in index.read_text(encoding="utf-8"):
        return
    reproduce.clear_previous(figures)
    (figures / INDEX_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        figures.rmdir()


def write_figures(inp: AnalysisInput, result: AnalysisResult, out: str | Path, *,
                  drop_study_warmup: bool = False) -> Path:
    """Draw the figures into ``out/figures`` and write its ``index.md``; returns the index. Skipped
    figures' reasons go to the index, not the console. They are drawn into a staging folder beside it and
    moved there once all are drawn, the last run's figures that this one did not draw removed: a figure that
    fails leaves the previous figures as they were."""
    figures = Path(out) / FIGURES_FOLDER
    with reproduce.staged_figures(figures) as staging:
        runs = summaries.usable_runs(inp.runs, drop_study_warmup=drop_study_warmup)
        with contextlib.redirect_stdout(io.StringIO()):  # plots.skip_figure prints each reason
            draw_all(runs, result, inp.scores, staging, warmup_dropped=drop_study_warmup)
        # the index names the tables beside the figures folder: the staging folder is beside it too
        reproduce.write_index(staging, inputs=inp.sources, tables_dir=Path(out),
                              generated_by=ANALYZE_GENERATED_BY)
    return figures / INDEX_FILE
