"""The levers experiment's report: ``levers.csv`` (one row per model x spec x steps x batch), the rules that
pick the run each reduction is taken in and the best configurations, and :func:`build_report`, which writes
that table, ``levers_summary.md`` (:mod:`tta_energy.levers.summary`) and ``levers.png`` from one or more raw
folders written by :func:`tta_energy.levers.experiment.run_levers`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tta_energy import schema
from tta_energy.fileio import check_file_targets, warn_if_cut, write_csv_atomic, write_text_atomic
from tta_energy.intervals import ratio_interval
from tta_energy.levers.apply import compilations
from tta_energy.levers.ceiling import EXPERIMENT
from tta_energy.levers.equivalence import error_tolerance, judge_lossless
from tta_energy.levers.plot import BEST_ANY_BAR, BEST_LOSSLESS_BAR, STUDY_DEFAULT_BAR, plot_levers
from tta_energy.levers.spec import DEFAULT_SPEC, REFERENCE_SPEC, TARGET_BATCH, TARGET_STEPS, LeversError
from tta_energy.levers.tables import (
    CEILING_FILE,
    COMPILE_FILE,
    CONFIGS_FILE,
    EQUIVALENCE_FILE,
    FIGURE_FILE,
    LEVERS_TABLE,
    PROFILE_FILE,
    RUNS_FILE,
    SIDE_COLUMNS,
    SUMMARY_FILE,
    TARGETS_FILE,
    UNIT_IN_RUN,
    ceiling_rows,
    compile_cache_hit_share,
    context_losses,
    first_over_second,
    generation_failures,
    read_runs_of,
    read_side,
    unique_folders,
    warmups,
)
from tta_energy.models import catalogue


def lever_targets(model: str) -> catalogue.LeverTargets:
    """The catalogue's levers targets of ``model`` (the defaults for a model outside the catalogue)."""
    try:
        return catalogue.entry(model).levers
    except catalogue.UnknownModelError:
        return catalogue.LeverTargets()


LEVERS_COLUMNS: tuple[str, ...] = (
    "run_id", "gpu_name", "model", "size", "weights", "optimize", "dtype", "applied", "skipped",
    "changes_behaviour", "duration_s", "steps", "waveforms_per_prompt", "n_runs", "wall_s", "gpu_energy_J",
    "gpu_energy_J_std", "gpu_energy_J_per_clip", "gpu_energy_J_per_10s_clip", "denoising_J_per_call",
    "denoising_share", "reduction_vs_none",
    "gflop", "rel_error_latents", "rel_error_audio", "yardstick_latents", "yardstick_audio",
    "tolerance_latents", "tolerance_audio", "lossless", "tflop_per_J", "ceiling_tflop_per_J",
    "fraction_of_ceiling", "compile_s", "compile_J", "compile_cache_hit_share",
    "payoff_clips",
)
#: what levers_configs.csv adds to a cell: what was applied, its FLOPs, the seconds and joules of applying it
CONFIG_COLUMNS: tuple[str, ...] = ("applied", "skipped", "changes_behaviour", "gflop", "setup_s", "setup_J")


def study_dtype(model: str, fallback: str = "float32") -> str:
    """The precision the study ran ``model`` in (the catalogue's; ``fallback`` for a model outside it)."""
    try:
        return catalogue.entry(model).study_dtype
    except catalogue.UnknownModelError:
        return fallback


#: what makes two runs of a model compute the same outputs and references: a run borrows another's errors only
#: where all of these agree (``run_context``)
CONTEXT_COLUMNS: tuple[str, ...] = ("size", "duration_s", "seed", "weights")
#: the columns ``run_context`` adds: the context of each run and model, as text ('' where unknown)
CONTEXT_KEYS: tuple[str, ...] = tuple(f"context_{c}" for c in CONTEXT_COLUMNS)


def run_context(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (run_id, model): :data:`CONTEXT_COLUMNS` as text, under :data:`CONTEXT_KEYS` ('' where the run
    table lacks the column or the value)."""
    ctx = runs[["run_id", "model"]].drop_duplicates().set_index(["run_id", "model"])
    for col, key in zip(CONTEXT_COLUMNS, CONTEXT_KEYS, strict=True):
        values = runs.groupby(["run_id", "model"])[col].first() if col in runs else pd.Series(dtype=object)
        ctx[key] = values.reindex(ctx.index).map(lambda v: "" if pd.isna(v) else str(v))
    return ctx.reset_index()


def _with_context(frame: pd.DataFrame, ctx: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the :data:`CONTEXT_KEYS` of its (run_id, model) ('' for a run without run rows)."""
    out = frame.drop(columns=[k for k in CONTEXT_KEYS if k in frame]).merge(ctx, on=["run_id", "model"],
                                                                              how="left")
    out[list(CONTEXT_KEYS)] = out[list(CONTEXT_KEYS)].fillna("")
    return out


def _yardsticks(eq: pd.DataFrame) -> dict[tuple[str, ...], tuple[float, float]]:
    """The error of the study's default (``none``: the model's default precision, eager) against fp32: per
    (run, model, steps), and per (model, context, steps) over all runs (a run that did not measure ``none``
    at a step count borrows it from another run of the same model, size, duration, seed and weights: same
    outputs, same reference). ``eq`` carries :data:`CONTEXT_KEYS` (:func:`_with_context`)."""
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    if eq.empty:
        return out
    none = eq[eq["optimize"] == DEFAULT_SPEC]
    for (run_id, model, steps), g in none.groupby(["run_id", "model", "steps"]):
        out[(run_id, model, str(int(steps)))] = (float(g["rel_error_latents"].max()),
                                                 float(g["rel_error_audio"].max()))
    for (model, *context, steps), g in none.groupby(["model", *CONTEXT_KEYS, "steps"]):
        out[(model, *context, str(int(steps)))] = (float(g["rel_error_latents"].max()),
                                                   float(g["rel_error_audio"].max()))
    return out


def levers_table(dirs: Sequence[Path], runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (run, model, spec, steps, batch): energy, equivalence, FLOP/J vs ceiling, compile cost
    (``runs``: the folders' generation rows when already read, :func:`read_runs_of`)."""
    dirs = unique_folders(dirs)
    runs = read_runs_of(dirs) if runs is None else runs
    if runs.empty:
        raise LeversError(f"no {RUNS_FILE} under {', '.join(map(str, dirs))}")
    runs = runs[runs["experiment"] == EXPERIMENT]
    context = run_context(runs)
    eq = read_side(dirs, EQUIVALENCE_FILE)
    if not eq.empty:
        eq = _with_context(eq, context)
    cfg = read_side(dirs, CONFIGS_FILE)
    ceil = read_side(dirs, CEILING_FILE)
    keys = ["run_id", "model", "optimize", "steps", "waveforms_per_prompt"]
    ok = runs[schema.measured_generations(runs)].copy()
    if ok.empty:
        raise LeversError("no measured levers rows with status ok")
    ok["clip_s"] = ok["audio_seconds"] / ok["n_clips"].astype(float)
    agg = ok.groupby(keys, dropna=False).agg(
        gpu_name=("gpu_name", "first"), size=("size", "first"), weights=("weights", "first"),
        dtype=("dtype", "first"),
        duration_s=("duration_s", "first"),
        n_runs=("gpu_energy_J", "count"), wall_s=("wall_s", "mean"), gpu_energy_J=("gpu_energy_J", "mean"),
        gpu_energy_J_std=("gpu_energy_J", "std"), n_clips=("n_clips", "first"), clip_s=("clip_s", "mean"),
        energy_denoising_J=("energy_denoising_J", "mean"), denoiser_calls=("denoiser_calls", "mean"),
    ).reset_index()
    agg["gpu_energy_J_per_clip"] = agg["gpu_energy_J"] / agg["n_clips"].astype(float)
    agg["gpu_energy_J_per_10s_clip"] = agg["gpu_energy_J_per_clip"] * 10.0 / agg["clip_s"]
    agg["denoising_J_per_call"] = agg["energy_denoising_J"] / agg["denoiser_calls"]
    agg["denoising_share"] = agg["energy_denoising_J"] / agg["gpu_energy_J"]
    cell_keys = ["run_id", "model", "steps", "waveforms_per_prompt"]
    none = agg[agg["optimize"] == DEFAULT_SPEC].set_index(cell_keys)
    idx = pd.MultiIndex.from_frame(agg[cell_keys])
    none_clip = none["gpu_energy_J_per_clip"].reindex(idx).to_numpy()
    agg["reduction_vs_none"] = none_clip / agg["gpu_energy_J_per_clip"].to_numpy()
    # what was applied, FLOPs
    if not cfg.empty:
        c = cfg[cfg["status"] == "ok"].drop_duplicates(keys).reindex(columns=[*keys, *CONFIG_COLUMNS])
        agg = agg.merge(c, on=keys, how="left")
    else:
        for col in CONFIG_COLUMNS:
            agg[col] = np.nan
    agg["changes_behaviour"] = agg["changes_behaviour"].map(lambda v: str(v).lower() == "true")
    # equivalence (batch-1 error of the same spec and steps applies to every batch of the spec; a run that
    # measured the spec at other batch sizes only, as a later device call of a plan does, takes the worst
    # batch-1 error of the spec over the other runs of the same context: same outputs, same reference)
    agg = _with_context(agg, context)
    yard = _yardsticks(eq)
    if not eq.empty:
        errors = {c: (c, "max") for c in ("rel_error_latents", "rel_error_audio")}
        worst = eq.groupby(["run_id", "model", "optimize", "steps"]).agg(**errors).reset_index()
        agg = agg.merge(worst, on=["run_id", "model", "optimize", "steps"], how="left")
        shared = ["model", *CONTEXT_KEYS, "optimize", "steps"]
        anywhere = eq.groupby(shared).agg(**errors)
        idx = pd.MultiIndex.from_frame(agg[shared])
        for col in errors:
            agg[col] = agg[col].fillna(pd.Series(anywhere[col].reindex(idx).to_numpy(), index=agg.index))
    else:
        agg["rel_error_latents"] = np.nan
        agg["rel_error_audio"] = np.nan
    ys = [yard.get((r.run_id, r.model, str(int(r.steps))),
                   yard.get((r.model, *(getattr(r, k) for k in CONTEXT_KEYS), str(int(r.steps))),
                            (np.nan, np.nan))) for r in agg.itertuples()]
    agg["yardstick_latents"] = [y[0] for y in ys]
    agg["yardstick_audio"] = [y[1] for y in ys]
    studied = [study_dtype(r.model, r.dtype) for r in agg.itertuples()]
    pairs = list(zip(studied, agg.itertuples(), strict=True))
    agg["tolerance_latents"] = [error_tolerance(d, r.yardstick_latents) for d, r in pairs]
    agg["tolerance_audio"] = [error_tolerance(d, r.yardstick_audio) for d, r in pairs]
    agg["lossless"] = [judge_lossless(r.optimize, d, r.rel_error_latents, r.yardstick_latents,
                                      r.rel_error_audio, r.yardstick_audio) for d, r in pairs]
    # FLOP per joule against the ceiling measured in the same run
    agg["tflop_per_J"] = agg["gflop"] / 1e3 / agg["gpu_energy_J"]
    ceil = ceiling_rows(ceil, "bf16")
    if not ceil.empty:
        per_run = ceil.groupby("run_id")["tflop_per_J"].mean()
        agg["ceiling_tflop_per_J"] = agg["run_id"].map(per_run)
    else:
        agg["ceiling_tflop_per_J"] = np.nan
    agg["fraction_of_ceiling"] = agg["tflop_per_J"] / agg["ceiling_tflop_per_J"]
    # one-time cost: warm-up minus a steady generation of the same cell; payoff against none's energy per clip
    # two warm-ups of a cell: the second is the steady baseline (a cell the plan does not measure)
    first, second = warmups(runs)
    paired = first_over_second(first, second)
    single = first.drop(index=second.index).rename(
        columns={"wall_s": "warm_wall_s", "gpu_energy_J": "warm_J"}).reset_index()
    steady = agg.merge(single, on=keys, how="inner")
    steady["compile_s"] = (steady["warm_wall_s"] - steady["wall_s"]).clip(lower=0.0)
    steady["compile_J"] = (steady["warm_J"] - steady["gpu_energy_J"]).clip(lower=0.0)
    cost_cols = [*UNIT_IN_RUN, "compile_s", "compile_J"]
    cost = pd.concat([steady[cost_cols], paired[cost_cols]], ignore_index=True)
    cost = cost.drop_duplicates(UNIT_IN_RUN)
    agg = agg.merge(cost, on=UNIT_IN_RUN, how="left")
    # plus applying the levers (capture, the attention-backend candidates' compilations). Parts written before
    # the configs table recorded it count the warm-up's extra only; for sdpa-best under compilation, whose
    # candidates were compiled while applying, that misses most of the cost: unknown
    setup_s = pd.to_numeric(agg["setup_s"], errors="coerce")
    unmetered = setup_s.isna() & (agg["optimize"].map(compilations) > 1)
    agg["compile_s"] = (agg["compile_s"] + setup_s.fillna(0.0)).where(~unmetered)
    # a setup whose time was recorded but whose energy was not (its window got no counter update) leaves
    # the compilation's energy unknown, not smaller
    setup_J = pd.to_numeric(agg["setup_J"], errors="coerce")
    energy_unknown = unmetered | (setup_J.isna() & setup_s.notna())
    agg["compile_J"] = (agg["compile_J"] + setup_J.fillna(0.0)).where(~energy_unknown)
    agg["compile_cache_hit_share"] = compile_cache_hit_share(agg, read_side(dirs, COMPILE_FILE))
    saving = none_clip - agg["gpu_energy_J_per_clip"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        payoff = np.where(saving > 0, agg["compile_J"].to_numpy() / saving, np.inf)
    payoff = np.where(np.isnan(none_clip), np.nan, payoff)  # no `none` in the same run and cell: unknown
    agg["payoff_clips"] = np.where(agg["optimize"] == DEFAULT_SPEC, np.nan, np.ceil(payoff))
    agg["payoff_clips"] = agg["payoff_clips"].where(agg["compile_J"].notna(), np.nan)
    return agg.reindex(columns=list(LEVERS_COLUMNS)).sort_values(
        ["model", "waveforms_per_prompt", "steps", "optimize"]).reset_index(drop=True)


def target_cell(table: pd.DataFrame) -> tuple[int, int]:
    """(steps, batch) of the whole-generation target: :data:`.spec.TARGET_STEPS` steps, batch
    :data:`.spec.TARGET_BATCH` where measured, else the largest step count and the smallest batch (a short
    test run)."""
    steps = (TARGET_STEPS if (table["steps"] == TARGET_STEPS).any() else int(table["steps"].max()))
    batch = (TARGET_BATCH if (table["waveforms_per_prompt"] == TARGET_BATCH).any()
             else int(table["waveforms_per_prompt"].min()))
    return steps, batch


def record_run(rows: pd.DataFrame) -> str | None:
    """The run a summary reports for one cell (model, steps, batch) of ``rows``: among the runs that measured
    ``none`` there, the one with the most repeats of it, then the latest (run ids begin with their UTC start
    time); ``None`` without ``none``. The run is never chosen by its result: a launch-bound model's eager
    ``none`` moves by tens of percent between processes, so reductions are taken within one process."""
    none = rows[rows["optimize"] == DEFAULT_SPEC]
    if none.empty:
        return None
    return str(max(zip(none["n_runs"].astype(int), none["run_id"].astype(str), strict=True))[1])


def configuration_rows(cell: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (spec and dtype) of ``candidates``, rows of ``cell`` (one model at one step count
    and batch size): its row from the :func:`record_run` of the runs of ``cell`` that measured it, so that its
    reduction is taken against the default of its own process. Configurations that no run with ``none``
    measured are left out."""
    picked = []
    for _, rows in candidates.groupby(["optimize", "dtype"], sort=False):
        run_id = record_run(cell[cell["run_id"].isin(rows["run_id"])])
        if run_id is not None:
            picked.append(rows.loc[rows["run_id"] == run_id, "gpu_energy_J_per_clip"].idxmin())
    return candidates.loc[picked]


def largest_reduction(rows: pd.DataFrame) -> pd.Series:
    """The row of ``rows`` (from :func:`configuration_rows`) with the largest ``reduction_vs_none`` (against
    the ``none`` of its run), the least energy per clip among equals."""
    order = rows.assign(_neg=-rows["reduction_vs_none"]).sort_values(["_neg", "gpu_energy_J_per_clip"])
    return rows.loc[order.index[0]]


def lossless_candidates(rows: pd.DataFrame, *, with_default: bool,
                        study_precision_only: bool) -> pd.DataFrame:
    """The rows of ``rows`` that may be a model's best lossless configuration: judged lossless, never the
    fp32 reference (run with TF32 and cuDNN off: a yardstick nobody would deploy); the study default
    (``none``) only where ``with_default`` (a reduction against ``none`` leaves it out, its own is 1 by
    definition; a fraction of the ceiling keeps it, the default may reach the most); only at each model's
    study precision where ``study_precision_only`` (the lossless reduction targets are at the study's
    precision; the ceiling's target names none)."""
    keep = rows["lossless"].astype(bool) & (rows["optimize"] != REFERENCE_SPEC)
    if not with_default:
        keep &= rows["optimize"] != DEFAULT_SPEC
    if study_precision_only:
        keep &= rows["dtype"] == rows["model"].map(lambda m: study_dtype(str(m)))
    return rows[keep]


def reduction_bars(table: pd.DataFrame, steps: int, batch: int) -> pd.DataFrame:
    """The rows the figure's reduction panel draws at ``steps`` and ``batch``: per model, each configuration
    (not the fp32 reference) from its own run (:func:`configuration_rows`), one row per bar."""
    cell = table[(table["steps"] == steps) & (table["waveforms_per_prompt"] == batch)
                 & (table["optimize"] != REFERENCE_SPEC) & table["gpu_energy_J_per_clip"].notna()]
    picked = [configuration_rows(rows, rows) for _, rows in cell.groupby("model", sort=False)]
    bars = pd.concat(picked) if picked else cell
    return bars[bars["reduction_vs_none"].notna()]


def best_lossless(table: pd.DataFrame, batch: int = 1, steps: int | None = None) -> pd.DataFrame:
    """Per (model, steps) at ``batch``: the configuration lossless at the study's precision with the largest
    reduction against the study default ``none``, each configuration's reduction taken in its own run
    (:func:`configuration_rows`), with that run's ``none``. Columns: ``model, steps, run_id, none_J,
    none_n_runs, none_std, best, best_J, best_n_runs, best_std, ratio, ratio_low, ratio_high,
    fraction_of_ceiling, best_index`` (``ratio_low``, ``ratio_high``: the reduction's 95% interval over the
    run's repeats, :func:`tta_energy.intervals.ratio_interval`; ``best_index``: the best row's label in
    ``table``).
    """
    columns = ["model", "steps", "run_id", "none_J", "none_n_runs", "none_std", "best", "best_J",
               "best_n_runs", "best_std", "ratio", "ratio_low", "ratio_high", "fraction_of_ceiling",
               "best_index"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    rows = table[(table["waveforms_per_prompt"] == batch) & table["gpu_energy_J_per_clip"].notna()]
    if steps is not None:
        rows = rows[rows["steps"] == steps]
    out = []
    for (model, n_steps), cell in rows.groupby(["model", "steps"], sort=False):
        candidates = lossless_candidates(cell, with_default=False, study_precision_only=True)
        ok = configuration_rows(cell, candidates)
        if ok.empty:
            continue
        best = largest_reduction(ok)
        index, run_id = best.name, str(best["run_id"])
        none = cell[(cell["run_id"] == run_id) & (cell["optimize"] == DEFAULT_SPEC)].iloc[0]
        mean_none, sd_none, mean_best, sd_best = (float(r.get(c, np.nan)) for r in (none, best)
                                                  for c in ("gpu_energy_J", "gpu_energy_J_std"))
        low, high = ratio_interval(mean_none, sd_none, int(none["n_runs"]), mean_best, sd_best,
                                   int(best["n_runs"]))
        out.append({"model": model, "steps": int(n_steps), "run_id": run_id,
                    "none_J": float(none["gpu_energy_J_per_clip"]), "none_n_runs": int(none["n_runs"]),
                    "none_std": float(none["gpu_energy_J_std"]), "best": str(best["optimize"]),
                    "best_J": float(best["gpu_energy_J_per_clip"]), "best_n_runs": int(best["n_runs"]),
                    "best_std": float(best["gpu_energy_J_std"]),
                    "ratio": float(none["gpu_energy_J_per_clip"]) / float(best["gpu_energy_J_per_clip"]),
                    "ratio_low": low, "ratio_high": high,
                    "fraction_of_ceiling": float(best["fraction_of_ceiling"]), "best_index": index})
    frame = pd.DataFrame(out, columns=columns)
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(catalogue.ordered(frame["model"].unique()))}
    return frame.sort_values(["model", "steps"], key=lambda c: c.map(order) if c.name == "model" else c
                             ).reset_index(drop=True)


def best_fraction(table: pd.DataFrame, model: str, *, lossless: bool = True) -> pd.Series | None:
    """``model``'s row with the highest fraction of the ceiling, at any step count and batch size: among its
    lossless configurations at any precision, the study default included (:func:`lossless_candidates`), or
    (``lossless`` False) among all that keep the computation (any precision; not `trim-latents` or `fp8`);
    never the fp32 reference, which runs with TF32 and cuDNN off, a yardstick nobody would deploy. None when
    there is none."""
    rows = table[(table["model"] == model) & table["fraction_of_ceiling"].notna()]
    rows = (lossless_candidates(rows, with_default=True, study_precision_only=False) if lossless
            else rows[~rows["changes_behaviour"].astype(bool) & (rows["optimize"] != REFERENCE_SPEC)])
    return None if rows.empty else rows.loc[rows["fraction_of_ceiling"].idxmax()]


def ceiling_bars(table: pd.DataFrame, steps: int, runs: Mapping[str, str]) -> pd.DataFrame:
    """The rows the figure's ceiling panel draws, per model: the study default (`none`) at ``steps`` and
    batch 1 in the summary's run (``runs``), the best lossless configuration (:func:`best_fraction`) and,
    where it is another, the best at any precision; with each bar's role, label and the model's target."""
    bars = []
    for model in table["model"].unique():
        none = table[(table["model"] == model) & (table["optimize"] == DEFAULT_SPEC)
                     & (table["steps"] == steps) & (table["waveforms_per_prompt"] == 1)
                     & table["fraction_of_ceiling"].notna()]
        none = none[none["run_id"].astype(str) == runs.get(model, "")] if model in runs else none.head(1)
        chosen = [(STUDY_DEFAULT_BAR, none.iloc[0] if not none.empty else None),
                  (BEST_LOSSLESS_BAR, best_fraction(table, model))]
        anywhere = best_fraction(table, model, lossless=False)
        if anywhere is not None and (chosen[1][1] is None or anywhere.name != chosen[1][1].name):
            chosen.append((BEST_ANY_BAR, anywhere))
        for role, row in chosen:
            if row is not None:
                bars.append({"model": model, "role": role, "fraction_of_ceiling": row["fraction_of_ceiling"],
                             "label": f"{row['optimize']}, b{int(row['waveforms_per_prompt'])}"
                                      + ("" if int(row["steps"]) == steps else f", {int(row['steps'])} st"),
                             "target": lever_targets(model).ceiling_fraction})
    return pd.DataFrame(bars, columns=["model", "role", "fraction_of_ceiling", "label", "target"])


def summary_runs(table: pd.DataFrame, steps: int, batch: int) -> dict[str, str]:
    """Per model, the run the summary reports at (``steps``, ``batch``): that of its best lossless
    configuration (:func:`best_lossless`), else the cell's :func:`record_run` (the any-precision table's)."""
    cell = table[(table["steps"] == steps) & (table["waveforms_per_prompt"] == batch)
                 & table["gpu_energy_J_per_clip"].notna()]
    runs: dict[str, str] = {}
    for model, rows in cell.groupby("model"):
        run_id = record_run(rows)
        if run_id is not None:
            runs[str(model)] = run_id
    chosen = best_lossless(table, batch, steps)
    runs.update(zip(chosen["model"].astype(str), chosen["run_id"].astype(str), strict=True))
    return runs


def build_report(dirs: Sequence[Path], out_dir: Path) -> tuple[Path, Path, Path, Path]:
    """The table, its summary, its figure and the targets' status (the file names of levers.tables) in
    ``out_dir`` from the raw folders."""
    dirs = unique_folders(dirs)
    for folder in dirs:  # each table that lost its row in flight is said once, though some are read twice
        for name in (RUNS_FILE, *SIDE_COLUMNS):
            warn_if_cut(folder / name)
    generations = read_runs_of(dirs)
    table = levers_table(dirs, generations)
    ceiling = read_side(dirs, CEILING_FILE)
    profile = read_side(dirs, PROFILE_FILE)
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / LEVERS_TABLE, out_dir / SUMMARY_FILE
    fig_path, targets_path = out_dir / FIGURE_FILE, out_dir / TARGETS_FILE
    check_file_targets((csv_path, md_path, fig_path, targets_path), LeversError)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv_atomic(csv_path, table)
    from tta_energy.levers.summary import levers_summary  # it reads this module's table and rules

    text, targets = levers_summary(table, ceiling, profile, context_losses(generations),
                                   generation_failures(generations))
    write_text_atomic(md_path, text)
    write_csv_atomic(targets_path, targets)
    steps, batch = target_cell(table)
    runs = summary_runs(table, steps, batch)
    plot_levers(reduction_bars(table, steps, batch), fig_path, steps, batch, ceiling_bars(table, steps, runs))
    return csv_path, md_path, fig_path, targets_path


