"""The analysis tables reproduce the study's numbers where its method was right (arXiv 2505.07615)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from analysis_fixtures import (
    PUBLISHED_SANITY,
    load_paper_data,
    make_h200_runs,
    make_parameter_runs,
    require_paper_data,
)
from scipy import stats

from tta_energy import schema
from tta_energy.analysis import compare, pareto, sanity, summaries, tables
from tta_energy.cli.main import main as cli_main
from tta_energy.fileio import read_csv_exact

FOLDERS = {"audioldm": "AudioLDM", "audioldm2": "AudioLDM2", "stable-audio-open": "Stable Audio Open"}
SHORT = {"audioldm": "AudioLDM", "audioldm2": "AudioLDM2", "stable-audio-open": "SAO"}
KWH = 3.6e6
RTOL = 1e-9  # the study's CSV files hold 15-17 significant digits


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return summaries.usable_runs(load_paper_data().all_runs())


@pytest.fixture(scope="module")
def steps(runs) -> pd.DataFrame:
    return summaries.steps_summary(runs)


@pytest.fixture(scope="module")
def batch(runs) -> pd.DataFrame:
    return summaries.batch_summary(runs)


@pytest.fixture(scope="module")
def fronts(runs) -> pd.DataFrame:
    return pareto.pareto_table(runs, load_paper_data().scores, n_boot=200, seed=1)


def test_steps_summary_reproduces_the_studys_mean_and_std_files(steps):
    root = require_paper_data() / "results" / "inference_steps"
    for model, folder in FOLDERS.items():
        mean = read_csv_exact(root / folder / f"{folder}-mean.csv").set_index("project_name")
        std = read_csv_exact(root / folder / f"{folder}-std.csv").set_index("project_name")
        ours = steps[steps["model"] == model].set_index("steps")
        assert list(ours.index) == list(mean.index) == [10, 25, 50, 100, 150, 200]
        np.testing.assert_allclose(ours["gpu_energy_J_mean"], mean["gpu_energy"] * KWH, rtol=RTOL, atol=0)
        np.testing.assert_allclose(ours["gpu_energy_J_std"], std["gpu_energy"] * KWH, rtol=RTOL, atol=0)
        np.testing.assert_allclose(ours["energy_J_mean"], mean["energy_consumed"] * KWH, rtol=RTOL, atol=0)
        np.testing.assert_allclose(ours["gpu_energy_kWh_mean"], mean["gpu_energy"], rtol=RTOL, atol=0)
        assert (ours["n_runs"] == 5).all()


# the study's published aggregates: GPU energy per generation, kWh, mean ± sample std of 5 runs
CHECK_STEPS = {
    "audioldm": [
        (1.9801e-05, 6.5e-06),
        (3.1951e-05, 9.2e-07),
        (5.6400e-05, 1.4e-06),
        (1.0400e-04, 1.2e-06),
        (1.5264e-04, 3.4e-06),
        (2.0216e-04, 2.5e-06),
    ],
    "audioldm2": [
        (3.6435e-05, 1.3e-05),
        (6.0011e-05, 2.5e-06),
        (1.0866e-04, 1.3e-06),
        (2.0645e-04, 1.9e-06),
        (3.0829e-04, 6.5e-06),
        (4.1043e-04, 8.9e-06),
    ],
    "stable-audio-open": [
        (7.8953e-05, 1.6e-05),
        (1.7233e-04, 3.3e-06),
        (3.3528e-04, 2.3e-06),
        (6.6831e-04, 4.3e-06),
        (1.0007e-03, 5.1e-06),
        (1.3327e-03, 2.7e-06),
    ],
}
# published: GPU energy for 10 clips at 100 steps, kWh, total ± the study's error (b = 1, 2, 5, 10)
CHECK_BATCH = {
    "audioldm": [(1.0629e-03, 2.0e-06), (7.2306e-04, 2.1e-06), (5.3467e-04, 1.5e-06), (4.7264e-04, 3.2e-06)],
    "audioldm2": [(2.1120e-03, 4.5e-06), (1.4117e-03, 4.2e-06), (9.7811e-04, 1.3e-06), (8.2189e-04, 1.3e-05)],
    "stable-audio-open": [
        (6.8558e-03, 3.8e-06),
        (6.2046e-03, 3.1e-06),
        (5.7521e-03, 1.8e-06),
        (5.5883e-03, 7.8e-05),
    ],
}


def _sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits - 1}e}")


def test_steps_summary_matches_the_check_values(steps):
    for model, values in CHECK_STEPS.items():
        ours = steps[steps["model"] == model].sort_values("steps")
        kwh_mean = ours["gpu_energy_J_mean"] / KWH
        kwh_std = ours["gpu_energy_J_std"] / KWH
        assert [(_sig(m, 5), _sig(s, 2)) for m, s in zip(kwh_mean, kwh_std, strict=True)] == values, model


def test_batch_summary_reproduces_totals_errors_and_check_values(batch):
    root = require_paper_data() / "results" / "batch_size"
    for model, folder in FOLDERS.items():
        ours = batch[batch["model"] == model].set_index("n_clips")
        for b in (1, 2, 5):
            total = read_csv_exact(root / folder / f"batch{b}" / "total.csv")["gpu_energy"].iloc[0]
            se = read_csv_exact(root / folder / f"batch{b}" / "total_std.csv")["gpu_energy"].iloc[0]
            assert ours.loc[b, "gpu_energy_J_per_10_clips_mean"] == pytest.approx(total * KWH, rel=RTOL)
            assert ours.loc[b, "study_error_J"] == pytest.approx(se * KWH, rel=RTOL)
            assert ours.loc[b, "study_error_kind"] == "standard error"
            # our std of per-run totals is a different (larger) quantity than the study's standard error
            assert ours.loc[b, "gpu_energy_J_per_10_clips_std"] > ours.loc[b, "study_error_J"]
        mean10 = read_csv_exact(root / folder / "averaged_batch10.csv")["gpu_energy"].iloc[0]
        std10 = read_csv_exact(root / folder / "std_batch10.csv")["gpu_energy"].iloc[0]
        assert ours.loc[10, "gpu_energy_J_per_10_clips_mean"] == pytest.approx(mean10 * KWH, rel=RTOL)
        assert ours.loc[10, "gpu_energy_J_per_10_clips_std"] == pytest.approx(std10 * KWH, rel=RTOL)
        assert ours.loc[10, "study_error_kind"] == "standard deviation"
        got = [
            (
                _sig(ours.loc[b, "gpu_energy_J_per_10_clips_mean"] / KWH, 5),
                _sig(ours.loc[b, "study_error_J"] / KWH, 2),
            )
            for b in (1, 2, 5, 10)
        ]
        assert got == CHECK_BATCH[model], model
        assert ours.loc[1, "ratio_to_batch1"] == 1.0
        assert ours.loc[10, "ratio_to_batch1"] == pytest.approx(
            ours.loc[10, "gpu_energy_J_per_10_clips_mean"] / ours.loc[1, "gpu_energy_J_per_10_clips_mean"]
        )
        assert ours.loc[1, "gpu_energy_J_per_clip_mean"] == pytest.approx(
            ours.loc[1, "gpu_energy_J_per_10_clips_mean"] / 10
        )
        assert (ours["calls_per_run"] == [10, 5, 2, 1]).all()


def test_batch_summary_handles_incomplete_runs_missing_energy_and_distinct_prompts():
    rows = load_paper_data().runs["batch"]
    rows = rows[rows["model"] == "audioldm"][list(schema.COLUMN_NAMES)].copy()
    rows["source"], rows["gpu_name"] = "tta-energy", "NVIDIA H200"
    interrupted = rows[(rows["n_clips"] == 1) & (rows["repeat"] == 4)].index[-3:]  # a sweep stopped mid-run
    rows = rows.drop(interrupted)
    rows.loc[rows[(rows["n_clips"] == 2) & (rows["repeat"] == 0)].index[0], "gpu_energy_J"] = np.nan
    distinct = rows[rows["n_clips"] == 10].copy()  # 10 different prompts in one call
    distinct["n_prompts"], distinct["waveforms_per_prompt"] = 10, 1
    distinct["gpu_energy_J"] *= 1.1
    table = summaries.batch_summary(summaries.usable_runs(pd.concat([rows, distinct], ignore_index=True)))
    b = table.set_index(["n_prompts", "n_clips"])
    assert b.loc[(1, 1), "n_runs"] == 4 and b.loc[(1, 1), "incomplete_runs_dropped"] == 1
    assert b.loc[(1, 2), "n_runs"] == 4 and b.loc[(1, 2), "incomplete_runs_dropped"] == 0
    # the study's error bar sums each call's variance over the runs: one run's call without energy leaves
    # that variance, and the error, unknown
    assert np.isnan(b.loc[(1, 2), "study_error_J"]) and b.loc[(1, 5), "study_error_J"] > 0
    per_run = rows[(rows["n_clips"] == 1) & (rows["repeat"] < 4)].groupby("repeat")["gpu_energy_J"].sum()
    assert b.loc[(1, 1), "gpu_energy_J_per_10_clips_mean"] == pytest.approx(per_run.mean(), rel=1e-12)
    assert b.loc[(10, 10), "ratio_to_batch1"] == pytest.approx(
        1.1 * b.loc[(1, 10), "gpu_energy_J_per_10_clips_mean"] / per_run.mean(), rel=1e-12
    )


def test_batch_summary_without_codecarbon_energies_says_unknown_never_zero():
    """Runs of a CPU try-out with CodeCarbon off: neither energy was measured, so neither total is 0."""
    rows = load_paper_data().runs["batch"]
    rows = rows[rows["model"] == "audioldm"][list(schema.COLUMN_NAMES)].copy()
    rows["source"], rows["gpu_name"] = "tta-energy", ""
    rows[["gpu_energy_J", "gpu_energy", "energy_consumed"]] = np.nan
    table = summaries.batch_summary(summaries.usable_runs(rows))
    assert len(table) == 4  # batch 1, 2, 5, 10
    for column in ("gpu_energy_J_per_10_clips_mean", "energy_J_per_10_clips_mean", "study_error_J"):
        assert table[column].isna().all(), column
    assert table["codecarbon_duration_s_per_10_clips_mean"].notna().all()  # the windows' durations were kept
    # the study's error bar sums each call's variance over the runs: a call never measured leaves it unknown
    rows = load_paper_data().runs["batch"]
    rows = rows[rows["model"] == "audioldm"][list(schema.COLUMN_NAMES)].copy()
    first_calls = rows[rows["n_clips"] < 10].groupby(["n_clips", "repeat"]).head(1).index
    rows.loc[first_calls, "gpu_energy_J"] = np.nan
    errors = summaries.batch_summary(summaries.usable_runs(rows)).set_index("n_clips")["study_error_J"]
    assert errors.loc[[1, 2, 5]].isna().all() and errors.loc[10] > 0


def test_parameter_summary_duration_means_intervals_and_latent_length():
    runs = summaries.usable_runs(make_parameter_runs())
    table = summaries.parameter_summary(runs, "duration")
    sao = table[table["model"] == "stable-audio-open"].set_index("duration_s")
    assert list(sao.index) == [5.0, 10.0] and (sao["n_runs"] == 2).all()  # warm-up and error rows left out
    assert sao.loc[10.0, "gpu_energy_J_mean"] == pytest.approx(105.0)
    assert sao.loc[10.0, "gpu_energy_J_std"] == pytest.approx(np.std([100.0, 110.0], ddof=1))
    half = stats.t.ppf(0.975, 1) * np.std([100.0, 110.0], ddof=1) / np.sqrt(2)
    assert sao.loc[10.0, "gpu_energy_J_ci_low"] == pytest.approx(105.0 - half)
    assert sao.loc[10.0, "gpu_energy_J_ci_high"] == pytest.approx(105.0 + half)
    assert sao.loc[5.0, "gpu_energy_J_per_audio_s_mean"] == pytest.approx(93.0 / 5.0)
    assert sao.loc[10.0, "gpu_energy_J_per_latent_s_mean"] == pytest.approx(105.0 / 47.55)
    assert sao.loc[5.0, "wall_s_mean"] == pytest.approx(93.0 / 400.0)
    assert (sao["latent_seconds"] == 47.55).all()
    assert sao.loc[5.0, "ratio_to_reference"] == pytest.approx(93.0 / 105.0)
    assert list(sao["is_reference"]) == [False, True]
    tango = table[table["model"] == "tango"].iloc[0]  # only 10 s measured: its own reference, one run
    assert tango["ratio_to_reference"] == 1.0 and tango["n_runs"] == 1 and np.isnan(tango["gpu_energy_J_std"])
    assert tango["audio_seconds"] == tango["latent_seconds"] == 10.24


def test_parameter_summary_guidance_on_off_and_precision_ratios():
    runs = summaries.usable_runs(make_parameter_runs())
    guidance = summaries.parameter_summary(runs, "guidance").set_index("guidance_scale")
    assert list(guidance.index) == [1.0, 3.0, 5.0]
    assert list(guidance["cfg"]) == [False, True, True]
    assert guidance.loc[1.0, "gpu_energy_J_mean"] == pytest.approx(125.0)
    # two scales > 1: the reference is the one the model's other sweeps use (3, its duration row)
    assert list(guidance["is_reference"]) == [False, True, False]
    assert guidance.loc[1.0, "ratio_to_reference"] == pytest.approx(125.0 / 210.0)
    assert guidance.loc[5.0, "ratio_to_reference"] == pytest.approx(400.0 / 210.0)
    only_guidance = summaries.parameter_summary(runs[runs["guidance_scale"] != 3.0], "guidance")
    assert only_guidance.set_index("guidance_scale").loc[1.0, "ratio_to_reference"] == pytest.approx(
        125 / 400
    )
    precision = summaries.parameter_summary(runs, "precision")
    assert list(precision["dtype"]) == ["float32", "float16", "bfloat16"]
    np.testing.assert_allclose(precision["ratio_to_reference"], [1.0, 150 / 800, 140 / 800])
    assert precision.columns[:2].tolist() == ["model", "dtype"]


def test_parameter_summary_without_rows_is_an_error():
    runs = summaries.usable_runs(make_parameter_runs())
    with pytest.raises(summaries.AnalysisError, match="no usable 'precision' rows"):
        summaries.parameter_summary(runs[runs["experiment"] != "precision"], "precision")
    with pytest.raises(summaries.AnalysisError, match="not one of duration, guidance, precision"):
        summaries.parameter_summary(runs, "steps")


def test_quality_energy_sums_reproduce_the_emissions_files(fronts):
    root = require_paper_data() / "results" / "quality_metrics" / "emissions"
    for model, short in SHORT.items():
        study = read_csv_exact(root / short / f"{short}_emissions.csv")
        assert len(study) > 0, short
        ours = (
            fronts[(fronts["model"] == model)]
            .drop_duplicates(["dataset", "steps"])
            .set_index(["dataset", "steps"])
        )
        for row in study.itertuples():
            assert ours.loc[(row.baseline, row.steps), "gpu_energy_J_sum"] == pytest.approx(
                row.gpu_energy * KWH, rel=RTOL
            )
            assert ours.loc[(row.baseline, row.steps), "n_generations"] == 300


def _quality_rows(energies: dict[str, list[float]], prompts: dict[str, list[str]]) -> pd.DataFrame:
    rows = []
    for dataset, values in energies.items():
        for i, (energy, prompt) in enumerate(zip(values, prompts[dataset], strict=True)):
            rows.append(schema.empty_row() | {
                "source": "tta-energy", "gpu_name": "NVIDIA H200", "experiment": "quality", "model": "tango",
                "size": "full", "dtype": "float32", "steps": 10, "n_clips": 1, "audio_seconds": 10.24,
                "status": "ok", "gpu_energy_J": energy, "wall_s": energy / 400.0, "prompt": prompt,
                "dataset": dataset, "caption_id": f"{dataset}-{i}.wav",
                "timestamp": "2026-01-01T00:00:00+00:00",
            })
    return pd.DataFrame(rows)


def test_quality_energy_summary_per_caption_set_with_welch_test_and_caption_length():
    energies = {"audiocaps": [100.0, 104.0, 108.0, 112.0], "clotho": [110.0, 121.0, 99.0]}
    prompts = {"audiocaps": ["a", "bb", "ccc", "dddd"], "clotho": ["x" * 9, "y", "zz"]}
    runs = _quality_rows(energies, prompts)
    warm = runs.iloc[[0]].assign(is_warmup=True, gpu_energy_J=1e6)  # never enters a mean
    usable = summaries.usable_runs(pd.concat([runs, warm], ignore_index=True))
    table = summaries.quality_energy_summary(usable)
    t = table.set_index("dataset")
    assert t.loc["audiocaps", "n_captions"] == 4 and t.loc["clotho", "n_captions"] == 3
    assert t.loc["audiocaps", "gpu_energy_J_mean"] == pytest.approx(106.0)
    assert t.loc["clotho", "gpu_energy_J_std"] == pytest.approx(np.std(energies["clotho"], ddof=1))
    assert t.loc["clotho", "ratio_to_reference_dataset"] == pytest.approx(110.0 / 106.0)
    assert t.loc["audiocaps", "ratio_to_reference_dataset"] == 1.0
    welch = stats.ttest_ind(energies["audiocaps"], energies["clotho"], equal_var=False).pvalue
    np.testing.assert_allclose(t["welch_p"], welch, rtol=1e-12)
    # energy rises with every extra character in AudioCaps: rho = 1; Clotho: lengths 9, 1, 2 vs 110, 121, 99
    assert t.loc["audiocaps", "spearman_rho_prompt_chars"] == pytest.approx(1.0)
    assert t.loc["clotho", "spearman_rho_prompt_chars"] == pytest.approx(
        stats.spearmanr([9, 1, 2], energies["clotho"]).statistic
    )
    assert t.loc["audiocaps", "prompt_chars_mean"] == pytest.approx(2.5)
    assert t.loc["audiocaps", "gpu_energy_J_per_audio_s_mean"] == pytest.approx(106.0 / 10.24)
    one_set = summaries.quality_energy_summary(summaries.usable_runs(runs[runs["dataset"] == "clotho"]))
    assert np.isnan(one_set["welch_p"].iloc[0]) and np.isnan(one_set["ratio_to_reference_dataset"].iloc[0])
    with pytest.raises(summaries.AnalysisError, match="caption set"):
        summaries.quality_energy_summary(summaries.usable_runs(runs.assign(dataset="")))
    with pytest.raises(summaries.AnalysisError, match="no usable 'quality' rows"):
        summaries.quality_energy_summary(summaries.usable_runs(runs.assign(experiment="steps")))


def test_quality_energy_summary_on_the_studys_subsets(runs):
    table = summaries.quality_energy_summary(summaries.usable_runs(runs))
    assert set(table["model"]) == set(FOLDERS) and (table["n_captions"] == 300).all()
    assert len(table) == 3 * 6 * 2
    # the two caption subsets cost the same within 1% at every step count: caption text barely matters
    assert table["ratio_to_reference_dataset"].between(0.99, 1.01).all()


def test_steps_fit_is_least_squares_of_the_means(steps):
    fit = summaries.steps_fit(steps).set_index("model")
    for model in FOLDERS:
        ours = steps[steps["model"] == model]
        slope, intercept = np.polyfit(ours["steps"], ours["gpu_energy_J_mean"], 1)
        assert fit.loc[model, "slope_J_per_step"] == pytest.approx(slope, rel=1e-10)
        assert fit.loc[model, "intercept_J"] == pytest.approx(intercept, rel=1e-8)
        r = np.corrcoef(ours["steps"], ours["gpu_energy_J_mean"])[0, 1]
        assert fit.loc[model, "r2"] == pytest.approx(r**2, rel=1e-12)
        # the diffusers models run exactly the nominal steps: both fits agree
        assert fit.loc[model, "slope_J_per_call"] == pytest.approx(fit.loc[model, "slope_J_per_step"])
    assert fit.loc["stable-audio-open", "slope_J_per_step"] == pytest.approx(23.82, abs=0.01)


def test_steps_fit_against_denoiser_calls_differs_where_the_sampler_rounds():
    # Make-An-Audio's 150 steps are 167 iterations: energy exactly proportional to iterations fits the
    # calls perfectly and the nominal steps less well
    rows = []
    for steps_, calls in zip([10, 25, 50, 100, 150, 200], [10, 25, 50, 100, 167, 200], strict=True):
        rows.append(
            {
                "source": "study",
                "gpu_name": "NVIDIA A40",
                "model": "make-an-audio",
                "dtype": "float32",
                "size": "full",
                "steps": steps_,
                "denoiser_calls": calls,
                "gpu_energy_J_mean": 5.0 * calls,
            }
        )
    fit = summaries.steps_fit(pd.DataFrame(rows)).iloc[0]
    assert fit["slope_J_per_call"] == pytest.approx(5.0) and fit["r2_calls"] == pytest.approx(1.0)
    assert fit["r2"] < 0.999 and fit["steps_differ_from_calls"]


def test_steps_fit_counts_the_means_it_fits_and_gives_the_slopes_interval():
    # a step count without a mean energy (every run of it unmeasured) is no point of the line
    steps_ = [10, 25, 50, 100, 150, 200]
    energy = [60.0, 131.0, 248.0, np.nan, 760.0, 1004.0]
    rows = pd.DataFrame({"source": "study", "gpu_name": "NVIDIA A40", "model": "audioldm",
                         "dtype": "float16", "size": "full", "steps": steps_, "denoiser_calls": steps_,
                         "gpu_energy_J_mean": energy})
    fit = summaries.steps_fit(rows).iloc[0]
    line = stats.linregress([10, 25, 50, 150, 200], [60.0, 131.0, 248.0, 760.0, 1004.0])
    assert fit["n_points"] == 5 and fit["slope_stderr_J"] == pytest.approx(line.stderr)
    half = stats.t.ppf(0.975, 5 - 2) * line.stderr
    assert fit["slope_J_per_step_ci_low"] == pytest.approx(line.slope - half)
    assert fit["slope_J_per_step_ci_high"] == pytest.approx(line.slope + half)
    narrower = summaries.steps_fit(rows, confidence=0.5).iloc[0]
    assert fit["slope_J_per_step_ci_low"] < narrower["slope_J_per_step_ci_low"] < line.slope


def test_intervals_bracket_the_means(steps, batch):
    assert (steps["gpu_energy_J_ci_low"] < steps["gpu_energy_J_mean"]).all()
    assert (steps["gpu_energy_J_mean"] < steps["gpu_energy_J_ci_high"]).all()
    half = stats.t.ppf(0.975, 4) * steps["gpu_energy_J_std"] / np.sqrt(5)
    np.testing.assert_allclose(steps["gpu_energy_J_ci_high"] - steps["gpu_energy_J_mean"], half, rtol=1e-10)
    np.testing.assert_allclose(
        steps["gpu_energy_J_per_audio_s_mean"], steps["gpu_energy_J_mean"] / 10, rtol=1e-12
    )
    assert (batch["gpu_energy_J_per_10_clips_ci_low"] < batch["gpu_energy_J_per_10_clips_mean"]).all()


def test_the_studys_warmup_is_flagged_and_can_be_dropped():
    all_runs = load_paper_data().all_runs()
    first = summaries.mark_first_generations(all_runs)
    marked = all_runs[first]
    # one per model and experiment: run 1 at 10 steps, batch-10 run 1, the first AudioCaps caption at 10 steps
    assert len(marked) == 3 * 3
    assert set(marked.loc[marked["experiment"] == "steps", "steps"]) == {10}
    assert set(marked.loc[marked["experiment"] == "steps", "repeat"]) == {0}
    assert set(marked.loc[marked["experiment"] == "batch", "n_clips"]) == {10}
    audioldm = marked[(marked["model"] == "audioldm") & (marked["experiment"] == "steps")]
    assert audioldm["gpu_energy_J"].iloc[0] == pytest.approx(3.135030285505991e-05 * KWH)  # ≈ 113 J
    kept = summaries.steps_summary(summaries.usable_runs(all_runs))
    dropped = summaries.steps_summary(summaries.usable_runs(all_runs, drop_study_warmup=True))
    k10 = kept[(kept["model"] == "audioldm") & (kept["steps"] == 10)].iloc[0]
    d10 = dropped[(dropped["model"] == "audioldm") & (dropped["steps"] == 10)].iloc[0]
    assert k10["first_generation_included"] and not d10["first_generation_included"]
    assert d10["n_runs"] == 4 and d10["gpu_energy_J_mean"] < k10["gpu_energy_J_mean"] - 10
    assert d10["gpu_energy_J_std"] < k10["gpu_energy_J_std"] / 4
    same = dropped[dropped["steps"] > 10].reset_index(drop=True)
    pd.testing.assert_frame_equal(same, kept[kept["steps"] > 10].reset_index(drop=True))


def test_pareto_mask_is_strict_dominance():
    energy = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 4.0])
    clap = np.array([0.1, 0.3, 0.2, 0.3, 0.5, 0.5])
    # (2, .2) is dominated by (2, .3); (3, .3) by (2, .3); the exact tie (4, .5) x2: neither dominates
    assert pareto.pareto_mask(energy, clap, True).tolist() == [True, True, False, False, True, True]
    fad = -clap
    assert pareto.pareto_mask(energy, fad, False).tolist() == [True, True, False, False, True, True]
    assert pareto.pareto_mask(energy, clap, False).tolist() == [True, False, False, False, False, False]
    # the study's non-strict sweep also keeps (3, .3), which only ties the score of a cheaper point; the
    # published data have no such ties, so its fronts are the strict ones there (next test)
    assert pareto.study_sweep_front(energy, clap, True).tolist() == [True, True, False, True, True, True]
    batched = pareto.pareto_mask_batched(np.stack([energy, energy[::-1]]), np.stack([clap, clap]), True)
    assert batched[0].tolist() == pareto.pareto_mask(energy, clap, True).tolist()
    assert batched[1].tolist() == pareto.pareto_mask(energy[::-1], clap, True).tolist()
    # a point without an energy or a score is on no front (no comparison with NaN could dominate it)
    unknown = np.array([1.0, np.nan, 3.0]), np.array([0.5, 0.9, np.nan])
    assert pareto.pareto_mask(*unknown, True).tolist() == [True, False, False]
    batched = pareto.pareto_mask_batched(unknown[0][None], unknown[1][None], True)
    assert batched.tolist() == [[True, False, False]]


def test_the_per_call_slope_counts_only_the_generations_it_fits():
    rows = pd.DataFrame({"source": "tta-energy", "gpu_name": "H200", "model": "tango", "dtype": "float32",
                         "size": "full", "experiment": "steps", "denoiser_calls": [10, 20, 30, 40, 50],
                         "gpu_energy_J": [100.0, 210.0, 290.0, 410.0, np.nan]})
    keys = [k for k in summaries.PLATFORM_KEYS if k not in rows.columns]
    rows = rows.assign(**dict.fromkeys(keys, ""))
    fit = summaries.per_call_fit(rows).iloc[0]
    line = stats.linregress([10, 20, 30, 40], [100.0, 210.0, 290.0, 410.0])
    half = stats.t.ppf(0.975, 4 - 2) * line.stderr  # 4 generations fitted, not the 5 rows
    assert fit["n_generations"] == 4 and fit["slope_J_per_call"] == pytest.approx(line.slope)
    assert "n_runs" not in fit.index  # n_runs is the repeats of one cell; this count pools the step counts
    assert fit["slope_J_per_call_ci_high"] - fit["slope_J_per_call"] == pytest.approx(half)


def test_pareto_fronts_on_the_studys_data(fronts):
    from paretoset import paretoset

    assert len(fronts) == 2 * 2 * 3 * 6
    for (dataset, metric), grp in fronts.groupby(["dataset", "metric"]):
        higher = metric == "clap"
        assert (grp["higher_is_better"] == higher).all()
        # the study's own algorithm on its own x axis (300-clip sums) draws the same front
        sweep = pareto.study_sweep_front(grp["gpu_energy_J_sum"], grp["score"], higher)
        assert sweep.tolist() == grp["pareto_optimal"].tolist(), (dataset, metric)
        # and an independent library agrees
        lib = paretoset(
            grp[["gpu_energy_J_mean", "score"]].to_numpy(), sense=["min", "max" if higher else "min"]
        )
        assert lib.tolist() == grp["pareto_optimal"].tolist(), (dataset, metric)
        # the cheapest configuration is always on the front
        assert grp.loc[grp["gpu_energy_J_mean"].idxmin(), "pareto_optimal"]
    front = fronts[fronts["pareto_optimal"]]
    got = {
        (d, m): sorted(zip(g["model"], g["steps"], strict=True))
        for (d, m), g in front.groupby(["dataset", "metric"])
    }
    assert got[("audiocaps", "fad")] == [
        ("audioldm", 10),
        ("audioldm2", 10),
        ("audioldm2", 25),
        ("audioldm2", 150),
    ]
    assert ("stable-audio-open", 25) in got[("clotho", "fad")]
    assert all(m != "stable-audio-open" for m, _ in got[("audiocaps", "clap")])


def test_bootstrap_front_frequency(runs, fronts):
    assert fronts["front_frequency"].between(0, 1).all()
    assert (fronts.loc[fronts["pareto_optimal"], "front_frequency"] > 0.5).all()
    assert (fronts["gpu_energy_J_ci_low"] <= fronts["gpu_energy_J_mean"]).all()
    assert (fronts["gpu_energy_J_mean"] <= fronts["gpu_energy_J_ci_high"]).all()
    again = pareto.pareto_table(runs, load_paper_data().scores, n_boot=200, seed=1)
    pd.testing.assert_frame_equal(again, fronts)
    none = pareto.pareto_table(runs, load_paper_data().scores, n_boot=0)
    assert none["front_frequency"].isna().all()
    assert none["pareto_optimal"].tolist() == fronts["pareto_optimal"].tolist()


def test_per_clip_scores_are_resampled_and_make_fronts_uncertain():
    # two configurations with the same energy distribution; per-clip scores overlap heavily
    rng = np.random.default_rng(0)
    rows, scores = [], []
    for model, energy, clap in (("audioldm", 50.0, 0.30), ("audioldm2", 51.0, 0.301)):
        for i in range(40):
            row = schema.empty_row()
            row.update(
                source="tta-energy",
                gpu_name="G",
                model=model,
                dtype="float16",
                size="full",
                experiment="quality",
                dataset="audiocaps",
                steps=10,
                denoiser_calls=10,
                gpu_energy_J=energy + rng.normal(0, 3),
                gpu_energy=np.nan,
                status="ok",
            )
            rows.append(row)
            scores.append(
                {
                    "source": "tta-energy",
                    "model": model,
                    "dataset": "audiocaps",
                    "steps": 10,
                    "metric": "clap",
                    "value": clap + rng.normal(0, 0.05),
                    "caption_id": f"c{i}.wav",
                }
            )
    per_clip = pd.DataFrame(scores)
    # the quality module writes a summary row next to the per-clip rows: it must not duplicate a configuration
    summary_rows = per_clip.groupby(["source", "model", "dataset", "steps", "metric"], as_index=False)[
        "value"
    ].mean()
    summary_rows["caption_id"] = ""
    fad = summary_rows.assign(metric="fad_inf", value=[0.5, 0.4])
    table = pareto.pareto_table(
        pd.DataFrame(rows), pd.concat([per_clip, summary_rows, fad]), n_boot=300, seed=0
    )
    assert len(table) == 4 and set(table["metric"]) == {"clap", "fad_inf"}
    fad_rows = table[table["metric"] == "fad_inf"]
    assert not fad_rows["higher_is_better"].any() and fad_rows["pareto_optimal"].all()  # cheaper vs better
    table = table[table["metric"] == "clap"]
    assert table["score_resampled"].all()
    assert (table["front_frequency"] > 0.05).all() and (table["front_frequency"] < 1).any()


def test_scores_join_on_keys_not_positions(runs):
    scores = load_paper_data().scores
    shuffled = scores.sample(frac=1.0, random_state=3).reset_index(drop=True)
    a = pareto.pareto_table(runs, scores, n_boot=0)
    b = pareto.pareto_table(runs, shuffled, n_boot=0)
    pd.testing.assert_frame_equal(a, b)
    clotho_clap = a[(a["dataset"] == "clotho") & (a["metric"] == "clap") & (a["model"] == "audioldm")]
    assert clotho_clap.set_index("steps").loc[150, "score"] == 0.3405739367008209


def _interaction_p_by_hand(steps_, subset, full):
    """OLS with an explicit design matrix (numpy) and a two-sided t-test of the interaction coefficient."""
    x = np.concatenate([steps_, steps_]).astype(float)
    g = np.concatenate([np.zeros(len(steps_)), np.ones(len(steps_))])
    y = np.concatenate([subset, full])
    design = np.column_stack([np.ones_like(x), g, x, x * g])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    dof = len(y) - design.shape[1]
    cov = resid @ resid / dof * np.linalg.inv(design.T @ design)
    t = beta[3] / np.sqrt(cov[3, 3])
    return 2 * stats.t.sf(abs(t), dof)


def test_sanity_reproduces_the_studys_published_statistics():
    data = load_paper_data()
    table = sanity.sanity_table(data.scores)
    assert list(table.columns[:6]) == ["metric", "model", "dataset", "pearson_r", "pearson_p", "ancova_p"]
    assert set(table["model"]) == {"audioldm2"} and len(table) == 4
    scores = data.scores
    for row in table.itertuples():
        r, p, ancova = PUBLISHED_SANITY[(row.metric, row.dataset)]
        assert row.pearson_r == pytest.approx(r, rel=1e-12)
        assert row.pearson_p == pytest.approx(p, rel=1e-9)
        assert row.ancova_p == pytest.approx(ancova, rel=1e-9)
        sel = scores[
            (scores["metric"] == row.metric)
            & (scores["dataset"] == row.dataset)
            & (scores["model"] == row.model)
        ]
        sub = sel[sel["scope"] == "subset"].sort_values("steps")
        full = sel[sel["scope"] == "full"].sort_values("steps")
        assert row.ancova_p == pytest.approx(
            _interaction_p_by_hand(
                sub["steps"].to_numpy(), sub["value"].to_numpy(), full["value"].to_numpy()
            ),
            rel=1e-9,
        )
        # the group coding does not change the interaction p-value
        swapped = pd.DataFrame(
            {
                "score": np.concatenate([full["value"], sub["value"]]),
                "steps": np.concatenate([full["steps"], sub["steps"]]).astype(float),
                "group": ["a"] * 6 + ["b"] * 6,
            }
        )
        fit = smf.ols("score ~ steps * C(group)", data=swapped).fit()
        assert fit.pvalues.filter(like=":").iloc[0] == pytest.approx(row.ancova_p, rel=1e-9)


def test_analyze_on_the_study_writes_every_table(tmp_path, capsys):
    out = tmp_path / "tables"
    cli_main(["analyze", "--study", str(require_paper_data()), "--out-dir", str(out), "--bootstrap", "50"])
    assert "96/96 of the study's aggregates reproduced" in capsys.readouterr().out
    for name, columns in tables.TABLE_COLUMNS.items():
        df = pd.read_csv(out / f"{name}.csv")
        assert set(columns) <= set(df.columns), name
        assert (len(df) == 0) if name == "host_summary" else (len(df) > 0), name  # the study has no host rows
    rep = pd.read_csv(out / "reproduction.csv")
    assert rep["matches"].all() and len(rep) == 96
    assert set(rep["experiment"]) == {"steps", "batch", "quality"}
    # the committed import carries the same aggregates, so the repository's data reproduces them on its own
    study = Path(__file__).resolve().parents[1] / "data" / "study"
    committed = pd.read_csv(study / "published_aggregates.csv", dtype={"key": str})
    pd.testing.assert_frame_equal(committed, rep[list(committed.columns)].astype({"key": str}))


def test_the_committed_import_reproduces_the_studys_aggregates_without_the_study(tmp_path, capsys):
    """`data/study` holds the study's aggregate files as `published_aggregates.csv`: analysing the import
    alone (what `make reproduce` does) checks the 96 published values without a copy of the study."""
    out = tmp_path / "tables"
    study = Path(__file__).resolve().parents[1] / "data" / "study"
    cli_main(["analyze", "--runs", str(study), "--out-dir", str(out), "--bootstrap", "20"])
    assert "96/96 of the study's aggregates reproduced" in capsys.readouterr().out
    rep = pd.read_csv(out / "reproduction.csv")
    assert len(rep) == 96 and rep["matches"].all() and rep["rel_diff"].max() < 1e-9
    readme = (out / "README.md").read_text()
    assert "standard error" in readme and "swapped" in readme and "96 of 96" in readme
    docs = (Path(__file__).resolve().parents[1] / "docs" / "analysis.md").read_text(encoding="utf-8")
    for name in tables.TABLE_COLUMNS:  # the written README and the docs describe every table analyze writes
        assert f"{name}.csv" in readme and f"**{name}.csv**" in docs, name
    assert f"reports {rep['matches'].sum()} of {len(rep)}\naggregate values" in docs
    assert f"the largest difference, {rep['rel_diff'].max():.1e}," in docs
    n = rep.groupby(["experiment", "statistic"]).size()
    counts = (
        f"({n['steps', 'mean']} + {n['steps', 'std']})",
        f"({n['batch', 'total']} + {n['batch', 'error']})",
        f"({n['quality', 'sum']})",
    )
    for part in counts:
        assert part in docs, f"docs/analysis.md should count the study's aggregates as {part}"


def test_analyze_on_run_tables_equals_analyze_on_the_tree(tmp_path):
    from tta_energy.analysis import study_import

    imported = tmp_path / "study"
    study_import.write_study(load_paper_data(), imported)
    a = tables.build_tables(tables.load_inputs(require_paper_data()), n_boot=0)
    b = tables.build_tables(tables.load_inputs(None, [imported]), n_boot=0)
    for name in tables.TABLE_COLUMNS:
        pd.testing.assert_frame_equal(
            a.tables[name].reset_index(drop=True),
            b.tables[name].reset_index(drop=True),
            check_dtype=False,
            obj=name,
        )
    assert "published_pearson_r" not in b.tables["sanity"].columns  # the subset has no published statistics


def test_analyze_with_h200_runs_keeps_platforms_apart(tmp_path):
    h200 = make_h200_runs(tmp_path / "h200", load_paper_data().runs["steps"])
    result = tables.build_tables(tables.load_inputs(require_paper_data(), [h200]), n_boot=0)
    steps_ = result.tables["steps_summary"]
    assert set(steps_["gpu_name"]) == {"NVIDIA A40", "NVIDIA H200"}
    a40 = steps_[steps_["gpu_name"] == "NVIDIA A40"].set_index(["model", "steps"])["gpu_energy_J_mean"]
    h = steps_[steps_["gpu_name"] == "NVIDIA H200"].set_index(["model", "steps"])
    np.testing.assert_allclose(
        h["gpu_energy_J_mean"], a40.loc[h.index] * 0.4, rtol=1e-12
    )  # warm-ups excluded
    assert (h["n_runs"] == 5).all()
    fits = result.tables["steps_fit"]
    per_steps, per_model = compare.platform_comparison(
        steps_, fits, ("study", "NVIDIA A40"), ("tta-energy", "NVIDIA H200")
    )
    np.testing.assert_allclose(per_steps["ratio_other_to_reference"], 0.4, rtol=1e-12)
    np.testing.assert_allclose(per_model["slope_ratio_other_to_reference"], 0.4, rtol=1e-10)
    assert per_model["rank_reference"].tolist() == per_model["rank_other"].tolist()
    assert per_model["spearman_rho"].iloc[0] == pytest.approx(1.0)
    assert per_model["reference"].iloc[0] == "study A40" and per_model["other"].iloc[0] == "tta-energy H200"
    # each platform's fit error travels with its slope (the comparison figure's error bars)
    for side, platform in (("reference", "NVIDIA A40"), ("other", "NVIDIA H200")):
        fit = fits[fits["gpu_name"] == platform].set_index("model")
        for column in ("slope_stderr_J", "slope_J_per_step_ci_low", "slope_J_per_step_ci_high"):
            np.testing.assert_array_equal(per_model[f"{column}_{side}"], fit.loc[per_model["model"], column])
        assert (per_model[f"n_points_{side}"] == fit.loc[per_model["model"], "n_points"].to_numpy()).all()


def test_analyze_bad_input(tmp_path, capsys):
    def run(args):
        with pytest.raises(SystemExit) as exc:
            cli_main(args)
        return exc.value.code, capsys.readouterr().err

    out = tmp_path / "out"
    code, err = run(["analyze", "--out-dir", str(out)])
    assert code == 2 and "--study PATH" in err
    bad = tmp_path / "bad.csv"
    steps_ = load_paper_data().runs["steps"][list(schema.COLUMN_NAMES)].drop(columns=["gpu_energy_J"])
    steps_.to_csv(bad, index=False)
    code, err = run(["analyze", "--runs", str(bad), "--out-dir", str(out)])
    assert code == 2 and "bad.csv" in err and "gpu_energy_J" in err
    text = load_paper_data().runs["steps"][list(schema.COLUMN_NAMES)].copy()
    text["gpu_energy_J"] = text["gpu_energy_J"].astype(object)
    text.loc[3, "gpu_energy_J"] = "lots"
    text.to_csv(bad, index=False)
    code, err = run(["analyze", "--runs", str(bad), "--out-dir", str(out)])
    assert code == 2 and "bad.csv: column 'gpu_energy_J' holds a non-numeric value 'lots'" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run(["analyze", "--runs", str(empty), "--out-dir", str(out)])
    assert code == 2 and "no run tables" in err
    (empty / "notes.csv").write_text("a,b\n1,2\n", encoding="utf-8")  # a CSV of another kind is named
    for command in (["analyze", "--runs", str(empty), "--out-dir", str(out)],
                    ["estimate", "--model", "audioldm", "--steps", "10", "--runs", str(empty)]):
        code, err = run(command)
        assert code == 2 and (f"no run tables under {empty}: 1 CSV file(s) there, such as "
                              f"{empty / 'notes.csv'}, have no run table's header") in err, err
    assert not out.exists()


def test_missing_experiments_give_empty_tables_with_a_note(tmp_path):
    steps_only = tmp_path / "steps.csv"
    schema.write_runs(steps_only, load_paper_data().runs["steps"][list(schema.COLUMN_NAMES)])
    written, result = tables.analyze(None, [steps_only], tmp_path / "out", n_boot=0)
    assert len(result.tables["steps_summary"]) == 18
    for name in ("batch_summary", "pareto", "sanity", "quality_energy"):
        df = pd.read_csv(tmp_path / "out" / f"{name}.csv")
        assert df.empty and list(df.columns) == list(tables.TABLE_COLUMNS[name])
        assert name in result.notes
    assert "Empty tables" in (tmp_path / "out" / "README.md").read_text()
