"""``estimate``: the energy of a planned job from the steps sweep, on synthetic rows whose line is known."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tta_energy import schema
from tta_energy.analysis.estimate import ESTIMATE_COLUMNS, estimate_energy
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.cli.main import app, run_app
from tta_energy.models import spacing

#: The synthetic platform's line: joules once per generation and per denoiser call; seconds likewise.
INTERCEPT_J, SLOPE_J = 40.0, 5.0
INTERCEPT_S, SLOPE_S = 0.5, 0.02


#: each row its own configuration: a table measures a (config_id, repeat) pair once
_CONFIGS = itertools.count()


def _row(steps: int, energy: float, *, model: str = "tango", gpu: str = "NVIDIA H200",
         source: str = "tta-energy", calls: int | None = None, wall_s: float | None = None,
         experiment: str = "steps", timestamp: str = "2026-01-01T00:00:00+00:00") -> dict:
    calls = steps if calls is None else calls
    return schema.empty_row() | {
        "source": source, "gpu_name": gpu, "experiment": experiment, "model": model, "size": "full",
        "dtype": "float32", "steps": steps, "denoiser_calls": calls, "n_prompts": 1,
        "waveforms_per_prompt": 1, "n_clips": 1, "duration_s": 10.0, "status": "ok",
        "gpu_energy_J": energy, "gpu_energy_method": "nvml_counter", "cpu_energy_method": "estimate",
        "wall_s": INTERCEPT_S + SLOPE_S * calls if wall_s is None else wall_s, "timestamp": timestamp,
        "config_id": f"configuration {next(_CONFIGS)}",
    }


def _exact(model: str = "tango", grid: tuple[int, ...] = (10, 50, 100), **kw) -> pd.DataFrame:
    """Two repeats per step count exactly on the line, at the calls the model's sampler makes."""
    spacing_name = "ldm-uniform" if model.startswith("make-an-audio") else "diffusers"
    rows = []
    for s in grid:
        calls = spacing.denoiser_iterations(spacing_name, s)
        rows += [_row(s, INTERCEPT_J + SLOPE_J * calls, model=model, calls=calls, **kw) for _ in range(2)]
    return schema.validate(pd.DataFrame(rows))


def test_exact_rows_give_the_line_and_intervals_of_zero_width():
    est = estimate_energy(_exact(), "tango", 70, clips=1000)
    assert list(est.columns) == list(ESTIMATE_COLUMNS) and len(est) == 1
    r = est.iloc[0]
    truth = INTERCEPT_J + SLOPE_J * 70
    for column in ("gpu_energy_J_per_clip", "gpu_energy_J_per_clip_ci_low", "gpu_energy_J_per_clip_ci_high",
                   "single_generation_J_low", "single_generation_J_high"):
        assert r[column] == pytest.approx(truth), column
    assert r["energy_kWh_total"] == pytest.approx(truth * 1000 / 3.6e6)
    assert r["energy_kWh_total_ci_low"] == pytest.approx(r["energy_kWh_total_ci_high"])
    assert r["gpu_s_per_clip"] == pytest.approx(INTERCEPT_S + SLOPE_S * 70)
    assert r["gpu_h_total"] == pytest.approx((INTERCEPT_S + SLOPE_S * 70) * 1000 / 3600)
    assert r["r2"] == pytest.approx(1.0)
    assert (r["steps"], r["denoiser_calls"], r["n_generations"], r["clips"]) == (70, 70, 6, 1000)
    assert r["measured_steps"] == "10,50,100" and bool(r["inside_measured_range"])
    assert np.isnan(r["measured_mean_J"]) and r["measured_n"] == 0  # 70 steps were not measured


def test_noisy_rows_give_the_textbook_intervals_around_the_true_line():
    rng = np.random.default_rng(1)
    grid, repeats, sigma = (10, 25, 50, 100, 150, 200), 6, 15.0
    runs = schema.validate(pd.DataFrame([_row(s, INTERCEPT_J + SLOPE_J * s + rng.normal(0, sigma))
                                         for s in grid for _ in range(repeats)]))
    r = estimate_energy(runs, "tango", 80, confidence=0.9).iloc[0]
    truth = INTERCEPT_J + SLOPE_J * 80
    assert r["gpu_energy_J_per_clip_ci_low"] < truth < r["gpu_energy_J_per_clip_ci_high"]
    assert (r["single_generation_J_low"] < r["gpu_energy_J_per_clip_ci_low"]
            and r["gpu_energy_J_per_clip_ci_high"] < r["single_generation_J_high"])
    # the same intervals written out: t quantile x residual std x leverage of the point asked
    x, y = runs["denoiser_calls"].to_numpy(float), runs["gpu_energy_J"].to_numpy(float)
    fit = stats.linregress(x, y)
    n = len(x)
    s = np.sqrt(np.sum((y - fit.intercept - fit.slope * x) ** 2) / (n - 2))
    leverage = 1 / n + (80 - x.mean()) ** 2 / np.sum((x - x.mean()) ** 2)
    t = stats.t.ppf(0.95, n - 2)
    mean = fit.intercept + fit.slope * 80
    assert r["gpu_energy_J_per_clip"] == pytest.approx(mean)
    assert r["gpu_energy_J_per_clip_ci_high"] - mean == pytest.approx(t * s * np.sqrt(leverage))
    assert r["single_generation_J_high"] - mean == pytest.approx(t * s * np.sqrt(1 + leverage))
    assert r["r2"] == pytest.approx(fit.rvalue**2)


def test_the_mean_interval_covers_the_true_line_as_often_as_its_level_says():
    """400 simulated sweeps (one platform each, so one call fits them all): the 90% interval of the mean holds
    the true energy in about 90% of them, the single-generation interval a fresh generation likewise."""
    rng = np.random.default_rng(0)
    sweeps, grid, sigma, asked = 400, (10, 50, 100, 200), 20.0, 150
    base = _exact(grid=grid)
    runs = pd.concat([base.assign(gpu_name=f"GPU {i}") for i in range(sweeps)], ignore_index=True)
    runs["gpu_energy_J"] += rng.normal(0, sigma, len(runs))
    est = estimate_energy(runs, "tango", asked, confidence=0.9)
    assert len(est) == sweeps
    truth = INTERCEPT_J + SLOPE_J * asked
    covered = (est["gpu_energy_J_per_clip_ci_low"] < truth) & (truth < est["gpu_energy_J_per_clip_ci_high"])
    fresh = truth + rng.normal(0, sigma, sweeps)
    held = (est["single_generation_J_low"] < fresh) & (fresh < est["single_generation_J_high"])
    band = 3 * np.sqrt(0.9 * 0.1 / sweeps)  # three binomial standard errors
    assert abs(covered.mean() - 0.9) < band and abs(held.mean() - 0.9) < band
    assert (est["gpu_energy_J_per_clip_ci_high"] - est["gpu_energy_J_per_clip_ci_low"]
            < est["single_generation_J_high"] - est["single_generation_J_low"]).all()


def test_make_an_audio_at_150_steps_is_predicted_at_its_167_calls_and_compared_with_the_measured_mean():
    runs = _exact("make-an-audio", grid=(10, 100, 150, 200))
    r = estimate_energy(runs, "make-an-audio", 150).iloc[0]
    assert (r["steps"], r["denoiser_calls"]) == (150, 167)
    assert r["gpu_energy_J_per_clip"] == pytest.approx(INTERCEPT_J + SLOPE_J * 167)
    assert r["measured_mean_J"] == pytest.approx(INTERCEPT_J + SLOPE_J * 167) and r["measured_n"] == 2
    assert r["measured_steps"] == "10,100,150,200"


def test_the_measured_mean_is_that_of_the_runs_at_the_step_count_asked():
    runs = schema.validate(pd.DataFrame([_row(10, 90.0), _row(10, 100.0), _row(50, 280.0), _row(50, 300.0),
                                         _row(50, 290.0), _row(100, 540.0)]))
    r = estimate_energy(runs, "tango", 50).iloc[0]
    assert r["measured_mean_J"] == pytest.approx(290.0) and r["measured_n"] == 3


def test_a_measured_mean_off_the_line_is_flagged_and_no_bound_is_negative():
    # a curve: the middle step count costs more than the line through all of them says
    runs = schema.validate(pd.DataFrame([_row(s, e + d) for s, e in ((10, 100.0), (50, 400.0), (100, 540.0))
                                         for d in (-2.0, 2.0)]))
    middle = estimate_energy(runs, "tango", 50).iloc[0]
    assert bool(middle["measured_outside_line"]) and middle["measured_mean_J"] == pytest.approx(400.0)
    assert not bool(estimate_energy(_exact(), "tango", 50).iloc[0]["measured_outside_line"])  # on the line
    assert not bool(estimate_energy(runs, "tango", 70).iloc[0]["measured_outside_line"])  # not measured
    far = estimate_energy(runs, "tango", 1).iloc[0]  # extrapolated below the fitted calls
    assert far["single_generation_J_low"] >= 0.0 and far["gpu_energy_J_per_clip_ci_low"] >= 0.0


@pytest.mark.parametrize(("steps", "inside"),
                         [(5, False), (10, True), (100, True), (101, False), (500, False)])
def test_only_calls_within_the_fitted_range_are_inside_it(steps: int, inside: bool):
    r = estimate_energy(_exact(), "tango", steps).iloc[0]
    assert bool(r["inside_measured_range"]) is inside
    assert r["gpu_energy_J_per_clip"] == pytest.approx(INTERCEPT_J + SLOPE_J * steps)  # extrapolated too


def test_platforms_are_fitted_apart_and_other_models_and_experiments_are_ignored():
    a40 = [_row(s, 2.0 * s, gpu="NVIDIA A40", source="study") for s in (10, 100) for _ in range(2)]
    other = [_row(50, 1e6, model="tango2"), _row(50, 1e6, experiment="batch")]
    runs = schema.validate(pd.concat([_exact(), pd.DataFrame(a40 + other)], ignore_index=True))
    est = estimate_energy(runs, "tango", 50).set_index("gpu_name")
    assert est.loc["NVIDIA H200", "gpu_energy_J_per_clip"] == pytest.approx(INTERCEPT_J + SLOPE_J * 50)
    assert est.loc["NVIDIA A40", "gpu_energy_J_per_clip"] == pytest.approx(100.0)
    assert est.loc["NVIDIA A40", "source"] == "study" and est.loc["NVIDIA A40", "n_generations"] == 4


def test_a_model_without_steps_rows_and_impossible_requests_are_refused():
    runs = _exact()
    with pytest.raises(AnalysisError, match="no usable 'steps' rows .* for model 'audioldm'"):
        estimate_energy(runs, "audioldm", 50)
    with pytest.raises(AnalysisError, match="make-an-audio: LDM's uniform DDIM spacing cannot run 3 steps"):
        estimate_energy(_exact("make-an-audio"), "make-an-audio", 3)
    with pytest.raises(AnalysisError, match="clips must be >= 1, got 0"):
        estimate_energy(runs, "tango", 50, clips=0)
    with pytest.raises(AnalysisError, match="confidence must lie between 0 and 1"):
        estimate_energy(runs, "tango", 50, confidence=95)


def test_rows_measured_without_a_gpu_are_not_a_platform_and_alone_are_refused():
    cpu = _exact(gpu=None).assign(gpu_energy_J=np.nan)
    with pytest.raises(AnalysisError, match="carry no GPU energy .* needs a steps sweep measured on a GPU"):
        estimate_energy(cpu, "tango", 50)
    est = estimate_energy(schema.validate(pd.concat([_exact(), cpu], ignore_index=True)), "tango", 50)
    assert list(est["gpu_name"]) == ["NVIDIA H200"]
    assert est["gpu_energy_J_per_clip"].iloc[0] == pytest.approx(INTERCEPT_J + SLOPE_J * 50)


# --------------------------------------------------------------------------------------------------------
# the command, run in this process (the installed entry point is tests/test_cli_errors.py's business)


@pytest.fixture
def runs_folder(tmp_path: Path) -> Path:
    """``tmp_path/data/h200/steps.csv``: Tango exactly on the line, plus the study's first call per script
    (a warm-up far above the line, the earliest row) that the command leaves out."""
    folder = tmp_path / "data" / "h200"
    folder.mkdir(parents=True)
    warmup = _row(10, 5000.0, source="study", gpu="NVIDIA A40", timestamp="2025-01-01T00:00:00+00:00")
    study = [_row(s, 3.0 * s, source="study", gpu="NVIDIA A40", timestamp="2025-01-02T00:00:00+00:00")
             for s in (10, 100) for _ in range(2)]
    schema.write_runs(folder / "steps.csv", pd.concat([_exact(), pd.DataFrame([warmup, *study])],
                                                      ignore_index=True))
    return folder


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = run_app(app, ["estimate", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_the_command_prints_a_row_per_platform_and_the_fits_basis(runs_folder, monkeypatch, capsys):
    monkeypatch.chdir(runs_folder.parents[1])  # the default: data/h200 under the current folder
    status, out, err = _run(["--model", "tango", "--steps", "50", "--clips", "1000"], capsys)
    assert status == 0 and err == ""
    assert "Tango: 1000 clip(s) at 50 steps" in out
    assert "NVIDIA H200" in out and "NVIDIA A40" in out
    assert f"{INTERCEPT_J + SLOPE_J * 50:g}" in out  # the H200's mean per clip
    last = out.strip().splitlines()[-1]
    assert "OLS over 4 generations at 10,100 steps" in last  # the A40's warm-up left out
    assert "OLS over 6 generations at 10,50,100 steps" in last and "extrapolated" not in last
    status, out, _ = _run(["--model", "tango", "--steps", "400"], capsys)
    assert status == 0 and "extrapolated beyond the measured 10–100 calls" in out


def test_the_command_prints_one_json_object_per_platform(runs_folder, capsys):
    status, out, _ = _run(["--model", "tango", "--steps", "50", "--clips", "10", "--runs", str(runs_folder),
                           "--json"], capsys)
    assert status == 0
    records = {r["gpu_name"]: r for r in map(json.loads, out.strip().splitlines())}
    assert set(records) == {"NVIDIA H200", "NVIDIA A40"}
    h200, a40 = records["NVIDIA H200"], records["NVIDIA A40"]
    assert set(h200) == set(ESTIMATE_COLUMNS)
    assert h200["gpu_energy_J_per_clip"] == pytest.approx(INTERCEPT_J + SLOPE_J * 50)
    assert h200["measured_mean_J"] == pytest.approx(INTERCEPT_J + SLOPE_J * 50) and h200["measured_n"] == 2
    assert a40["gpu_energy_J_per_clip"] == pytest.approx(150.0)
    assert a40["n_generations"] == 4 and "n_runs" not in a40  # without the warm-up; a pooled count
    assert a40["measured_mean_J"] is None and a40["measured_n"] == 0
    assert h200["inside_measured_range"] is True


@pytest.mark.parametrize(("args", "fragment"), [
    (["--model", "tangoo", "--steps", "50"], "unknown model 'tangoo': choose one of audioldm, audioldm2"),
    (["--model", "make-an-audio", "--steps", "27"],
     "make-an-audio: LDM's uniform DDIM spacing cannot run 27"),
    (["--model", "tango", "--steps", "0"], "tango: steps must be >= 1, got 0"),
    (["--model", "tango", "--steps", "50", "--clips", "0"], "clips must be >= 1, got 0"),
    (["--model", "tango", "--steps", "50", "--confidence", "1.5"], "confidence must lie between 0 and 1"),
    (["--model", "tango", "--steps", "50", "--runs", "no/such/folder"], "no/such/folder"),
    (["--model", "audioldm", "--steps", "50"], "no usable 'steps' rows (status ok, not warm-up) for model "
                                               "'audioldm'"),
])
def test_bad_input_is_one_error_line(runs_folder, monkeypatch, capsys, args: list[str], fragment: str):
    monkeypatch.chdir(runs_folder.parents[1])
    status, out, err = _run(args, capsys)
    assert status == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and fragment in err, err


def test_without_runs_and_without_data_h200_the_command_asks_for_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(["--model", "tango", "--steps", "50"], capsys)
    assert status == 2 and err.strip() == ("error: no data/h200 under the current folder: give --runs PATH "
                                           "(run tables or folders of them)")


def test_usable_rows_are_the_summaries_rule(tmp_path, capsys):
    """The command fits only what summaries.usable_runs keeps: a failed or flagged warm-up row in the table
    (1e6 J each, at the asked step count) never enters the line or the measured mean."""
    bad = pd.DataFrame([_row(50, 1e6) | {"status": "oom"}, _row(50, 1e6) | {"is_warmup": True}])
    table = tmp_path / "steps.csv"
    schema.write_runs(table, pd.concat([_exact(), bad], ignore_index=True))
    assert len(schema.read_runs(table)) == 8  # both rows are in the table the command reads
    status, out, err = _run(["--model", "tango", "--steps", "50", "--runs", str(table), "--json"], capsys)
    assert status == 0 and err == ""
    (r,) = map(json.loads, out.strip().splitlines())
    assert r["n_generations"] == 6 and r["measured_n"] == 2 and r["measured_steps"] == "10,50,100"
    assert r["gpu_energy_J_per_clip"] == pytest.approx(290.0)  # 40 J + 5 J x 50 calls, the line itself
    assert r["measured_mean_J"] == pytest.approx(290.0)
