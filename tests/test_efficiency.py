"""FLOP per joule of the steps sweep, on synthetic rows whose arithmetic is known."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tta_energy import schema
from tta_energy.analysis import efficiency, plots, summaries, tables
from tta_energy.analysis.summaries import AnalysisError
from tta_energy.models import catalogue

#: AudioLDM's stored counts at full size: GFLOP of one denoiser call and once per generation (10 s, batch 1)
AUDIOLDM = catalogue.precomputed_description("audioldm", "full", 10.0)
PER_CALL, ONCE = AUDIOLDM["gflop_per_step"], AUDIOLDM["gflop_once_per_generation"]


#: each row its own configuration: a table measures a (config_id, repeat) pair once
_CONFIGS = itertools.count()


def _row(steps: int, energy: float, *, model: str = "audioldm", source: str = "tta-energy",
         gpu: str = "NVIDIA H200", duration: float = 10.0, experiment: str = "steps", **extra) -> dict:
    return schema.empty_row() | {
        "source": source, "gpu_name": gpu, "experiment": experiment, "model": model, "size": "full",
        "dtype": "float16", "steps": steps, "denoiser_calls": steps, "n_prompts": 1,
        "waveforms_per_prompt": 1, "n_clips": 1, "duration_s": duration, "status": "ok",
        "gpu_energy_J": energy, "gpu_energy_method": "nvml_counter", "cpu_energy_method": "estimate",
        "wall_s": 1.0,
        "timestamp": "2026-01-01T00:00:00+00:00", "config_id": f"configuration {next(_CONFIGS)}",
    } | extra


def _runs(noise: tuple[float, ...] = (0.0, 0.0)) -> pd.DataFrame:
    """AudioLDM on an H200: 40 J once + 5 J per call, two repeats per step count offset by ``noise``."""
    return pd.DataFrame([_row(s, 40.0 + 5.0 * s + e) for s in (10, 50, 100) for e in noise])


def test_exact_rows_give_the_counted_flops_over_the_slope():
    table = efficiency.efficiency_table(_runs())
    assert len(table) == 1
    r = table.iloc[0]
    assert r["slope_J_per_call"] == pytest.approx(5.0)
    assert r["gflop_per_call"] == pytest.approx(PER_CALL)
    assert r["denoiser_tflop_per_J"] == pytest.approx(PER_CALL / 1e3 / 5.0)
    assert r["generation_denoiser_calls"] == 100
    assert r["generation_gflop"] == pytest.approx(PER_CALL * 100 + ONCE)
    assert r["generation_J_mean"] == pytest.approx(540.0)
    assert r["generation_tflop_per_J"] == pytest.approx((PER_CALL * 100 + ONCE) / 1e3 / 540.0)
    assert np.isnan(r["ceiling_tflop_per_J"]) and np.isnan(r["denoiser_fraction_of_ceiling"])
    assert r["reason"] == ""


def test_intervals_are_the_slope_and_mean_intervals_inverted():
    runs = _runs(noise=(-3.0, 3.0))
    r = efficiency.efficiency_table(runs).iloc[0]
    fit = stats.linregress(runs["denoiser_calls"].astype(float), runs["gpu_energy_J"].astype(float))
    half = stats.t.ppf(0.975, len(runs) - 2) * fit.stderr
    tflop = PER_CALL / 1e3
    assert r["denoiser_tflop_per_J_ci_low"] == pytest.approx(tflop / (fit.slope + half))
    assert r["denoiser_tflop_per_J_ci_high"] == pytest.approx(tflop / (fit.slope - half))
    at_100 = np.array([537.0, 543.0])
    mean_half = stats.t.ppf(0.975, 1) * at_100.std(ddof=1) / np.sqrt(2)
    gflop = PER_CALL * 100 + ONCE
    assert r["generation_tflop_per_J_ci_low"] == pytest.approx(gflop / 1e3 / (540.0 + mean_half))
    assert r["generation_tflop_per_J_ci_high"] == pytest.approx(gflop / 1e3 / (540.0 - mean_half))
    assert r["denoiser_tflop_per_J_ci_low"] < r["denoiser_tflop_per_J"] < r["denoiser_tflop_per_J_ci_high"]


def test_the_same_gpus_ceiling_gives_the_fractions_and_other_gpus_get_none():
    runs = pd.concat([_runs(), pd.DataFrame([_row(s, 20.0 + 2.0 * s, source="study", gpu="NVIDIA A40")
                                             for s in (10, 50, 100) for _ in range(2)])], ignore_index=True)
    ceilings = pd.DataFrame({"gpu_name": ["NVIDIA H200"], "ceiling_tflop_per_J": [0.96], "ceiling_n": [4]})
    table = efficiency.efficiency_table(runs, ceilings).set_index("gpu_name")
    h200, a40 = table.loc["NVIDIA H200"], table.loc["NVIDIA A40"]
    assert h200["denoiser_fraction_of_ceiling"] == pytest.approx(PER_CALL / 1e3 / 5.0 / 0.96)
    assert h200["generation_fraction_of_ceiling"] == pytest.approx(h200["generation_tflop_per_J"] / 0.96)
    assert np.isnan(a40["ceiling_tflop_per_J"]) and np.isnan(a40["denoiser_fraction_of_ceiling"])
    assert a40["denoiser_tflop_per_J"] == pytest.approx(PER_CALL / 1e3 / 2.0)


def test_rows_the_counts_do_not_hold_get_a_reason_not_a_ratio():
    other_duration = pd.DataFrame([_row(s, 10.0 * s, duration=5.0) for s in (10, 50, 100) for _ in range(2)])
    r = efficiency.efficiency_table(other_duration).iloc[0]
    assert np.isnan(r["denoiser_tflop_per_J"]) and "10 s" in r["reason"] and "5.0" in r["reason"]
    assert r["slope_J_per_call"] == pytest.approx(10.0)  # the energy per call is still reported
    plugin = pd.DataFrame([_row(s, 10.0 * s, model="someone-elses-model")
                           for s in (10, 50) for _ in range(2)])
    r = efficiency.efficiency_table(plugin).iloc[0]
    assert np.isnan(r["denoiser_tflop_per_J"]) and "no stored FLOP count" in r["reason"]
    no_100 = pd.DataFrame([_row(s, 40.0 + 5.0 * s) for s in (10, 50) for _ in range(2)])
    r = efficiency.efficiency_table(no_100).iloc[0]
    assert r["denoiser_tflop_per_J"] == pytest.approx(PER_CALL / 1e3 / 5.0)
    assert np.isnan(r["generation_tflop_per_J"]) and "100 steps" in r["reason"]
    with pytest.raises(AnalysisError, match="no usable 'steps' rows"):
        efficiency.efficiency_table(_runs().assign(experiment="batch"))


def test_read_ceilings_averages_the_bf16_rows_of_every_levers_folder(tmp_path):
    header = "run_id,when,device,gpu_name,n,iterations,wall_s,gpu_energy_J,tflop_per_s,tflop_per_J,power_W"
    (tmp_path / "part1").mkdir()
    (tmp_path / "part1" / "levers_ceiling.csv").write_text(
        header + "\nr1,start,cuda,NVIDIA H200,8192,1,1,1,600,0.95,700"
        "\nr1,end,cuda,NVIDIA H200,8192,1,1,1,600,0.97,700\n")
    (tmp_path / "deeper" / "part2").mkdir(parents=True)
    (tmp_path / "deeper" / "part2" / "levers_ceiling.csv").write_text(
        header + ",precision\nr2,start,cuda,NVIDIA H200,8192,1,1,1,600,0.96,700,bf16\n"
        "r2,start,cuda,NVIDIA H200,8192,1,1,1,900,1.60,700,fp8\n")
    ceilings = efficiency.read_ceilings([tmp_path])
    assert list(ceilings["gpu_name"]) == ["NVIDIA H200"]
    assert ceilings["ceiling_tflop_per_J"].iloc[0] == pytest.approx(0.96)  # fp8 row left out
    assert ceilings["ceiling_n"].iloc[0] == 3
    assert efficiency.read_ceilings([tmp_path / "nothing-here"]).empty
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "levers_ceiling.csv").write_text("a,b\n1,2\n")  # someone else's file of that name
    with pytest.raises(schema.SchemaError, match="needs the columns gpu_name and tflop_per_J"):
        efficiency.read_ceilings([tmp_path])


def test_analyze_writes_the_table_with_the_ceiling_found_beside_the_runs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    schema.write_runs(data / "steps.csv", _runs(noise=(-1.0, 1.0)))
    (data / "levers").mkdir()
    (data / "levers" / "levers_ceiling.csv").write_text(
        "run_id,when,device,gpu_name,n,iterations,wall_s,gpu_energy_J,tflop_per_s,tflop_per_J,power_W\n"
        "r,start,cuda,NVIDIA H200,8192,1,1,1,600,0.80,700\n")
    _, result = tables.analyze(None, [data], tmp_path / "out", n_boot=0)
    table = pd.read_csv(tmp_path / "out" / "efficiency.csv")
    assert table["ceiling_tflop_per_J"].iloc[0] == pytest.approx(0.80)
    assert table["denoiser_fraction_of_ceiling"].iloc[0] == pytest.approx(
        result.tables["efficiency"]["denoiser_tflop_per_J"].iloc[0] / 0.80)
    assert "efficiency.csv" in (tmp_path / "out" / "README.md").read_text()


def test_the_figure_is_drawn_or_skipped_with_a_reason(tmp_path):
    table = efficiency.efficiency_table(_runs(noise=(-1.0, 1.0)))
    batch = efficiency.batch_efficiency(_batch_runs())
    assert plots.plot_flop_efficiency(table, batch, tmp_path) == "flop-per-joule"
    assert (tmp_path / "flop-per-joule.png").stat().st_size > 0
    assert plots.plot_flop_efficiency(table, pd.DataFrame(), tmp_path / "no-batch") == "flop-per-joule"
    assert plots.plot_flop_efficiency(pd.DataFrame(), batch, tmp_path / "empty") is None
    entry = plots.read_manifest(tmp_path / "empty")["flop-per-joule"]
    assert entry["status"] == "skipped" and "FLOP counts" in entry["caption"]


def _batch_runs() -> pd.DataFrame:
    """Tango (fp32, 100 steps): two runs of 2 calls of one clip, two runs of one call of 10 clips, one run of
    10 prompts; the denoising phase costs about 2000 J per clip alone and 900 J per clip at batch 10."""
    def row(prompts: int, waveforms: int, energy: float, repeat: int) -> dict:
        clips = prompts * waveforms
        return _row(100, energy + 100.0, model="tango", experiment="batch", n_prompts=prompts,
                    waveforms_per_prompt=waveforms, n_clips=clips, energy_denoising_J=energy, repeat=repeat,
                    denoiser_calls=100 * -(-clips // 8))
    return pd.DataFrame([row(1, 1, 2000.0 + e, r) for r, e in ((0, -10.0), (0, 10.0), (1, 0.0), (1, 20.0))]
                        + [row(1, 10, 9000.0 + e, r) for r, e in ((0, -50.0), (1, 50.0))]
                        + [row(10, 1, 9000.0, 0)])


def test_batching_is_read_as_the_denoising_phases_flop_per_joule():
    tango = catalogue.precomputed_description("tango", "full", 10.0)["gflop_per_step"]
    ceilings = pd.DataFrame({"gpu_name": ["NVIDIA H200"], "ceiling_tflop_per_J": [0.96], "ceiling_n": [2]})
    table = efficiency.batch_efficiency(_batch_runs(), ceilings)
    table = table.set_index(["n_prompts", "waveforms_per_prompt"])
    single, batched, distinct = table.loc[(1, 1)], table.loc[(1, 10)], table.loc[(10, 1)]
    # one clip's FLOPs: per-call FLOPs x the sampler's iterations (100), not the row's denoiser calls (200)
    assert single["denoising_gflop_per_clip"] == batched["denoising_gflop_per_clip"] == pytest.approx(
        tango * 100)
    # runs, not calls: run 0 of one clip per call costs 2000 J per clip, run 1 2010 J
    assert (single["n_runs"], single["n_calls"]) == (2, 4)
    assert single["denoising_J_per_clip_mean"] == pytest.approx(2005.0)
    assert single["denoising_tflop_per_J"] == pytest.approx(tango * 100 / 1e3 / 2005.0)
    per_clip = np.array([895.0, 905.0])
    half = stats.t.ppf(0.975, 1) * per_clip.std(ddof=1) / np.sqrt(2)
    assert batched["denoising_tflop_per_J"] == pytest.approx(tango * 100 / 1e3 / 900.0)
    assert batched["denoising_tflop_per_J_ci_low"] == pytest.approx(tango * 100 / 1e3 / (900.0 + half))
    assert batched["denoising_fraction_of_ceiling"] == pytest.approx(batched["denoising_tflop_per_J"] / 0.96)
    assert distinct["n_runs"] == 1 and np.isnan(distinct["denoising_tflop_per_J_ci_low"])  # one run
    no_phases = _batch_runs().assign(energy_denoising_J=np.nan)
    reasons = efficiency.batch_efficiency(no_phases)["reason"]
    assert reasons.str.startswith("no complete run with the denoising phase's energy").all()
    cut = _batch_runs().iloc[:-2]  # the second batch-10 run and the 10-prompt run gone; then a run cut short
    cut = pd.concat([cut, cut.iloc[[0]].assign(repeat=2)], ignore_index=True)
    assert efficiency.batch_efficiency(cut).set_index(["n_prompts", "waveforms_per_prompt"]).loc[
        (1, 1), "n_runs"] == 2  # run 2 made 1 clip of 2: left out


def test_first_generations_are_found_by_position_when_labels_repeat():
    """Two tables concatenated without a new index repeat row labels; only the study's first call counts."""
    h200 = pd.DataFrame([_row(10, 100.0, timestamp="2026-01-01T00:00:00+00:00")])
    study = pd.DataFrame([_row(10, 200.0, source="study", gpu="NVIDIA A40", timestamp=t)
                          for t in ("2025-01-01T00:00:01+00:00", "2025-01-01T00:00:00+00:00")])
    flags = summaries.mark_first_generations(pd.concat([h200, study]))  # labels 0, 0, 1
    assert flags.tolist() == [False, False, True]


def test_the_studys_warm_up_call_never_enters_a_ratio():
    study = pd.DataFrame([_row(s, 20.0 + 2.0 * s, source="study", gpu="NVIDIA A40",
                               timestamp=f"2025-01-01T00:00:{k:02d}+00:00")
                          for k, s in enumerate((10, 10, 50, 50, 100, 100))])
    study.loc[0, "gpu_energy_J"] = 500.0  # the script's first call: CUDA warm-up
    flagged = summaries.usable_runs(study)  # keeps it, flagged first_generation (as analyze does by default)
    assert flagged["first_generation"].sum() == 1
    r = efficiency.efficiency_table(flagged).iloc[0]
    assert r["n_generations"] == 5 and r["slope_J_per_call"] == pytest.approx(2.0)


def test_with_the_runs_named_one_by_one_the_ceiling_comes_with_them(tmp_path):
    """`make reproduce STUDY=...` names the tables one by one (data/study left out): the ceiling files are
    among them, read as ceilings and never as run tables, so the fractions of the ceiling stay."""
    from tta_energy.analysis.reproduce import data_inputs

    data = tmp_path / "data"
    (data / "h200" / "levers" / "part1").mkdir(parents=True)
    (data / "study").mkdir()
    schema.write_runs(data / "h200" / "steps.csv", _runs(noise=(-1.0, 1.0)))
    schema.write_runs(data / "study" / "steps.csv", _runs(noise=(-1.0, 1.0)))
    ceiling = data / "h200" / "levers" / "part1" / "levers_ceiling.csv"
    ceiling.write_text("run_id,when,device,gpu_name,n,iterations,wall_s,gpu_energy_J,tflop_per_s,tflop_per_J,"
                       "power_W\nr,start,cuda,NVIDIA H200,8192,1,1,1,600,0.80,700\n")
    inputs = data_inputs(data, exclude=data / "study")
    assert sorted(inputs) == sorted([str(data / "h200" / "steps.csv"), str(ceiling)])
    assert tables.find_tables(inputs) == ([data / "h200" / "steps.csv"], [])
    table = efficiency.efficiency_table(_runs(noise=(-1.0, 1.0)), efficiency.read_ceilings(inputs))
    assert table["ceiling_tflop_per_J"].iloc[0] == pytest.approx(0.80)
    tables.analyze(None, inputs, tmp_path / "out", n_boot=0, source_name=lambda s: f"<{Path(s).name}>")
    readme = (tmp_path / "out" / "README.md").read_text()
    assert "- <steps.csv>" in readme and "- <levers_ceiling.csv>" not in readme  # the inputs: run tables
    written = pd.read_csv(tmp_path / "out" / "efficiency.csv")
    assert written["ceiling_tflop_per_J"].iloc[0] == pytest.approx(0.8)


def test_platforms_take_colours_no_model_takes_and_the_hollow_points_have_a_key(tmp_path, monkeypatch):
    """Two platforms (an A40 without a ceiling, an H200 with one): black and grey, never a model's colour;
    the caption says which platform has no ceiling; the batch panel's distinct-prompt points have a key."""
    import matplotlib.colors

    from tta_energy.analysis.plots import efficiency as efficiency_plots

    runs = pd.concat([_runs(noise=(-1.0, 1.0)),
                      pd.DataFrame([_row(s, 30.0 + 4.0 * s + e, source="study", gpu="NVIDIA A40")
                                    for s in (10, 50, 100) for e in (-1.0, 1.0)])], ignore_index=True)
    ceilings = pd.DataFrame({"gpu_name": ["NVIDIA H200"], "ceiling_tflop_per_J": [0.96], "ceiling_n": [2]})
    table = efficiency.efficiency_table(runs, ceilings)
    batch = efficiency.batch_efficiency(_batch_runs(), ceilings)
    drawn = {}
    real = efficiency_plots.save_figure

    def spy(fig, *args, **kwargs):
        denoiser, _, batched = fig.axes
        drawn["colours"] = {matplotlib.colors.to_hex(line.get_color()) for line in denoiser.get_lines()}
        drawn["keys"] = [t.get_text() for t in batched.get_legend().get_texts()]
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(efficiency_plots, "save_figure", spy)
    assert plots.plot_flop_efficiency(table, batch, tmp_path) == "flop-per-joule"
    models = {matplotlib.colors.to_hex(plots.model_colour(m)) for m in catalogue.model_names()}
    assert drawn["colours"] and not drawn["colours"] & models
    assert drawn["keys"] == ["Tango", "distinct prompts in one call"]  # the model's line first
    caption = plots.read_manifest(tmp_path)["flop-per-joule"]["caption"]
    assert "No measured ceiling here for study A40, so none is drawn" in caption  # the H200 has one
    assert "tables/efficiency.csv" in caption and "tables/batch_efficiency.csv" in caption
