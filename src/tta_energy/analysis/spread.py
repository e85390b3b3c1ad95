"""How much of a model's energy spread lies between processes and how much within one (variance components).

Each ``run_id`` is one process (one ``tta-energy sweep`` or ``campaign run``) that measured several cells of a
model in interleaved repeats. Per model (and platform) of one experiment table, the log GPU energy of each
generation is fitted with a linear mixed model (statsmodels ``MixedLM``, REML)::

    log(gpu_energy_J) = mean of its cell (configuration: fixed effect) + u[run_id] + e
    u ~ N(0, sd_between^2)   e ~ N(0, sd_within^2)

``sd_between`` is how far one process's level sits from another's for the same configuration (host and process
state: CPU pace, clocks, allocator, ...); ``sd_within`` is the scatter of repeats inside a process. On the log
scale an SD reads as a relative change, reported as ``exp(sd) - 1`` in percent. ``between_process_share`` is
sd_between^2 / (sd_between^2 + sd_within^2). Its 95 % interval is a parametric bootstrap (simulate from the
fit, refit, percentile interval) with a fixed seed. With few processes per model (1-4) the between-process SD
rests on very few values: the intervals are wide, and a share of 0 (the REML estimate at its boundary) means
only that these processes did not differ more than their repeats.

What moves the energy of one configuration: within each cell (its mean taken out), log energy is regressed on
log wall time. ``energy_time_r2`` is the share of that within-cell variance that the generation's duration
explains and ``energy_time_slope`` its elasticity: a slope near 1 with a high share means a generation spent
more energy because it took longer at the same power (the pace of the host that launches the kernels), a
slope near 0 that its duration hardly mattered.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tta_energy.analysis.summaries import usable_runs
from tta_energy.experiments.campaign_plan import CELL_COLUMNS
from tta_energy.intervals import CONFIDENCE, percentile_interval, t_half_width_of
from tta_energy.models import catalogue

#: The experiments whose cells are repeated; the quality sweep's spread is between captions, not repeats.
SPREAD_EXPERIMENTS: tuple[str, ...] = tuple(e for e in CELL_COLUMNS if e != "quality")
#: Rows are fitted per experiment and per these columns (dtype is part of the cell, see :func:`cell_columns`).
GROUP_KEYS: tuple[str, ...] = ("source", "gpu_name", "model", "size")
#: Parametric bootstrap draws for the interval of the between-process share (few: each draw refits).
DEFAULT_DRAWS = 100
#: Optimisers tried in order, the first that converges kept (gradient ones stall or fail near zero variance).
OPTIMIZERS: tuple[str, ...] = ("powell", "lbfgs", "nm")
#: Below this share the between-process variance is at REML's boundary: the optimiser's residue becomes 0.
BOUNDARY_SHARE = 1e-6

SPREAD_COLUMNS: tuple[str, ...] = (
    "experiment",
    *GROUP_KEYS,
    "n_rows",
    "n_processes",
    "n_gpus",
    "n_cells",
    "between_process_sd_pct",
    "within_process_sd_pct",
    "between_process_share",
    "between_process_share_ci_low",
    "between_process_share_ci_high",
    "between_process_sd_pct_ci_low",
    "between_process_sd_pct_ci_high",
    "bootstrap_draws",
    "gpu_busy_fraction_mean",
    "energy_time_slope",
    "energy_time_r2",
    "reason",
)
#: Decimals the table keeps (percentages 3, shares and fractions 4): the optimiser's last digits differ
#: between machines.
DECIMALS: dict[str, int] = {
    c: 3 if "_pct" in c else 4
    for c in SPREAD_COLUMNS if c.startswith(("between_", "within_", "gpu_busy", "energy_time"))
}


def cell_columns(experiment: str) -> tuple[str, ...]:
    """The columns naming a cell of ``experiment``: the campaign's cell columns, and the dtype."""
    return tuple(dict.fromkeys((*CELL_COLUMNS[experiment], "dtype")))


def _pct(log_sd: float) -> float:
    return float(np.expm1(log_sd) * 100)


def energy_time(rows: pd.DataFrame, cell: pd.Series) -> tuple[float, float]:
    """(slope, R^2) of log GPU energy on log wall time within cells (each cell's means taken out); NaN when
    fewer than three rows vary within their cell."""
    logs = pd.DataFrame({"energy": np.log(rows["gpu_energy_J"].to_numpy(dtype="float64")),
                         "time": np.log(rows["wall_s"].to_numpy(dtype="float64"))}, index=rows.index)
    logs = logs[np.isfinite(logs).all(axis=1)]
    centred = logs - logs.groupby(cell.loc[logs.index]).transform("mean")
    energy, time = centred["energy"].to_numpy(), centred["time"].to_numpy()
    if len(centred) < 3 or not (time**2).sum() > 0 or not (energy**2).sum() > 0:
        return np.nan, np.nan
    slope = float((energy * time).sum() / (time**2).sum())
    return slope, float(np.corrcoef(energy, time)[0, 1] ** 2)


def _fit_result(endog: np.ndarray, exog: np.ndarray, groups: np.ndarray) -> Any | None:
    """The first REML fit of the mixed model that converges (statsmodels ``MixedLMResults``); None if none."""
    import statsmodels.api as sm

    model = sm.MixedLM(endog, exog, groups=groups)
    for method in OPTIMIZERS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boundary / Hessian warnings: zero variance is a valid estimate
            try:
                result = model.fit(reml=True, method=[method])
            except (np.linalg.LinAlgError, ValueError):
                continue
        if result.converged and np.isfinite(result.scale):
            return result
    return None


def _fit(endog: np.ndarray, exog: np.ndarray, groups: np.ndarray) -> tuple[float, float, np.ndarray] | None:
    """(between variance, within variance, fitted fixed part) of a REML fit; None if none converges."""
    result = _fit_result(endog, exog, groups)
    if result is None:
        return None
    between, within = max(float(np.asarray(result.cov_re)[0, 0]), 0.0), float(result.scale)
    if between < BOUNDARY_SHARE * (between + within):
        between = 0.0
    return between, within, exog @ np.asarray(result.fe_params)


def _bootstrap(
    fixed: np.ndarray,
    groups: np.ndarray,
    exog: np.ndarray,
    between: float,
    within: float,
    draws: int,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Between-process shares and SDs (log scale) of fits to ``draws`` data sets simulated from the fit."""
    rng = np.random.default_rng(seed)
    labels, index = np.unique(groups, return_inverse=True)
    shares, sds = [], []
    for _ in range(draws):
        simulated = (
            fixed
            + rng.normal(0.0, np.sqrt(between), len(labels))[index]
            + rng.normal(0.0, np.sqrt(within), len(fixed))
        )
        fit = _fit(simulated, exog, groups)
        if fit is not None:
            shares.append(fit[0] / (fit[0] + fit[1]))
            sds.append(np.sqrt(fit[0]))
    return np.asarray(shares), np.asarray(sds)


def _distinct_gpus(rows: pd.DataFrame) -> int:
    """The GPU cards (``gpu_uuid``) behind ``rows``; 0 where no row recorded one. When it equals the number of
    processes, a difference between processes cannot be told apart from one between cards."""
    if "gpu_uuid" not in rows.columns:
        return 0
    uuids = rows["gpu_uuid"].dropna().astype(str)
    return int(uuids[uuids != ""].nunique())


def process_spread(
    rows: pd.DataFrame,
    cells: Sequence[str],
    *,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, object]:
    """The variance components of one model's ``rows`` (usable rows of one experiment) with cells ``cells``.

    Estimates are NaN, with ``reason`` saying why, when the rows cannot separate the two: one process, no
    configuration measured by two processes, no repeat left once the cells and processes are fitted, or a fit
    that does not converge. Rows without a ``run_id`` or a positive GPU energy are left out."""
    named = rows["run_id"].notna() & (rows["run_id"].astype(str) != "")  # a row without run_id has no process
    measured = rows["gpu_energy_J"].astype("float64") > 0
    empty_reason = ("no row with a GPU energy (measured without a GPU?)" if not measured.any()
                    else "no row with a GPU energy names its process (run_id)")
    rows = rows[named & measured]
    cell = rows.groupby(list(cells), sort=True, dropna=False).ngroup()
    groups = rows["run_id"].astype(str).to_numpy()
    busy = rows["gpu_busy_fraction"] if "gpu_busy_fraction" in rows.columns else pd.Series(dtype="float64")
    out: dict[str, object] = {
        "n_rows": len(rows),
        "n_processes": len(set(groups)),
        "n_gpus": _distinct_gpus(rows),
        "n_cells": cell.nunique(),
        "between_process_sd_pct": np.nan,
        "within_process_sd_pct": np.nan,
        "between_process_share": np.nan,
        "between_process_share_ci_low": np.nan,
        "between_process_share_ci_high": np.nan,
        "between_process_sd_pct_ci_low": np.nan,
        "between_process_sd_pct_ci_high": np.nan,
        "bootstrap_draws": 0,
        "gpu_busy_fraction_mean": float(busy.astype("float64").mean()) if busy.notna().any() else np.nan,
        "energy_time_slope": np.nan,
        "energy_time_r2": np.nan,
        "reason": "",
    }
    if "wall_s" in rows.columns:
        out["energy_time_slope"], out["energy_time_r2"] = energy_time(rows, cell)
    shared = pd.Series(groups, index=rows.index).groupby(cell).nunique()
    if rows.empty:
        out["reason"] = empty_reason
        return out
    if out["n_processes"] < 2:
        out["reason"] = "one process: between-process spread cannot be estimated"
        return out
    if (shared < 2).all():
        out["reason"] = "no configuration measured in more than one process"
        return out
    if out["n_rows"] <= out["n_cells"] + out["n_processes"] - 1:
        out["reason"] = "too few repeats to separate the processes from the configurations"
        return out
    dummies = pd.get_dummies(cell, drop_first=True, dtype="float64")
    exog = np.column_stack([np.ones(len(rows)), dummies.to_numpy()])
    endog = np.log(rows["gpu_energy_J"].to_numpy(dtype="float64"))
    fit = _fit(endog, exog, groups)
    if fit is None:
        out["reason"] = "REML fit did not converge (" + ", ".join(OPTIMIZERS) + ")"
        return out
    between, within, fixed = fit
    share = between / (between + within)
    out.update(
        between_process_sd_pct=_pct(np.sqrt(between)),
        within_process_sd_pct=_pct(np.sqrt(within)),
        between_process_share=share,
    )
    if between == 0.0:
        out["reason"] = "between-process variance at zero (REML boundary)"
    if draws > 0:
        shares, sds = _bootstrap(fixed, groups, exog, between, within, draws, seed)
        out["bootstrap_draws"] = len(shares)
        if len(shares) >= draws / 2:
            low, high = percentile_interval(shares, confidence)
            sd_low, sd_high = percentile_interval(sds, confidence)
            out.update(
                between_process_share_ci_low=low,
                between_process_share_ci_high=high,
                between_process_sd_pct_ci_low=_pct(sd_low),
                between_process_sd_pct_ci_high=_pct(sd_high),
            )
    return out


def model_groups(runs: pd.DataFrame, experiments: Sequence[str]) -> Iterator[tuple[str, tuple, pd.DataFrame]]:
    """(experiment, platform-and-model key of :data:`GROUP_KEYS`, rows) of the rows that enter summaries
    (:func:`.summaries.usable_runs`: status ok, warm-ups left out, so a run table can be passed as read), in
    the order of ``experiments`` and the catalogue's model order; experiments without rows are left out."""
    runs = usable_runs(runs)
    for experiment in experiments:
        rows = runs[runs["experiment"] == experiment]
        if rows.empty:
            continue
        groups = dict(iter(rows.groupby(list(GROUP_KEYS), sort=True, dropna=False)))
        models = catalogue.ordered({key[2] for key in groups})
        for key in sorted(groups, key=lambda k: (models.index(k[2]), str(k[0]), str(k[1]), str(k[3]))):
            yield experiment, key, groups[key]


def spread_table(
    runs: pd.DataFrame,
    *,
    experiments: Sequence[str] = SPREAD_EXPERIMENTS,
    draws: int = DEFAULT_DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per experiment x platform x model of ``runs``, in the order of ``experiments`` and the
    catalogue's model order; experiments without rows are left out. Only the rows that enter summaries are
    fitted (:func:`.summaries.usable_runs`: status ok, warm-ups left out), so a run table can be passed as
    read."""
    out = []
    for experiment, key, rows in model_groups(runs, experiments):
        fit = process_spread(rows, cell_columns(experiment), draws=draws, seed=seed)
        out.append({"experiment": experiment, **dict(zip(GROUP_KEYS, key, strict=True)), **fit})
    table = pd.DataFrame(out, columns=list(SPREAD_COLUMNS))
    return table.round(DECIMALS)


# ---------------------------------------------------------------------------------------------------------
# A cell's interval with the process level counted
# ---------------------------------------------------------------------------------------------------------
CELL_INTERVAL_COLUMNS: tuple[str, ...] = (
    "experiment", *GROUP_KEYS, "cell", "n_runs", "n_processes", "gpu_energy_J_mean",
    "ci95_half_width_rel_repeats", "ci95_half_width_rel_processes", "reason",
)


def cell_intervals(rows: pd.DataFrame, cells: Sequence[str]) -> pd.DataFrame:
    """Per cell of one model's ``rows``: the mean energy and two 95% half-widths relative to it — from the
    repeats alone (Student t, the campaign's done rule) and with the process level counted (the cell's mean
    in the model's mixed model with cell means as fixed effects and a random intercept per process: a Wald
    interval of the log mean, its upper side ``exp(1.96 se) - 1``; the variance components are pooled over the
    model's cells, so a cell measured in few processes borrows the model's between-process spread). The Wald
    interval treats the variance components as known: with 2-4 processes it is itself on the narrow side."""
    from scipy import stats

    named = rows["run_id"].notna() & (rows["run_id"].astype(str) != "")
    rows = rows[named & (rows["gpu_energy_J"].astype("float64") > 0)]
    if rows.empty:
        return pd.DataFrame(columns=[c for c in CELL_INTERVAL_COLUMNS
                                     if c not in ("experiment", *GROUP_KEYS)])
    cols = list(cells)
    label = rows[cols].astype(str).apply(lambda r: ", ".join(f"{c}={v}" for c, v in r.items()), axis=1)
    code = rows.groupby(cols, sort=True, dropna=False).ngroup()
    energy = rows["gpu_energy_J"].astype("float64")
    groups = rows["run_id"].astype(str).to_numpy()
    out = pd.DataFrame({"cell": label.groupby(code).first(), "n_runs": energy.groupby(code).size(),
                        "n_processes": pd.Series(groups, index=rows.index).groupby(code).nunique(),
                        "gpu_energy_J_mean": energy.groupby(code).mean()})
    sd = energy.groupby(code).std(ddof=1)
    half = t_half_width_of(sd, out["n_runs"], CONFIDENCE)
    out["ci95_half_width_rel_repeats"] = half / out["gpu_energy_J_mean"]
    out["ci95_half_width_rel_processes"] = np.nan
    out["reason"] = ""
    if len(set(groups)) < 2:
        out["reason"] = "one process: the process level cannot be counted"
        return out.reset_index(drop=True)
    exog = pd.get_dummies(code, dtype="float64").to_numpy()  # one column per cell: its log mean
    result = _fit_result(np.log(energy.to_numpy()), exog, groups)
    if result is None:
        out["reason"] = "REML fit did not converge (" + ", ".join(OPTIMIZERS) + ")"
        return out.reset_index(drop=True)
    se = np.asarray(result.bse_fe, dtype="float64")[: len(out)]
    # the upper side, exp(z se) - 1: the interval is symmetric in log energy (its lower side is smaller)
    out["ci95_half_width_rel_processes"] = np.expm1(stats.norm.ppf(0.5 + CONFIDENCE / 2) * se)
    return out.reset_index(drop=True)


def cell_interval_table(runs: pd.DataFrame, *,
                        experiments: Sequence[str] = SPREAD_EXPERIMENTS) -> pd.DataFrame:
    """One row per cell of every experiment x platform x model of ``runs``, as :func:`spread_table` orders
    them; like it, of the rows that enter summaries only, so a run table can be passed as read."""
    out = []
    for experiment, key, rows in model_groups(runs, experiments):
        cells = cell_intervals(rows, cell_columns(experiment))
        for col, value in zip(["experiment", *GROUP_KEYS], [experiment, *key], strict=True):
            cells[col] = value
        out.append(cells)
    if not out:
        return pd.DataFrame(columns=list(CELL_INTERVAL_COLUMNS))
    table = pd.concat(out, ignore_index=True)[list(CELL_INTERVAL_COLUMNS)]
    return table.round({"gpu_energy_J_mean": 3, "ci95_half_width_rel_repeats": 4,
                        "ci95_half_width_rel_processes": 4})
