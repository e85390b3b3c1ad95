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
from tta_energy.analysis.plots import host, power, sweeps


@pytest.fixture(scope="module")
def h200(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h200")
    path = make_h200_runs(folder, load_paper_data().runs["steps"])
    runs = schema.read_runs(path)
    runs["table_path"] = str(path)
    return summaries.usable_runs(runs)


@pytest.fixture
def drawn(monkeypatch):
    """The figures that the sweeps, host and power plots save, by stem (each still saved as usual)."""
    figures = {}
    for module in (sweeps, host, power):
        def save(fig, folder, stem, caption, group="", real=module.save_figure):
            figures[stem] = fig
            return real(fig, folder, stem, caption, group)

        monkeypatch.setattr(module, "save_figure", save)
    return figures


def _errorbar_lengths(ax) -> list[float]:
    """The length of each bar's error bar in ``ax`` (0 where the bar has none)."""
    lengths = []
    for bars in ax.containers:
        if getattr(bars, "errorbar", None) is None:
            continue
        for segment in bars.errorbar.lines[2][0].get_segments():
            lengths.append(float(np.ptp(segment[:, 1])))
    return lengths


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


def test_parameter_sweeps_show_every_interval_model_and_note(tmp_path, drawn):
    runs = summaries.usable_runs(make_parameter_runs())
    # a second run per precision (so each has an interval) and a Tango 2 that lands on Tango's point
    again = runs[runs["experiment"] == "precision"].assign(gpu_energy_J=lambda r: r["gpu_energy_J"] * 1.1)
    tango2 = runs[(runs["experiment"] == "duration") & (runs["model"] == "tango")].assign(
        model="tango2", gpu_energy_J=212.0
    )
    runs = pd.concat([runs, again, tango2], ignore_index=True)
    duration, guidance, precision = (
        summaries.parameter_summary(runs, e) for e in ("duration", "guidance", "precision")
    )
    stem = plots.plot_parameter_sweeps(duration, guidance, precision, tmp_path, "tta-energy H200")
    top, bottom = drawn[stem].subfigs
    ax_dur = top.axes[0]
    ax_cfg, ax_dtype = bottom.axes
    # error bars on every precision bar (n = 2), as on the guidance bars with n > 1
    assert len(_errorbar_lengths(ax_dtype)) == 3 and min(_errorbar_lengths(ax_dtype)) > 0
    assert sum(length > 0 for length in _errorbar_lengths(ax_cfg)) == 2
    # the models' legend sits above the top panels, not on the duration lines
    assert ax_dur.get_legend() is None and len(top.legends) == 1
    # Tango and Tango 2 drawn side by side, their latent length noted once
    tango_x = [c.lines[0].get_xdata()[0] for c in ax_dur.containers if "Tango" in c.get_label()]
    assert len(tango_x) == 2 and tango_x[0] < 10.0 < tango_x[1]
    notes = [t.get_text() for t in ax_dur.texts if "10.24 s of latents" in t.get_text()]
    assert notes == ["Tango and Tango 2:\n10.24 s of latents\nwhen 10 s is asked"]
    caption = plots.read_manifest(tmp_path)[stem]["caption"]
    assert "Tango and Tango 2 compute 10.24 s of latents (one duration measured)" in caption
    assert "`gpu_energy_J`" in caption
    # upright ratio labels and slanted model names
    assert {t.get_rotation() for t in ax_dtype.texts} == {90.0}
    assert all(t.get_rotation() == 25.0 for t in ax_dtype.get_xticklabels())


def test_host_figure_names_its_platform_and_table(tmp_path, h200, drawn):
    rows = h200[h200["experiment"] == "steps"].assign(gpu_busy_fraction=0.5, cpu_time_s=h200["wall_s"])
    stem = plots.plot_host_diagnostics(summaries.host_rows(rows), summaries.host_summary(rows), tmp_path)
    assert stem == "host-busy-energy"
    caption = plots.read_manifest(tmp_path)["host-busy-energy"]["caption"]
    assert caption.startswith("tta-energy H200: ") and "figures/tables/host_summary.csv" in caption
    assert "tta-energy H200" in drawn["host-busy-energy"].get_suptitle()


def test_phase_panels_sit_in_rows_of_four(tmp_path, h200, drawn):
    from tta_energy.models import catalogue

    steps = h200[h200["experiment"] == "steps"]
    first = steps[steps["model"] == steps["model"].iloc[0]]
    seven = pd.concat([first.assign(model=m) for m in catalogue.model_names()[:7]], ignore_index=True)
    stem = plots.plot_phases(seven, tmp_path, "tta-energy H200")
    grid = drawn[stem].axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (2, 4)
    assert sum(ax.get_visible() for ax in drawn[stem].axes) == 7
    assert "`energy_denoising_J`" in plots.read_manifest(tmp_path)[stem]["caption"]


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
    # the caption says what is drawn: the trace has no instantaneous power, the generation is shaded
    caption = plots.read_manifest(tmp_path)["power-trace-tta-energy-h200"]["caption"]
    assert "'power' (solid)" in caption and "instantaneous" not in caption
    assert "Shaded: the generation" in caption and "`trace_path`" in caption


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
    assert "'instantaneous power' (dashed)" in plots.read_manifest(tmp_path)["power-trace-meter"]["caption"]
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


def _label_boxes(fig, ax):
    """The window boxes of the front labels in ``ax`` (the text only, not its leader line)."""
    from matplotlib.text import Text

    from tta_energy.analysis.plots.common import FRONT_LABEL

    renderer = fig.canvas.get_renderer()
    return [Text.get_window_extent(t, renderer) for t in ax.texts if t.get_gid() == FRONT_LABEL]


def test_crowded_front_labels_overlap_no_label_no_marker_and_stay_in_their_panel():
    import matplotlib.pyplot as plt
    from matplotlib.transforms import Bbox

    from tta_energy.analysis.plots.common import label_front, place_front_labels

    # eight points close together along a rising front: the old above/below alternation piled them up
    x = np.geomspace(100, 400, 8)
    y = np.linspace(0.340, 0.356, 8)
    names = [f"Stable Audio Open {steps}" for steps in (10, 25, 50, 75, 100, 125, 150, 200)]
    points = list(zip(names, x, y, strict=True))

    def draw():
        fig, ax = plt.subplots(figsize=(6.5, 4.8), layout="constrained")
        ax.scatter(x, y, s=70, zorder=3)
        ax.plot(x, y, ls="--")
        ax.set_xscale("log")
        label_front(ax, points, dx=6)
        place_front_labels(fig)
        return fig, ax

    fig, ax = draw()
    boxes = _label_boxes(fig, ax)
    assert len(boxes) == len(points)
    panel = ax.get_window_extent(fig.canvas.get_renderer())
    for i, box in enumerate(boxes):
        assert panel.contains(box.x0, box.y0) and panel.contains(box.x1, box.y1)
        assert not any(Bbox.intersection(box, other) for other in boxes[i + 1:])
        centres = ax.transData.transform(np.column_stack([x, y]))
        half = np.sqrt(70) / 2 * fig.dpi / 72
        markers = [Bbox.from_extents(cx - half, cy - half, cx + half, cy + half) for cx, cy in centres]
        assert not any(Bbox.intersection(box, marker) for marker in markers)
    offsets = [t.xyann for t in ax.texts]
    plt.close(fig)
    again, ax_again = draw()  # deterministic: the same figure gets the same places
    assert [t.xyann for t in ax_again.texts] == offsets
    plt.close(again)


def test_lever_configurations_are_plain_text_in_figure_labels():
    from tta_energy.analysis.plots.quality import _configuration
    from tta_energy.levers.spec import DEFAULT_SPEC

    assert _configuration("max") == " (max)"
    assert _configuration(DEFAULT_SPEC) == ""


def test_sanity_figure_names_the_models_it_draws_and_its_table(tmp_path):
    rows = [
        {"source": "study", "model": model, "dataset": "audiocaps", "steps": steps, "metric": "clap",
         "value": 0.3 + steps / 1000, "scope": scope, "caption_id": ""}
        for model, scopes in (("audioldm2", ("subset", "full")), ("audioldm", ("subset",)))
        for scope in scopes
        for steps in (10, 25, 50)
    ]
    stem = plots.plot_sanity(pd.DataFrame(rows), tmp_path, "study A40")
    caption = plots.read_manifest(tmp_path)[stem]["caption"]
    assert "AudioLDM 2 (the only model with full-set scores)" in caption
    assert "AudioLDM: subset scores only" in caption
    assert "sanity.csv" in caption


def test_pareto_figure_names_its_table_and_draws_a_single_model(tmp_path):
    table = pd.DataFrame(
        {"dataset": "audiocaps", "metric": "clap", "model": "audioldm", "steps": [10, 25, 50],
         "gpu_energy_J_mean": [60.0, 110.0, 200.0], "score": [0.33, 0.38, 0.37],
         "pareto_optimal": [True, True, False], "front_frequency": [1.0, 0.8, 0.0], "source": "study"}
    )
    stem = plots.plot_pareto(table, tmp_path, "study A40")
    assert _is_png(tmp_path / f"{stem}.png")
    assert "pareto.csv" in plots.read_manifest(tmp_path)[stem]["caption"]


def _spy_on_saving(monkeypatch, module, drawn: dict, look) -> None:
    """Replace ``module``'s ``save_figure`` by one that first records ``look(fig)`` into ``drawn``."""
    real = module.save_figure

    def spy(fig, *args, **kwargs):
        fig.canvas.draw()  # text extents and tick labels as they are saved
        drawn.update(look(fig))
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(module, "save_figure", spy)


def _batch_rows() -> pd.DataFrame:
    """Tango and AudioLDM (in that order, the catalogue's reversed) at 1 and 10 clips per call; AudioLDM's
    batch-1 interval (two runs) reaches below zero."""
    rows = []
    for model, energy, low in (("tango", 2000.0, 1900.0), ("audioldm", 600.0, -300.0)):
        for clips, scale in ((1, 1.0), (10, 0.3)):
            mean = energy * scale
            rows.append({"model": model, "n_clips": clips, "n_prompts": 1, "n_runs": 2,
                         "gpu_energy_J_per_clip_mean": mean, "ratio_to_batch1": scale,
                         "gpu_energy_J_per_10_clips_ci_low": (low if clips == 1 else 0.9 * mean) * 10,
                         "gpu_energy_J_per_10_clips_ci_high": 1.1 * mean * 10})
    return pd.DataFrame(rows)


def test_a_log_axis_clips_an_interval_below_zero_marks_it_and_lists_models_in_catalogue_order(
        tmp_path, monkeypatch):
    from matplotlib.collections import LineCollection

    from tta_energy.analysis.plots import common as common_plots
    from tta_energy.analysis.plots import steps as steps_plots

    def look(fig):
        ax = fig.axes[0]
        bars = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
        return {"legend": [t.get_text() for t in fig.legends[0].get_texts()], "bottom": ax.get_ylim()[0],
                "lowest_bar": min(seg[:, 1].min() for seg in bars)}

    drawn: dict = {}
    _spy_on_saving(monkeypatch, steps_plots, drawn, look)
    assert plots.plot_batch_energy(_batch_rows(), tmp_path, "x") == "batch-energy-per-clip-x"
    assert drawn["legend"] == ["AudioLDM (n = 2)", "Tango (n = 2)", common_plots.CLIPPED_LABEL]
    assert drawn["bottom"] > 0 and drawn["lowest_bar"] == pytest.approx(drawn["bottom"])  # ends on the axis
    caption = plots.read_manifest(tmp_path)["batch-energy-per-clip-x"]["caption"]
    assert common_plots.CLIPPED_CAPTION in caption and "tables/batch_summary.csv" in caption
    # every interval above zero: nothing clipped, nothing said
    above = _batch_rows()
    above["gpu_energy_J_per_10_clips_ci_low"] = above["gpu_energy_J_per_clip_mean"] * 9
    plots.plot_batch_energy(above, tmp_path, "x")
    assert drawn["legend"] == ["AudioLDM (n = 2)", "Tango (n = 2)"]
    caption = plots.read_manifest(tmp_path)["batch-energy-per-clip-x"]["caption"]
    assert common_plots.CLIPPED_CAPTION not in caption


def test_the_log_steps_figure_labels_its_y_axis_and_keeps_the_calls_note_inside(tmp_path, monkeypatch):
    """Make-An-Audio 2 before AudioLDM in the rows: the legend follows the catalogue; the log y axis names its
    2s and 5s; the 167-call note is dark and inside the axes."""
    from tta_energy.analysis.plots import steps as steps_plots

    rows = [{"model": model, "steps": steps, "n_runs": 3, "gpu_energy_J_mean": per_step * steps,
             "denoiser_calls": 167 if (model, steps) == ("make-an-audio-2", 150) else steps,
             "gpu_energy_J_ci_low": 0.9 * per_step * steps, "gpu_energy_J_ci_high": 1.1 * per_step * steps}
            for model, per_step in (("make-an-audio-2", 2.5), ("audioldm", 5.0))
            for steps in (10, 50, 150, 200)]

    def look(fig):
        ax = fig.axes[0]
        inside = ax.get_window_extent()
        notes = [t for t in ax.texts if "167 calls" in t.get_text()]
        return {"legend": [t.get_text() for t in ax.get_legend().get_texts()],
                "y_labels": {t.get_text() for t in ax.get_yticklabels(minor=True) + ax.get_yticklabels()},
                "notes_inside": [inside.contains(*e.p0) and inside.contains(*e.p1)
                                 for e in (t.get_window_extent() for t in notes)],
                "note_colours": [t.get_color() for t in notes]}

    drawn: dict = {}
    _spy_on_saving(monkeypatch, steps_plots, drawn, look)
    plots.plot_energy_vs_steps(pd.DataFrame(rows), tmp_path, "x", log=True)
    assert drawn["legend"] == ["AudioLDM (n = 3)", "Make-An-Audio 2 (n = 3)"]
    assert {"50", "100", "200", "500"} <= drawn["y_labels"]
    assert drawn["notes_inside"] == [True] and drawn["note_colours"] == ["0.15"]
    assert "tables/steps_summary.csv" in plots.read_manifest(tmp_path)["steps-energy-log-x"]["caption"]


def _comparison(with_errors: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    per_model = pd.DataFrame({"model": ["tango", "audioldm"], "slope_J_per_step_reference": [20.0, 3.0],
                              "slope_J_per_step_other": [10.0, 5.0], "reference": "study A40",
                              "other": "tta-energy H200"})
    if with_errors:
        per_model = per_model.assign(slope_J_per_step_ci_low_reference=[19.0, 2.5],
                                     slope_J_per_step_ci_high_reference=[21.0, 3.5],
                                     slope_J_per_step_ci_low_other=[9.0, 4.0],
                                     slope_J_per_step_ci_high_other=[11.0, 6.0])
    per_steps = pd.DataFrame({"model": ["tango", "audioldm"], "steps": [10, 10],
                              "ratio_other_to_reference": [0.5, 1.6]})
    return per_steps, per_model


def test_the_platform_comparison_keys_its_bars_in_grey_and_draws_the_slopes_intervals_when_given(
        tmp_path, monkeypatch):
    from tta_energy.analysis.plots import comparison

    def look(fig):
        ax = fig.axes[0]
        return {"legend": [t.get_text() for t in ax.get_legend().get_texts()],
                "key_colours": {tuple(h.get_facecolor()[:3]) for h in ax.get_legend().legend_handles},
                "ticks": [t.get_text() for t in ax.get_xticklabels()], "bars": len(ax.containers),
                "error_bars": sum(len(c.get_segments()) for c in ax.collections)}

    drawn: dict = {}
    _spy_on_saving(monkeypatch, comparison, drawn, look)
    plots.plot_platform_comparison(*_comparison(with_errors=True), tmp_path)
    assert drawn["ticks"] == ["AudioLDM", "Tango"]  # the catalogue's order
    assert drawn["legend"][0].startswith("study A40") and drawn["legend"][1].startswith("tta-energy H200")
    assert all(r == g == b for r, g, b in drawn["key_colours"])  # grey keys: no model's colour
    assert drawn["error_bars"] == 4
    bars = comparison.slope_errors(_comparison(with_errors=True)[1], "other")
    np.testing.assert_allclose(bars, [[1.0, 1.0], [1.0, 1.0]])  # from steps_fit's interval columns
    caption = plots.read_manifest(tmp_path)["platform-comparison"]["caption"]
    assert "Error bars: the slope's 95 % interval" in caption and "tables/steps_fit.csv" in caption
    plots.plot_platform_comparison(*_comparison(with_errors=False), tmp_path)
    assert drawn["error_bars"] == 0
    assert "no error bars" in plots.read_manifest(tmp_path)["platform-comparison"]["caption"]


def test_the_levers_figure_names_its_gpu_and_its_models_and_colours_ceiling_bars_by_model(
        tmp_path, monkeypatch):
    import matplotlib.figure

    from tta_energy.levers.plot import BEST_LOSSLESS_BAR, STUDY_DEFAULT_BAR, plot_levers

    cell = pd.DataFrame({"model": ["make-an-audio-2", "make-an-audio-2", "audioldm", "audioldm"],
                         "optimize": ["none", "max"] * 2, "reduction_vs_none": [1.0, 2.0, 1.0, 4.0],
                         "n_runs": 3, "gpu_name": "NVIDIA H100 80GB HBM3"})
    ceiling = pd.DataFrame({"model": ["make-an-audio-2", "audioldm"] * 2,
                            "role": [STUDY_DEFAULT_BAR] * 2 + [BEST_LOSSLESS_BAR] * 2,
                            "fraction_of_ceiling": [0.1, 0.05, 0.3, 0.35], "label": "x", "target": 0.4})
    drawn: dict = {}
    real = matplotlib.figure.Figure.savefig

    def spy(fig, *args, **kwargs):
        reduction, fraction = fig.axes[:2]
        drawn.update(title=fig.get_suptitle(), ticks=[t.get_text() for t in reduction.get_xticklabels()],
                     colours=[tuple(b.get_facecolor()[:3]) for c in fraction.containers for b in c])
        return real(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    plot_levers(cell, tmp_path / "levers.png", 100, 1, ceiling)
    assert "NVIDIA H100 80GB HBM3" in drawn["title"]
    assert drawn["ticks"] == ["AudioLDM", "Make-An-Audio 2"]
    audioldm, make_an_audio_2 = (tuple(plots.model_colour(m)) for m in ("audioldm", "make-an-audio-2"))
    assert drawn["colours"] == [make_an_audio_2, audioldm] * 2  # the rows' order, in each model's colour
