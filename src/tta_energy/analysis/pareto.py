"""Energy-vs-quality Pareto fronts, as the study drew them, with bootstrap front frequencies.

A configuration is a (model, steps) pair of the quality experiment. For each platform, data set and metric
its x is the mean GPU energy per generation (lower is better) and its y the metric's score (CLAP: higher is
better; FAD: lower is better). A configuration is Pareto-optimal when no other configuration of the same
data set has energy <= and score better-or-equal with at least one strict inequality.
The study used the 300-clip energy sums; the mean per generation is the same front (constant factor).

What the study lacked: how firmly a configuration sits on the front. Generations' energies are resampled
with replacement within each configuration (and, independently, its per-clip scores, where a score table
has them: the energy and score of one caption are not kept together) and the front is recomputed;
``front_frequency`` is the share of resamples in which the configuration is on it.
The study published only mean scores, so with its data the frequency reflects energy noise only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tta_energy.analysis.summaries import PLATFORM_KEYS, AnalysisError
from tta_energy.intervals import CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_means, percentile_interval

#: Metrics a front can be drawn for: CLAP score (higher is better) and the Frechet distances (lower is better;
#: the study's "fad" is FAD-inf, the quality module also writes plain FAD and its FAD-inf variants).
HIGHER_IS_BETTER: dict[str, bool] = {
    "clap": True,
    "fad": False,
    "fad_inf": False,
    "fad_inf_without_replacement": False,
}


def pareto_mask(energy: np.ndarray, score: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """True where no other point has energy <= and score at least as good, one of the two strictly."""
    energy = np.asarray(energy, dtype="float64")
    quality = np.asarray(score, dtype="float64") * (1.0 if higher_is_better else -1.0)
    # pairwise: does j dominate i?
    e_le = energy[None, :] <= energy[:, None]
    q_ge = quality[None, :] >= quality[:, None]
    strict = (energy[None, :] < energy[:, None]) | (quality[None, :] > quality[:, None])
    dominated = (e_le & q_ge & strict).any(axis=1)
    return ~dominated & np.isfinite(energy) & np.isfinite(quality)  # an unknown point is on no front


def pareto_mask_batched(energy: np.ndarray, score: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """:func:`pareto_mask` for each row of (B, n) arrays at once."""
    quality = np.asarray(score, dtype="float64") * (1.0 if higher_is_better else -1.0)
    energy = np.asarray(energy, dtype="float64")
    e_i, e_j = energy[:, :, None], energy[:, None, :]
    q_i, q_j = quality[:, :, None], quality[:, None, :]
    dominated = ((e_j <= e_i) & (q_j >= q_i) & ((e_j < e_i) | (q_j > q_i))).any(axis=2)
    return ~dominated & np.isfinite(energy) & np.isfinite(quality)


def study_sweep_front(energy: np.ndarray, score: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """The study's own algorithm: sort by energy (ties: better score first), keep every point whose score is
    at least the last kept one's. Kept for comparison: being non-strict, it also keeps a point that only ties
    the score of a cheaper one, which :func:`pareto_mask` (strict dominance) drops."""
    energy = np.asarray(energy, dtype="float64")
    quality = np.asarray(score, dtype="float64") * (1.0 if higher_is_better else -1.0)
    order = np.lexsort((-quality, energy))
    keep = np.zeros(len(energy), dtype=bool)
    best = -np.inf
    for i in order:
        if quality[i] >= best:
            keep[i] = True
            best = quality[i]
    return keep


def _energy_per_config(quality_runs: pd.DataFrame) -> pd.DataFrame:
    keys = [*PLATFORM_KEYS, "dataset", "steps"]
    g = quality_runs.groupby(keys, sort=True, dropna=False)
    # a total with a generation whose energy was not measured (a run without a GPU) is unknown: NaN, never 0
    energies = g[["gpu_energy_J", "gpu_energy"]]
    sums = energies.sum().where(energies.count().eq(g.size(), axis=0))
    return g.agg(
        denoiser_calls=("denoiser_calls", "max"),
        n_generations=("gpu_energy_J", "count"),
        gpu_energy_J_mean=("gpu_energy_J", "mean"),
    ).join(sums.rename(columns={"gpu_energy_J": "gpu_energy_J_sum", "gpu_energy": "gpu_energy_kWh_sum"})
           ).reset_index()


def pareto_table(
    runs: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    experiment: str = "quality",
    score_scope: str = "subset",
    n_boot: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> pd.DataFrame:
    """Every (model, steps) of each platform x data set x metric with its energy, score and front membership.

    ``scores`` is a tidy score table (``source, model, dataset, steps, metric, value[, scope, caption_id]``);
    rows with a ``caption_id`` are per-clip scores (averaged, and resampled by the bootstrap), rows
    without are one score per configuration. Energies and scores are joined on (source, model, dataset,
    steps), never by position.
    """
    quality = runs[runs["experiment"] == experiment]
    if quality.empty:
        raise AnalysisError(f"no usable '{experiment}' rows (status ok, not warm-up) in the run tables")
    if scores is None or scores.empty:
        raise AnalysisError("no score table (CLAP / FAD) to draw the fronts with")
    scores = scores.copy()
    if "scope" in scores.columns:
        scores = scores[scores["scope"].fillna(score_scope).replace("", score_scope) == score_scope]
    if "caption_id" not in scores.columns:
        scores["caption_id"] = ""
    scores["caption_id"] = scores["caption_id"].fillna("").astype(str)
    energy = _energy_per_config(quality)
    rng = np.random.default_rng(seed)
    # one set of energy resamples per configuration, shared by every metric of its data set
    gen_groups = {
        k: g["gpu_energy_J"].to_numpy(dtype="float64")
        for k, g in quality.groupby(
            ["source", "gpu_name", "model", "dtype", "size", "dataset", "steps"], dropna=False
        )
    }
    boot_energy = {k: bootstrap_means(v, n_boot, rng) for k, v in gen_groups.items()}
    out = []
    for metric, mscores in scores.groupby("metric", sort=True):
        if metric not in HIGHER_IS_BETTER:
            continue  # a metric without a known direction has no front
        keys = ["source", "model", "dataset", "steps"]
        per_clip = mscores[mscores["caption_id"] != ""]
        aggregate = mscores[mscores["caption_id"] == ""]
        # where per-clip scores exist they define the score (their mean) and are resampled; an aggregate row
        # for the same configuration (the same number, from the summary table) is then redundant
        covered = pd.MultiIndex.from_frame(per_clip[keys].drop_duplicates())
        aggregate = aggregate[~pd.MultiIndex.from_frame(aggregate[keys]).isin(covered)]
        mean_scores = pd.concat(
            [
                aggregate.groupby(["source", "model", "dataset", "steps"], as_index=False)["value"]
                .mean()
                .assign(score_resampled=False),
                per_clip.groupby(["source", "model", "dataset", "steps"], as_index=False)["value"]
                .mean()
                .assign(score_resampled=True),
            ]
        ).rename(columns={"value": "score"})
        merged = energy.merge(mean_scores, on=["source", "model", "dataset", "steps"], how="inner")
        if merged.empty:
            continue
        clip_values = {
            k: g["value"].to_numpy(dtype="float64")
            for k, g in per_clip.groupby(["source", "model", "dataset", "steps"])
        }
        for _, front in merged.groupby(["source", "gpu_name", "dataset"], sort=True, dropna=False):
            front = front.sort_values(["model", "steps"]).reset_index(drop=True)
            higher = HIGHER_IS_BETTER[metric]
            front["metric"] = metric
            front["higher_is_better"] = higher
            front["pareto_optimal"] = pareto_mask(front["gpu_energy_J_mean"], front["score"], higher)
            keys = [
                tuple(r)
                for r in front[
                    ["source", "gpu_name", "model", "dtype", "size", "dataset", "steps"]
                ].itertuples(index=False)
            ]
            if n_boot:
                e = np.stack([boot_energy[k] for k in keys], axis=1)
                s = np.stack(
                    [
                        _resample_scores(clip_values.get((k[0], k[2], k[5], k[6])), score, n_boot, rng)
                        for k, score in zip(keys, front["score"], strict=True)
                    ],
                    axis=1,
                )
                on_front = pareto_mask_batched(e, s, higher)
                front["front_frequency"] = on_front.mean(axis=0)
                cis = [percentile_interval(e[:, i], confidence) for i in range(len(keys))]
            else:
                front["front_frequency"] = np.nan
                cis = [(np.nan, np.nan)] * len(keys)
            front["gpu_energy_J_ci_low"] = [c[0] for c in cis]
            front["gpu_energy_J_ci_high"] = [c[1] for c in cis]
            front["n_boot"] = n_boot
            out.append(front)
    if not out:
        raise AnalysisError(
            "no (model, data set, steps) configuration has both quality-run energies and scores "
            f"(metrics {', '.join(HIGHER_IS_BETTER)})"
        )
    table = pd.concat(out, ignore_index=True)
    first = ["dataset", "metric", "model", "steps", "gpu_energy_J_mean", "score", "pareto_optimal"]
    return table[first + [c for c in table.columns if c not in first]]


def _resample_scores(
    values: np.ndarray | None, score: float, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    if values is None or len(values) == 0:
        return np.full(n_boot, score)
    return bootstrap_means(values, n_boot, rng)
