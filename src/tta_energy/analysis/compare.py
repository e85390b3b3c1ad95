"""Comparisons: the project's tables against the study's own aggregate files, and one GPU against another.

* :func:`study_aggregates` reads what the study's notebooks wrote (``<Model>-mean.csv`` / ``-std.csv``,
  ``total.csv`` / ``total_std.csv``, ``averaged_batch10.csv`` / ``std_batch10.csv``, ``<M>_emissions.csv``)
  in joules; :func:`reproduction_table` lines them up with this project's numbers.
* :func:`platform_comparison` puts the per-generation energy of each model on two platforms side by side
  (e.g. the project's H200 against the study's A40): ratios, per-step slopes and the ranking of models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from tta_energy.analysis.study_tree import StudyFormatError, StudyTree, canonical_model
from tta_energy.fileio import read_csv_exact
from tta_energy.schema import J_PER_KWH

#: Relative difference under which a reproduced number counts as equal (CSV text round trips, sum order).
REPRODUCTION_RTOL = 1e-9


def _read_value_file(path: Path, column: str = "gpu_energy") -> pd.DataFrame:
    df = read_csv_exact(path)
    if column not in df.columns:
        raise StudyFormatError(f"{path}: missing column '{column}'")
    return df


def study_aggregates(tree: StudyTree) -> pd.DataFrame:
    """The study's own aggregate GPU energies, tidy: ``experiment, model, key, statistic, study_J``.

    ``key`` is the step count (steps), the batch size (batch) or ``<dataset>/<steps>`` (quality sums).
    """
    rows: list[dict[str, object]] = []
    if tree.steps_dir.is_dir():
        for mdir in sorted(p for p in tree.steps_dir.iterdir() if p.is_dir()):
            model = canonical_model(mdir.name)
            for stat, suffix in (("mean", "mean"), ("std", "std")):
                f = mdir / f"{mdir.name}-{suffix}.csv"
                if f.is_file():
                    df = _read_value_file(f)
                    for steps, value in zip(df["project_name"], df["gpu_energy"], strict=True):
                        rows.append(
                            {
                                "experiment": "steps",
                                "model": model,
                                "key": str(int(steps)),
                                "statistic": stat,
                                "study_J": value * J_PER_KWH,
                            }
                        )
    if tree.batch_dir.is_dir():
        for mdir in sorted(p for p in tree.batch_dir.iterdir() if p.is_dir()):
            model = canonical_model(mdir.name)
            files = {(10, "total"): mdir / "averaged_batch10.csv", (10, "error"): mdir / "std_batch10.csv"}
            for b in (1, 2, 5):
                files[(b, "total")] = mdir / f"batch{b}" / "total.csv"
                files[(b, "error")] = mdir / f"batch{b}" / "total_std.csv"
            for (b, stat), f in files.items():
                if f.is_file():
                    rows.append(
                        {
                            "experiment": "batch",
                            "model": model,
                            "key": str(b),
                            "statistic": stat,
                            "study_J": float(_read_value_file(f)["gpu_energy"].iloc[0]) * J_PER_KWH,
                        }
                    )
    emissions = tree.quality_dir / "emissions"
    if emissions.is_dir():
        for mdir in sorted(p for p in emissions.iterdir() if p.is_dir()):
            f = mdir / f"{mdir.name}_emissions.csv"
            if f.is_file():
                df = _read_value_file(f)
                for model, steps, dataset, value in zip(
                    df["model"], df["steps"], df["baseline"], df["gpu_energy"], strict=True
                ):
                    rows.append(
                        {
                            "experiment": "quality",
                            "model": canonical_model(model),
                            "key": f"{dataset}/{int(steps)}",
                            "statistic": "sum",
                            "study_J": value * J_PER_KWH,
                        }
                    )
    return pd.DataFrame(rows, columns=["experiment", "model", "key", "statistic", "study_J"])


def reproduction_table(
    aggregates: pd.DataFrame,
    steps: pd.DataFrame | None,
    batch: pd.DataFrame | None,
    pareto: pd.DataFrame | None,
) -> pd.DataFrame:
    """This project's numbers next to the study's aggregate files, with relative differences.

    Only study rows are compared. ``same_definition`` is False where the two numbers deliberately
    measure different things (the study's b < 10 error bar is a standard error; ours a standard
    deviation: compare our ``study_error_J`` instead, which is what this table does).
    """
    ours: dict[tuple[str, str, str, str], float] = {}
    if steps is not None and not steps.empty:
        for r in steps[steps["source"] == "study"].itertuples():
            ours[("steps", r.model, str(int(r.steps)), "mean")] = r.gpu_energy_J_mean
            ours[("steps", r.model, str(int(r.steps)), "std")] = r.gpu_energy_J_std
    if batch is not None and not batch.empty:
        for r in batch[batch["source"] == "study"].itertuples():
            ours[("batch", r.model, str(int(r.n_clips)), "total")] = r.gpu_energy_J_per_10_clips_mean
            ours[("batch", r.model, str(int(r.n_clips)), "error")] = r.study_error_J
    if pareto is not None and not pareto.empty:
        sums = pareto[pareto["source"] == "study"].drop_duplicates(["model", "dataset", "steps"])
        for r in sums.itertuples():
            ours[("quality", r.model, f"{r.dataset}/{int(r.steps)}", "sum")] = r.gpu_energy_J_sum
    table = aggregates.copy()
    table["ours_J"] = [
        ours.get(tuple(k), np.nan)
        for k in table[["experiment", "model", "key", "statistic"]].itertuples(index=False)
    ]
    table["rel_diff"] = (table["ours_J"] - table["study_J"]).abs() / table["study_J"].abs()
    table["matches"] = table["rel_diff"] <= REPRODUCTION_RTOL
    return table


# --------------------------------------------------------------------------------------------------------
# Platforms


def platforms(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """The (source, gpu_name) pairs present in a summary table."""
    pairs = summary[["source", "gpu_name"]].drop_duplicates().itertuples(index=False)
    return sorted((str(s), str(g)) for s, g in pairs)


def platform_label(source: str, gpu_name: str) -> str:
    """Short label: ``study A40``, ``tta-energy H200``."""
    short = gpu_name.replace("NVIDIA ", "").strip() or "unknown GPU"
    return f"{source} {short}"


def platform_comparison(
    steps: pd.DataFrame, fits: pd.DataFrame, reference: tuple[str, str], other: tuple[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-generation GPU energy of each model at each step count on two platforms, and per-model slopes.

    Returns (per_steps, per_model): ``per_steps`` has ``model, steps, <ref>_J, <other>_J, ratio`` (other /
    reference); ``per_model`` has the per-step slopes with each fit's interval (``slope_J_per_step_ci_low`` /
    ``_ci_high``), ``slope_stderr_J`` and ``n_points`` (``fits``: :func:`.summaries.steps_fit`'s table),
    their ratio and each platform's ranking of the models
    (1 = cheapest per step), plus ``spearman_rho`` of the two rankings (same value on every row).
    """

    def pick(table: pd.DataFrame, platform: tuple[str, str]) -> pd.DataFrame:
        return table[(table["source"] == platform[0]) & (table["gpu_name"] == platform[1])]

    ref_s, oth_s = pick(steps, reference), pick(steps, other)
    columns = ["model", "steps", "n_runs", "gpu_energy_J_mean", "gpu_energy_J_std"]
    per_steps = ref_s[columns].merge(
        oth_s[columns],
        on=["model", "steps"],
        suffixes=("_reference", "_other"),
    )
    per_steps["ratio_other_to_reference"] = (
        per_steps["gpu_energy_J_mean_other"] / per_steps["gpu_energy_J_mean_reference"]
    )
    ref_f, oth_f = pick(fits, reference), pick(fits, other)
    # the slope's interval travels with it: the figure draws its error bars from it
    fit_columns = ["model", "slope_J_per_step", "slope_J_per_step_ci_low", "slope_J_per_step_ci_high",
                   "intercept_J", "slope_stderr_J", "n_points"]
    per_model = ref_f[fit_columns].merge(oth_f[fit_columns], on="model", suffixes=("_reference", "_other"))
    per_model["slope_ratio_other_to_reference"] = (
        per_model["slope_J_per_step_other"] / per_model["slope_J_per_step_reference"]
    )
    per_model["rank_reference"] = per_model["slope_J_per_step_reference"].rank(method="min").astype(int)
    per_model["rank_other"] = per_model["slope_J_per_step_other"].rank(method="min").astype(int)
    rho = (
        float(stats.spearmanr(per_model["rank_reference"], per_model["rank_other"]).statistic)
        if len(per_model) >= 3
        else np.nan
    )
    per_model["spearman_rho"] = rho
    for table in (per_steps, per_model):
        table["reference"] = platform_label(*reference)
        table["other"] = platform_label(*other)
    return per_steps.sort_values(["model", "steps"]).reset_index(drop=True), per_model.sort_values(
        "rank_reference"
    ).reset_index(drop=True)


#: The host-summary columns set beside each model's per-step energies on two platforms.
HOST_SUMMARY_COLUMNS = ("n_generations", "gpu_busy_fraction_mean", "gpu_busy_fraction_ci_low",
                        "gpu_busy_fraction_ci_high", "power_W_mean", "idle_power_W_mean",
                        "idle_energy_share_mean", "cpu_time_per_wall_mean")


def ranking_with_host(per_model: pd.DataFrame, host: pd.DataFrame, other: tuple[str, str]) -> pd.DataFrame:
    """``per_model`` (:func:`platform_comparison`) with the other platform's host diagnostics of each model
    (:func:`.summaries.host_summary`), sorted by busy fraction; ``rank_change`` = rank on the other platform
    minus rank on the reference (positive: the model became relatively more expensive per step)."""
    mine = host[(host["source"] == other[0]) & (host["gpu_name"] == other[1])]
    out = per_model.merge(mine[["model", *HOST_SUMMARY_COLUMNS]], on="model", how="left")
    out["rank_change"] = out["rank_other"] - out["rank_reference"]
    return out.sort_values("gpu_busy_fraction_mean").reset_index(drop=True)


def busy_correlation(table: pd.DataFrame, column: str) -> tuple[float, int]:
    """Spearman's rho between the busy fraction and ``column`` over the models that have both, and n."""
    both = table[["gpu_busy_fraction_mean", column]].dropna()
    if len(both) < 3:
        return np.nan, len(both)
    return float(stats.spearmanr(both["gpu_busy_fraction_mean"], both[column]).statistic), len(both)


def _label(model: str) -> str:
    from tta_energy.models.catalogue import label

    return label(model)


def ranking_sentences(explained: pd.DataFrame) -> list[str]:
    """One line per model of :func:`ranking_with_host` (least busy first), then the rank correlation of
    the busy fraction with the per-step ratio between the platforms."""
    lines = []
    for row in explained.itertuples():
        direction = "more" if row.slope_ratio_other_to_reference > 1 else "less"
        lines.append(
            f"{_label(row.model)}: busy {row.gpu_busy_fraction_mean:.2f} of the time at "
            f"{row.power_W_mean:.0f} W "
            f"(idle power alone: {row.idle_energy_share_mean:.0%} of its energy); "
            f"{row.slope_J_per_step_other:.2f} J per step on {row.other} against "
            f"{row.slope_J_per_step_reference:.2f} J on {row.reference} "
            f"({row.slope_ratio_other_to_reference:.2f}x, {direction} per step; rank {row.rank_reference} -> "
            f"{row.rank_other})"
        )
    rho, n = busy_correlation(explained, "slope_ratio_other_to_reference")
    lines.append(f"Spearman rho, busy fraction vs per-step ratio: {rho:.2f} (n = {n} models on both "
                 "platforms)")
    return lines


def host_sentence(host: pd.DataFrame) -> str:
    """The least and the most busy model of a :func:`.summaries.host_summary`, the rank correlation of busy
    fraction and power, and the range of CPU time / wall time."""
    rho, n = busy_correlation(host, "power_W_mean")
    low = host.loc[host["gpu_busy_fraction_mean"].idxmin()]
    high = host.loc[host["gpu_busy_fraction_mean"].idxmax()]

    def describe(row: pd.Series) -> str:
        return (f"{_label(row['model'])} ({row['gpu_busy_fraction_mean']:.2f}, {row['power_W_mean']:.0f} W, "
                f"idle power {row['idle_energy_share_mean']:.0%} of its energy)")

    return (
        f"Over {n} models: Spearman rho of busy fraction vs mean power {rho:.2f}; least busy "
        f"{describe(low)}, most busy {describe(high)}. CPU time / wall time per model: "
        f"{host['cpu_time_per_wall_mean'].min():.2f}-{host['cpu_time_per_wall_mean'].max():.2f}."
    )
