"""The host-diagnostics summary and figure on synthetic rows whose arithmetic is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tta_energy import schema
from tta_energy.analysis import compare, plots, reproduce, summaries
from tta_energy.analysis.summaries import AnalysisError


def _row(model: str, steps: int, energy: float, wall: float, busy: float | None, cpu: float | None,
         **extra) -> dict:
    return schema.empty_row() | {
        "source": "tta-energy", "gpu_name": "NVIDIA H200", "experiment": "steps", "model": model,
        "size": "full", "dtype": "float16", "steps": steps, "denoiser_calls": steps, "n_prompts": 1,
        "waveforms_per_prompt": 1, "n_clips": 1, "status": "ok", "gpu_energy_J": energy,
        "energy_denoising_J": 0.8 * energy, "wall_s": wall, "gpu_busy_fraction": busy, "cpu_time_s": cpu,
        "gpu_idle_power_W": 75.0, "host_cpu_model": "Test CPU", "host_cpu_count": 16,
        "timestamp": "2026-01-01T00:00:00+00:00",
    } | extra


def synthetic_runs() -> pd.DataFrame:
    """AudioLDM launch-bound (busy 0.1/0.2/0.3, 150 W), Tango 2 compute-bound (busy 0.8/0.9, 450 W); an older
    row without diagnostics and a warm-up row must stay out."""
    rows = [
        _row("audioldm", 10, 150.0, 1.0, 0.1, 1.0),
        _row("audioldm", 25, 375.0, 2.5, 0.2, 2.75),
        _row("audioldm", 50, 750.0, 5.0, 0.3, 5.0),
        _row("tango2", 10, 450.0, 1.0, 0.8, 1.0),
        _row("tango2", 50, 2250.0, 5.0, 0.9, 5.0),
        _row("tango2", 50, 9999.0, 5.0, None, None),  # measured before the diagnostics existed
        _row("tango2", 50, 9999.0, 5.0, 0.0, 50.0, is_warmup=True),
    ]
    return pd.DataFrame(rows)


def test_host_summary_per_model():
    summary = summaries.host_summary(summaries.usable_runs(synthetic_runs())).set_index("model")
    assert list(summary.index) == ["audioldm", "tango2"]
    a, t = summary.loc["audioldm"], summary.loc["tango2"]
    assert a["n_generations"] == 3 and t["n_generations"] == 2
    assert a["gpu_busy_fraction_mean"] == pytest.approx(0.2)
    assert t["gpu_busy_fraction_mean"] == pytest.approx(0.85)
    half = stats.t.ppf(0.975, 2) * np.std([0.1, 0.2, 0.3], ddof=1) / np.sqrt(3)
    assert a["gpu_busy_fraction_ci_low"] == pytest.approx(0.2 - half)
    assert a["gpu_busy_fraction_ci_high"] == pytest.approx(0.2 + half)
    assert a["power_W_mean"] == pytest.approx(150.0) and t["power_W_mean"] == pytest.approx(450.0)
    # denoising phase = 0.8 of the energy: AudioLDM 12 J per call at every step count, Tango 2 36 J
    assert a["denoising_J_per_call_mean"] == pytest.approx(12.0)
    assert t["denoising_J_per_call_mean"] == pytest.approx(36.0)
    assert a["cpu_time_per_wall_mean"] == pytest.approx((1 + 1.1 + 1) / 3)
    assert a["cpu_time_per_wall_max"] == pytest.approx(1.1)
    assert t["cpu_time_per_wall_mean"] == pytest.approx(1.0)
    assert a["idle_energy_share_mean"] == pytest.approx(0.5)
    assert t["idle_energy_share_mean"] == pytest.approx(75 / 450)
    assert a["host_cpu_model"] == "Test CPU" and a["host_cpu_count"] == 16


def test_rows_without_diagnostics_are_an_analysis_error():
    old = synthetic_runs().assign(gpu_busy_fraction=np.nan)
    with pytest.raises(AnalysisError, match="host diagnostics"):
        summaries.host_summary(summaries.usable_runs(old))


def test_host_figure_drawn_indexed_and_skipped(tmp_path, capsys):
    runs = summaries.usable_runs(synthetic_runs())
    rows, summary = summaries.host_rows(runs), summaries.host_summary(runs)
    assert len(rows) == 5 and rows["cpu_time_per_wall"].max() == pytest.approx(1.1)
    stem = plots.plot_host_diagnostics(rows, summary, tmp_path)
    assert stem == "host-busy-energy"
    assert (tmp_path / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / f"{stem}.pdf").read_bytes()[:5] == b"%PDF-"
    entry = plots.read_manifest(tmp_path)[stem]
    assert entry["status"] == "drawn" and entry["group"] == "host" and "spinning" in entry["caption"]
    index = reproduce.write_index(tmp_path, inputs=["data"], notebooks=[], tables_dir=None).read_text()
    assert "## How busy the GPU was, and the host" in index and f"![{stem}]({stem}.png)" in index
    assert plots.plot_host_diagnostics(rows.iloc[:0], summary.iloc[:0], tmp_path / "none") is None
    assert plots.read_manifest(tmp_path / "none")[stem]["status"] == "skipped"
    assert "not drawn" in capsys.readouterr().out


def test_ranking_beside_the_host_diagnostics():
    host = summaries.host_summary(summaries.usable_runs(synthetic_runs()))
    per_model = pd.DataFrame({
        "model": ["audioldm", "tango2"], "slope_J_per_step_reference": [4.0, 40.0],
        "slope_J_per_step_other": [6.0, 20.0], "slope_ratio_other_to_reference": [1.5, 0.5],
        "rank_reference": [1, 2], "rank_other": [1, 2], "reference": "study A40", "other": "tta-energy H200",
    })
    explained = compare.ranking_with_host(per_model, host, ("tta-energy", "NVIDIA H200"))
    assert list(explained["model"]) == ["audioldm", "tango2"] and (explained["rank_change"] == 0).all()
    assert explained["gpu_busy_fraction_mean"].tolist() == pytest.approx([0.2, 0.85])
    assert compare.ranking_with_host(per_model, host, ("study", "NVIDIA A40"))["power_W_mean"].isna().all()
    lines = compare.ranking_sentences(explained)
    assert lines[0].startswith("AudioLDM: busy 0.20 of the time at 150 W (idle power alone: 50%")
    assert "1.50x, more per step" in lines[0] and "0.50x, less per step" in lines[1]
    assert lines[-1].endswith("nan (n = 2 models on both platforms)")
    sentence = compare.host_sentence(host)
    assert "least busy AudioLDM (0.20, 150 W" in sentence and "most busy Tango 2 (0.85, 450 W" in sentence
    assert sentence.endswith("CPU time / wall time per model: 1.00-1.03.")
