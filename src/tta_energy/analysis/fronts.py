"""The study's question on today's hardware: its published quality against H200 energy per clip.

The study (arXiv 2505.07615) drew energy-vs-quality Pareto fronts per caption set and metric on an A40.
Random-weight replicas make noise, so the H200 cannot score its own audio; but energy depends on shapes and
arithmetic, not weight values, and lossless levers do not change the output. So each (model, steps) of the
study keeps its published score, and its energy per clip is:

* ``H200, study default``: the H200 steps sweep at that step count (the study's prompt, 10 s, batch 1, the
  study's dtype, eager), mean over runs with its 95 % t interval;
* ``H200, lossless levers``: the best configuration lossless at the study's precision of the levers runs
  (batch 1; :func:`tta_energy.levers.report.best_lossless` chooses the run), only at the step counts where
  the levers were measured; no ratio is carried to other step counts.

The A40 points are the study's quality-experiment means per generation, its first call of each script
(warm-up) left out. Fronts are computed per point set: A40; H200 defaults; H200 defaults plus levers.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy.analysis.pareto import HIGHER_IS_BETTER, pareto_mask
from tta_energy.analysis.summaries import without_first_generations
from tta_energy.devices import PROJECT_GPU, names_gpu
from tta_energy.intervals import t_half_width_of
from tta_energy.levers.spec import DEFAULT_SPEC
from tta_energy.levers.tables import LEVERS_TABLE

#: The point sets (``point_set``): the study's A40 runs, the H200's study default, its best lossless levers.
A40_POINTS = "A40 (study)"
H200_DEFAULT_POINTS = "H200, study default"
H200_LEVERS_POINTS = "H200, lossless levers"
#: The point sets a front is drawn for, in the order the figure and the table show them.
FRONT_SETS: dict[str, tuple[str, ...]] = {
    "a40": (A40_POINTS,),
    "h200_default": (H200_DEFAULT_POINTS,),
    "h200_levers": (H200_DEFAULT_POINTS, H200_LEVERS_POINTS),
}


def find_levers_tables(paths: Iterable[str | Path]) -> list[Path]:
    """``levers.csv`` tables under (or next to) ``paths``: the levers report's per-configuration table."""
    found: set[Path] = set()
    for p in map(Path, paths):
        if p.is_dir():
            found.update(p.rglob(LEVERS_TABLE))
        elif (p.parent / LEVERS_TABLE).is_file():
            found.add(p.parent / LEVERS_TABLE)
    return sorted(found)


def _study_scores(scores: pd.DataFrame) -> pd.DataFrame:
    s = scores[scores["source"] == "study"]
    if "scope" in s.columns:
        s = s[s["scope"].fillna("subset").replace("", "subset") == "subset"]
    if "caption_id" in s.columns:
        s = s[s["caption_id"].fillna("").astype(str) == ""]
    s = s[s["metric"].isin(HIGHER_IS_BETTER)]
    return s.groupby(["model", "dataset", "steps", "metric"], as_index=False)["value"].mean()


def a40_quality_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's quality runs a front point averages: its own rows (``source`` study) of the quality
    experiment, without the first generation of each script (its CUDA warm-up, ``first_generation``)."""
    quality = runs[(runs["experiment"] == "quality") & (runs["source"] == "study")]
    return without_first_generations(quality)


def platform_fronts(
    steps: pd.DataFrame, a40_quality: pd.DataFrame, scores: pd.DataFrame, levers: pd.DataFrame
) -> pd.DataFrame:
    """Every point (platform, configuration, model, steps) per caption set and metric, and its fronts.

    ``steps``: :func:`summaries.steps_summary` rows of the H200 (``source`` not ``study``); ``a40_quality``:
    the study's quality runs (usable, warm-up left out); ``scores``: score tables (the study's subset scores
    are used); ``levers``: ``levers.csv`` rows (may be empty; only those whose ``gpu_name`` names an H200
    count). Columns: ``dataset, metric, point_set, model, steps, optimize, gpu_energy_J_per_clip,
    gpu_energy_J_per_clip_ci_low/high, n_runs, score`` and one boolean column per front set (``on_front_a40``,
    ``on_front_h200_default``, ``on_front_h200_levers``; NaN when the point is not in that set), plus
    ``front_change``: for each (model, steps), A40 -> H200 defaults ("joins", "leaves", "stays", "off").
    """
    quality = _study_scores(scores)
    points = []
    if not a40_quality.empty:
        a40 = a40_quality.groupby(["model", "dataset", "steps"], as_index=False).agg(
            gpu_energy_J_per_clip=("gpu_energy_J", "mean"),
            n_runs=("gpu_energy_J", "count"),
            gpu_energy_J_per_clip_std=("gpu_energy_J", "std"),
        )
        half = t_half_width_of(a40["gpu_energy_J_per_clip_std"], a40["n_runs"])
        a40["gpu_energy_J_per_clip_ci_low"] = a40["gpu_energy_J_per_clip"] - half
        a40["gpu_energy_J_per_clip_ci_high"] = a40["gpu_energy_J_per_clip"] + half
        a40["point_set"] = A40_POINTS
        a40["optimize"] = DEFAULT_SPEC
        points.append(a40.merge(quality, on=["model", "dataset", "steps"]))
    datasets = quality[["dataset"]].drop_duplicates()
    if not steps.empty:
        h200 = steps.rename(
            columns={
                "gpu_energy_J_mean": "gpu_energy_J_per_clip",
                "gpu_energy_J_ci_low": "gpu_energy_J_per_clip_ci_low",
                "gpu_energy_J_ci_high": "gpu_energy_J_per_clip_ci_high",
            }
        )[["model", "steps", "gpu_energy_J_per_clip", "gpu_energy_J_per_clip_ci_low",
           "gpu_energy_J_per_clip_ci_high", "n_runs"]]
        h200 = h200.assign(point_set=H200_DEFAULT_POINTS, optimize=DEFAULT_SPEC)
        points.append(h200.merge(datasets, how="cross").merge(quality, on=["model", "dataset", "steps"]))
    from tta_energy.levers.report import best_lossless

    if not levers.empty:  # the H200's own levers runs (a table without the GPU's name: none of them)
        names = levers["gpu_name"].fillna("") if "gpu_name" in levers else [""] * len(levers)
        levers = levers[[names_gpu(PROJECT_GPU, name) for name in names]]
    best = best_lossless(levers, batch=1)
    if not best.empty:
        lev = best.rename(columns={"best_J": "gpu_energy_J_per_clip", "best_n_runs": "n_runs"})
        lev = lev.assign(point_set=H200_LEVERS_POINTS, optimize=lev["best"])
        lev = lev[["model", "steps", "gpu_energy_J_per_clip", "n_runs", "point_set", "optimize"]]
        points.append(lev.merge(datasets, how="cross").merge(quality, on=["model", "dataset", "steps"]))
    if not points:
        return pd.DataFrame()
    table = pd.concat(points, ignore_index=True).rename(columns={"value": "score"})
    for suffix in ("ci_low", "ci_high", "std"):
        column = f"gpu_energy_J_per_clip_{suffix}"
        if column not in table.columns:
            table[column] = np.nan
    for name, members in FRONT_SETS.items():
        column = f"on_front_{name}"
        table[column] = pd.Series(pd.NA, index=table.index, dtype="boolean")
        for (_, metric), grp in table[table["point_set"].isin(members)].groupby(["dataset", "metric"]):
            mask = pareto_mask(grp["gpu_energy_J_per_clip"], grp["score"], HIGHER_IS_BETTER[metric])
            table.loc[grp.index, column] = mask
    table["front_change"] = _front_change(table)
    first = [
        "dataset",
        "metric",
        "point_set",
        "model",
        "steps",
        "optimize",
        "gpu_energy_J_per_clip",
        "score",
    ]
    return table[first + [c for c in table.columns if c not in first]].sort_values(
        ["dataset", "metric", "point_set", "model", "steps"], ignore_index=True
    )


def _front_change(table: pd.DataFrame) -> pd.Series:
    """A40 front -> H200-defaults front for each (dataset, metric, model, steps) on both platforms."""
    keys = ["dataset", "metric", "model", "steps"]
    a40 = table[table["point_set"] == A40_POINTS].set_index(keys)["on_front_a40"]
    h200 = table[table["point_set"] == H200_DEFAULT_POINTS].set_index(keys)["on_front_h200_default"]
    both = pd.concat([a40.rename("a40"), h200.rename("h200")], axis=1).dropna()
    words = {(True, True): "stays", (True, False): "leaves", (False, True): "joins", (False, False): "off"}
    change = {k: words[(bool(r.a40), bool(r.h200))] for k, r in both.iterrows()}
    compared = table["point_set"].isin([A40_POINTS, H200_DEFAULT_POINTS])
    return pd.Series(
        [
            change.get(k, "") if on else ""
            for k, on in zip(table[keys].itertuples(index=False, name=None), compared, strict=True)
        ],
        index=table.index,
    )
