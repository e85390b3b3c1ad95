"""Variance components of the energy: synthetic rows with known between/within-process SDs, degenerate
models, and the committed H200 steps sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tta_energy import schema
from tta_energy.analysis import spread, summaries

ROOT = Path(__file__).resolve().parents[1]
STEPS = (10, 25, 50, 100)


def _rows(model: str, runs: int, repeats: int, between: float, within: float, seed: int) -> pd.DataFrame:
    """``runs`` processes x 4 step counts x ``repeats``: log energy = log(5 J x steps) + u[run] + e; the
    process levels u are scaled to have exactly the sample SD ``between``, so that the test checks the fit
    rather than how far a few random levels happen to fall."""
    rng = np.random.default_rng(seed)
    levels = rng.normal(0.0, 1.0, runs)
    levels = (levels - levels.mean()) / levels.std(ddof=1) * between if runs > 1 else levels * between
    rows = []
    for run, level in enumerate(levels):
        for steps in STEPS:
            for _ in range(repeats):
                energy = 5.0 * steps * np.exp(level + rng.normal(0.0, within))
                rows.append(schema.empty_row() | {
                    "source": "tta-energy", "gpu_name": "NVIDIA H200", "experiment": "steps", "model": model,
                    "size": "full", "dtype": "float16", "steps": steps, "run_id": f"run{run}", "status": "ok",
                    "is_warmup": False, "gpu_energy_J": energy, "gpu_busy_fraction": 0.2,
                })
    return pd.DataFrame(rows)


def test_known_components_are_recovered() -> None:
    between, within = 0.10, 0.03
    rows = _rows("audioldm", runs=8, repeats=3, between=between, within=within, seed=1)
    fit = spread.process_spread(rows, ("steps", "dtype"), draws=20, seed=0)
    assert (fit["n_rows"], fit["n_processes"], fit["n_cells"]) == (96, 8, 4)
    assert fit["n_gpus"] == 0  # no row recorded its card
    on_cards = rows.assign(gpu_uuid=[f"GPU-{int(r[3:]) % 3}" for r in rows["run_id"]])  # 8 processes, 3 cards
    assert spread.process_spread(on_cards, ("steps", "dtype"), draws=0)["n_gpus"] == 3
    assert fit["reason"] == ""
    assert np.log1p(fit["between_process_sd_pct"] / 100) == pytest.approx(between, rel=0.2)
    assert np.log1p(fit["within_process_sd_pct"] / 100) == pytest.approx(within, rel=0.15)
    share = between**2 / (between**2 + within**2)
    assert fit["between_process_share"] == pytest.approx(share, abs=0.1)
    assert fit["between_process_share_ci_low"] <= fit["between_process_share"] <= fit[
        "between_process_share_ci_high"]
    assert fit["bootstrap_draws"] >= 10
    assert fit["gpu_busy_fraction_mean"] == pytest.approx(0.2)
    again = spread.process_spread(rows, ("steps", "dtype"), draws=20, seed=0)
    assert again == fit  # the bootstrap is seeded


def test_no_process_effect_gives_a_small_share() -> None:
    rows = _rows("tango2", runs=6, repeats=3, between=0.0, within=0.05, seed=2)
    fit = spread.process_spread(rows, ("steps", "dtype"), draws=0)
    assert fit["between_process_share"] < 0.15
    assert np.log1p(fit["within_process_sd_pct"] / 100) == pytest.approx(0.05, rel=0.2)
    assert np.isnan(fit["between_process_share_ci_low"]) and fit["bootstrap_draws"] == 0


def test_one_process_or_no_shared_configuration_is_nan_with_a_reason() -> None:
    one = _rows("tango", runs=1, repeats=3, between=0.1, within=0.05, seed=3)
    fit = spread.process_spread(one, ("steps", "dtype"))
    assert np.isnan(fit["between_process_sd_pct"]) and np.isnan(fit["within_process_sd_pct"])
    assert fit["reason"].startswith("one process")
    rows = _rows("tango", runs=2, repeats=2, between=0.1, within=0.05, seed=4)
    apart = rows[(rows["run_id"] == "run0") == (rows["steps"] <= 25)]  # each step count from one process
    fit = spread.process_spread(apart, ("steps", "dtype"))
    assert np.isnan(fit["between_process_share"]) and "more than one process" in fit["reason"]
    cpu = rows.assign(gpu_energy_J=np.nan)  # measured without a GPU
    fit = spread.process_spread(cpu, ("steps", "dtype"))
    assert fit["n_rows"] == 0 and fit["reason"] == "no row with a GPU energy (measured without a GPU?)"
    unnamed = rows.assign(run_id="")
    fit = spread.process_spread(unnamed, ("steps", "dtype"))
    assert fit["n_rows"] == 0 and fit["reason"] == "no row with a GPU energy names its process (run_id)"


def test_the_table_keeps_models_and_experiments_apart() -> None:
    rows = pd.concat([
        _rows("tango2", runs=3, repeats=2, between=0.05, within=0.02, seed=5),
        _rows("audioldm", runs=1, repeats=2, between=0.05, within=0.02, seed=6).assign(experiment="batch"),
        _rows("audioldm", runs=3, repeats=2, between=0.05, within=0.02, seed=7).drop(
            columns="gpu_busy_fraction"),
    ], ignore_index=True)
    table = spread.spread_table(summaries.usable_runs(rows), draws=0)
    assert list(table.columns) == list(spread.SPREAD_COLUMNS)
    assert list(zip(table["experiment"], table["model"], strict=True)) == [
        ("steps", "audioldm"), ("steps", "tango2"), ("batch", "audioldm")]
    assert np.isnan(table["gpu_busy_fraction_mean"].iloc[0])
    assert table["reason"].iloc[2].startswith("one process")


def test_the_h200_steps_sweep_gives_one_row_per_model() -> None:
    runs = summaries.usable_runs(schema.read_runs(ROOT / "data" / "h200" / "steps.csv"))
    table = spread.spread_table(runs, draws=0)
    assert sorted(table["model"]) == sorted(runs["model"].unique())
    assert (table["experiment"] == "steps").all()
    assert (table["n_processes"] >= 2).all() and (table["n_cells"] == runs["steps"].nunique()).all()
    estimated = table[table["reason"] == ""]
    assert not estimated.empty
    assert estimated[["between_process_sd_pct", "within_process_sd_pct"]].notna().all().all()
    assert ((table["between_process_share"] >= 0) & (table["between_process_share"] <= 1)).all()


def test_energy_that_follows_the_duration_is_told_apart_from_energy_that_does_not() -> None:
    rng = np.random.default_rng(3)
    cells = pd.Series(np.repeat([0, 1, 2], 10))
    wall = np.exp(rng.normal(0.0, 0.2, 30)) * (1.0 + cells.to_numpy())
    paced = pd.DataFrame({"gpu_energy_J": 150.0 * wall, "wall_s": wall})  # the same power: energy is time
    slope, r2 = spread.energy_time(paced, cells)
    assert slope == pytest.approx(1.0) and r2 == pytest.approx(1.0)
    work = 400.0 * (1.0 + cells.to_numpy()) * np.exp(rng.normal(0.0, 0.05, 30))
    fixed = pd.DataFrame({"gpu_energy_J": work, "wall_s": wall})  # energy set by the work, whatever the time
    slope, r2 = spread.energy_time(fixed, cells)
    assert abs(slope) < 0.2 and r2 < 0.2
    assert np.isnan(spread.energy_time(paced.head(2), cells.head(2))[0])  # too few rows
    rows = _rows("audioldm", runs=3, repeats=3, between=0.05, within=0.05, seed=4)
    rows["wall_s"] = rows["gpu_energy_J"] / 150.0
    fit = spread.process_spread(rows, ("steps", "dtype"), draws=0)
    assert fit["energy_time_slope"] == pytest.approx(1.0) and fit["energy_time_r2"] == pytest.approx(1.0)


def test_a_cells_interval_counts_the_process_level() -> None:
    """With a large between-process spread and few processes, a cell's interval from its repeats alone is
    too narrow: the process-aware one is wider; without a process effect the two agree roughly."""
    rows = _rows("audioldm", runs=3, repeats=4, between=0.15, within=0.02, seed=5)
    cells = spread.cell_intervals(rows, ("steps", "dtype"))
    assert list(cells["cell"]) == [f"steps={s}, dtype=float16" for s in STEPS]
    assert (cells["n_runs"] == 12).all() and (cells["n_processes"] == 3).all()
    assert (cells["reason"] == "").all()
    assert (cells["ci95_half_width_rel_processes"] > 2 * cells["ci95_half_width_rel_repeats"]).all()
    calm = spread.cell_intervals(_rows("tango", runs=6, repeats=3, between=0.0, within=0.05, seed=6),
                                 ("steps", "dtype"))
    ratio = calm["ci95_half_width_rel_processes"] / calm["ci95_half_width_rel_repeats"]
    assert ((ratio > 0.5) & (ratio < 2.0)).all()
    one = spread.cell_intervals(rows[rows["run_id"] == "run0"], ("steps", "dtype"))
    assert one["ci95_half_width_rel_processes"].isna().all()
    assert one["reason"].str.startswith("one process").all()
    table = spread.cell_interval_table(pd.concat([rows, _rows("tango2", 2, 3, 0.01, 0.01, seed=7)]))
    assert list(table.columns) == list(spread.CELL_INTERVAL_COLUMNS)
    assert list(dict.fromkeys(table["model"])) == ["audioldm", "tango2"] and len(table) == 2 * len(STEPS)


def test_a_run_table_as_read_gives_the_table_of_its_usable_rows() -> None:
    """Warm-ups and failed rows are left out by the table itself: the committed steps sweep as read (with its
    flagged warm-ups) gives the same table as its usable rows."""
    runs = schema.read_runs(ROOT / "data" / "h200" / "steps.csv")
    assert runs["is_warmup"].any()
    usable = summaries.usable_runs(runs)
    as_read = spread.spread_table(runs, experiments=("steps",), draws=0)
    pd.testing.assert_frame_equal(as_read, spread.spread_table(usable, experiments=("steps",), draws=0))
    assert (as_read["n_rows"] == usable.groupby("model").size().reindex(as_read["model"]).to_numpy()).all()
    cells = spread.cell_interval_table(runs, experiments=("steps",))
    pd.testing.assert_frame_equal(cells, spread.cell_interval_table(usable, experiments=("steps",)))
