"""Figures, the caption manifest, power traces and index.md (tta_energy.analysis.plots / reproduce)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import load_paper_data, make_h200_runs, make_parameter_runs

from tta_energy import schema
from tta_energy.analysis import plots, reproduce, summaries


@pytest.fixture(scope="module")
def h200(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h200")
    path = make_h200_runs(folder, load_paper_data().runs["steps"])
    runs = schema.read_runs(path)
    runs["table_path"] = str(path)
    return summaries.usable_runs(runs)


def _is_pdf(path) -> bool:
    return path.read_bytes()[:5] == b"%PDF-"


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_steps_and_batch_figures_are_written_with_captions(tmp_path):
    runs = summaries.usable_runs(load_paper_data().all_runs())
    steps = summaries.steps_summary(runs)
    stems = [
        plots.plot_energy_vs_steps(steps, tmp_path, "study A40"),
        plots.plot_energy_vs_steps(steps, tmp_path, "study A40", log=True),
        plots.plot_batch_energy(summaries.batch_summary(runs), tmp_path, "study A40"),
    ]
    assert stems == [
        "steps-energy-linear-study-a40",
        "steps-energy-log-study-a40",
        "batch-energy-per-clip-study-a40",
    ]
    manifest = plots.read_manifest(tmp_path)
    for stem in stems:
        assert _is_pdf(tmp_path / f"{stem}.pdf") and _is_png(tmp_path / f"{stem}.png")
        assert manifest[stem]["status"] == "drawn" and "study A40" in manifest[stem]["caption"]
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary files left


def test_empty_inputs_are_recorded_as_skipped(tmp_path, capsys):
    assert plots.plot_energy_vs_steps(pd.DataFrame(), tmp_path, "x") is None
    assert (
        plots.plot_phases(summaries.usable_runs(load_paper_data().runs["steps"]), tmp_path, "study A40")
        is None
    )
    assert plots.plot_power_trace(None, tmp_path, "study A40", reason="study A40: no trace") is None
    manifest = plots.read_manifest(tmp_path)
    assert manifest["phase-energy-study-a40"]["status"] == "skipped"
    assert "whole generations only" in manifest["phase-energy-study-a40"]["caption"]
    assert manifest["power-trace-study-a40"]["caption"] == "study A40: no trace"
    assert "not drawn" in capsys.readouterr().out
    assert not list(tmp_path.glob("*.png"))


def test_parameter_sweeps_figure_drawn_partial_and_skipped(tmp_path, capsys):
    runs = summaries.usable_runs(make_parameter_runs())
    duration, guidance, precision = (
        summaries.parameter_summary(runs, e) for e in ("duration", "guidance", "precision")
    )
    stem = plots.plot_parameter_sweeps(duration, guidance, precision, tmp_path, "tta-energy H200")
    assert stem == "new-sweeps-tta-energy-h200"
    assert _is_pdf(tmp_path / f"{stem}.pdf") and _is_png(tmp_path / f"{stem}.png")
    entry = plots.read_manifest(tmp_path)[stem]
    assert entry["status"] == "drawn" and entry["group"] == "new"
    assert "Stable Audio Open computes 47.55 s of latents whatever duration is asked" in entry["caption"]
    # a sweep not measured leaves its panel saying so
    empty = pd.DataFrame()
    assert plots.plot_parameter_sweeps(empty, guidance, empty, tmp_path, "partial") == "new-sweeps-partial"
    assert _is_png(tmp_path / "new-sweeps-partial.png")
    assert plots.plot_parameter_sweeps(empty, empty, empty, tmp_path, "no data") is None
    skipped = plots.read_manifest(tmp_path)["new-sweeps-no-data"]
    assert skipped["status"] == "skipped" and skipped["group"] == "new"
    assert "not drawn" in capsys.readouterr().out
    assert not (tmp_path / "new-sweeps-no-data.png").exists()
    index = reproduce.write_index(tmp_path, inputs=["data"], notebooks=[], tables_dir=None).read_text()
    assert "## Beyond the study: duration, guidance, precision" in index
    assert "![new-sweeps-tta-energy-h200](new-sweeps-tta-energy-h200.png)" in index


def test_phase_bars_from_phase_columns(tmp_path, h200):
    means = plots.phase_means(h200[h200["experiment"] == "steps"])
    assert len(means) == 3 * 6
    total = means[[f"energy_{p}_J" for p in schema.PHASES]].sum(axis=1)
    steps = summaries.steps_summary(h200).set_index(["model", "steps"])["gpu_energy_J_mean"]
    np.testing.assert_allclose(
        total, steps.loc[list(zip(means["model"], means["steps"], strict=True))], rtol=1e-12
    )
    assert plots.plot_phases(h200, tmp_path, "tta-energy H200") == "phase-energy-tta-energy-h200"
    assert _is_png(tmp_path / "phase-energy-tta-energy-h200.png")


def test_power_trace_of_one_generation(tmp_path, h200):
    trace, window, title = plots.generation_trace(h200, None)
    assert trace is not None and window is not None
    assert "100 steps" in title
    inside = trace[(trace["t_abs"] > window[0] + 0.05) & (trace["t_abs"] < window[1] - 0.05)]
    assert (inside["power_W"] == 400.0).all() and len(inside) > 5
    assert plots.plot_power_trace(trace, tmp_path, "tta-energy H200", window=window, title=title)
    assert _is_pdf(tmp_path / "power-trace-tta-energy-h200.pdf")


def test_read_trace_formats(tmp_path):
    plain = tmp_path / "trace.csv"
    pd.DataFrame(
        {"timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.5Z"], "power_W": [100, 300]}
    ).to_csv(plain, index=False)
    trace = plots.read_trace(plain)
    assert trace["t_s"].tolist() == [0.0, 0.5] and trace["power_W"].tolist() == [100, 300]
    with gzip.open(tmp_path / "trace.csv.gz", "wt") as fh:
        fh.write("elapsed_s,gpu_power_W\n0.0,90\n0.1,95\n")
    assert plots.read_trace(tmp_path / "trace.csv.gz")["power_W"].tolist() == [90, 95]
    # the meter's own format: unix_time and a monotonic t; the absolute clock wins
    meter = tmp_path / "meter.csv.gz"
    with gzip.open(meter, "wt") as fh:
        fh.write(
            "unix_time,t,device,energy_J,power_W,power_instant_W,temperature_C,sm_clock_MHz\n"
            "1767225600.0000,12.000000,0,100.000,250.000,260.000,40.000,1980.000\n"
            "1767225600.1000,12.100000,0,125.000,251.000,,41.000,1980.000\n"
        )
    trace = plots.read_trace(meter)
    assert trace["t_abs"].tolist() == [1767225600.0, 1767225600.1] and trace["device"].tolist() == [0, 0]
    assert plots.plot_power_trace(trace, tmp_path, "meter", window=(1767225600.0, 1767225600.1))
    # two members (a resumed process appends one), the second cut mid-stream as by SIGKILL: the rows written
    # before the cut are read, the line cut short is not
    cut = tmp_path / "cut.csv.gz"
    first = gzip.compress(b"elapsed_s,gpu_power_W\n0.0,90\n0.1,95\n")
    second = gzip.compress(b"".join(f"{0.2 + k / 10:.1f},{100 + k}\n".encode() for k in range(400)))
    cut.write_bytes(first + second[: len(second) // 2])
    powers = plots.read_trace(cut)["power_W"].tolist()
    assert powers[:3] == [90, 95, 100] and 3 < len(powers) < 402 and powers == sorted(powers)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="needs a time column"):
        plots.read_trace(bad)
    assert plots.resolve_trace("traces/trace.csv.gz", tmp_path / "x") is None
    assert plots.resolve_trace("elsewhere/trace.csv.gz", tmp_path) == tmp_path / "trace.csv.gz"


def test_index_lists_drawn_and_skipped_figures(tmp_path):
    runs = summaries.usable_runs(load_paper_data().runs["steps"])
    plots.plot_energy_vs_steps(summaries.steps_summary(runs), tmp_path, "study A40")
    plots.skip_figure(tmp_path, "platform-comparison", "nothing to compare yet", "comparison")
    index = reproduce.write_index(tmp_path, inputs=["data"], notebooks=[], tables_dir=None).read_text()
    assert "![steps-energy-linear-study-a40](steps-energy-linear-study-a40.png)" in index
    assert "([PDF](steps-energy-linear-study-a40.pdf))" in index
    assert "*platform-comparison* not drawn: nothing to compare yet" in index
    # a new run removes what the previous one recorded
    reproduce.clear_previous(tmp_path)
    assert not (tmp_path / "steps-energy-linear-study-a40.png").exists()
    assert not (tmp_path / plots.MANIFEST).exists()


def test_manifest_is_valid_json_after_many_records(tmp_path):
    for i in range(5):
        plots.skip_figure(tmp_path, f"f{i}", "reason", "steps")
    assert sorted(json.loads((tmp_path / plots.MANIFEST).read_text())) == [f"f{i}" for i in range(5)]


def test_score_panels_name_the_studys_fad_fad_inf_and_the_projects_fad_plain():
    from tta_energy.analysis.plots.quality import _metric_names

    assert _metric_names("fad", study_fad=True) == ("FAD-inf (lower is better)", "FAD-inf")
    assert _metric_names("fad", study_fad=False) == ("FAD / the study's FAD-inf (lower is better)", "FAD")
    assert _metric_names("fad_inf", study_fad=False) == ("FAD-inf (lower is better)", "FAD-inf")
    assert _metric_names("clap", study_fad=True) == ("CLAP score (higher is better)", "CLAP")
