"""The levers harness on a CPU: stored fp32 references, the priced dry run and plan files, the lossless rule
against the study's default, the report's two best-configuration tables, the attention backend timed in
its execution mode, and the fp8 lever's parsing, targets and errors (its GPU part is skipped off a GPU)."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_levers_options

from tta_energy import schema
from tta_energy.intervals import ratio_interval
from tta_energy.levers import apply, ceiling, experiment, plan, plot, references, report, summary, tables
from tta_energy.levers.equivalence import (
    ERROR_FLOOR,
    UNINFORMATIVE_ERROR,
    YARDSTICK_FACTOR,
    error_tolerance,
    is_lossless,
    judge_lossless,
    relative_error,
)
from tta_energy.levers.spec import (
    DEFAULT_REPEATS,
    PLAN_DEFAULT_BATCHES,
    PLAN_DEFAULT_STEPS,
    REFERENCE_SPEC,
    LeverError,
    LeversError,
    parse_levers,
)
from tta_energy.models import catalogue
from tta_energy.models.base import GenerationRequest
from tta_energy.models.registry import build_model

PROMPT = "Water running out of a faucet, some hitting a sink bottom, and some water filling a cup"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- the time budget inside a call ------------------------------------------------------------------------
def _measured(run: experiment.ModelRun, spec: str, steps: int, batch: int, wall: float) -> None:
    """What ``ModelRun.measure`` keeps of a measured generation (one call, no phase times)."""
    run.walls[(spec, steps, batch)] = wall
    run.steady[(spec, steps, batch)] = (wall, wall)


def test_a_compiled_cell_is_not_predicted_from_its_compilation(tmp_path):
    """The first warm-up of `compile` holds the compilation (30 s at 10 steps on the H200 for AudioLDM):
    scaled to 100 steps it predicted 5 minutes for a generation of about a second, and the model's rounds
    stopped after one with most of the call's time left."""
    run = experiment.ModelRun("audioldm", tiny_levers_options(tmp_path, "a"), "r", None, {}, "")
    run.warmup_walls[("compile", 10, 1)] = 31.7
    assert run.predicted_s("compile", 100, 1) == pytest.approx(317.0)  # nothing else known: an upper bound
    run.walls[("fp32", 100, 1)] = 2.9
    assert run.predicted_s("compile", 100, 1) == pytest.approx(2.9)  # the reference: slower than any lever
    _measured(run, "none", 10, 1, 0.3)
    assert run.predicted_s("compile", 100, 1) == pytest.approx(3.0)  # the study default, scaled by steps
    assert run.predicted_s("compile", 100, 10) == 0.0  # nothing at this batch size
    _measured(run, "compile", 10, 1, 0.12)
    assert run.predicted_s("compile", 100, 1) == pytest.approx(1.2)  # its own generations, scaled
    run.walls[("compile", 100, 1)] = 1.05
    assert run.predicted_s("compile", 100, 1) == pytest.approx(1.05)  # the cell itself


# --- stored references -------------------------------------------------------------------------------------
def test_reference_is_stored_reused_and_recomputed_when_its_key_changes(tmp_path, monkeypatch):
    # FLOP counting (describe on a meta copy) is not what this test is about: left out to keep it fast
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})
    first = experiment.run_levers(tiny_levers_options(tmp_path, "a")).folder
    runs = schema.read_runs(first / tables.RUNS_FILE)
    assert "fp32" in set(runs["optimize"])
    stored = sorted((tmp_path / "refs").glob("*.npz"))
    assert len(stored) == 1 and stored[0].name.startswith("audioldm-tiny-2steps-b1-")

    said: list[str] = []  # the second run declares its cells as a plan file does
    second = experiment.run_levers(tiny_levers_options(
        tmp_path, "b", progress=said.append, full_specs=(),
        declared={"audioldm": (("none", ((2, 1),), 1),)})).folder
    runs = schema.read_runs(second / tables.RUNS_FILE)
    assert "fp32" not in set(runs["optimize"])  # no reference build, warm-up or generation
    assert any("references loaded" in s for s in said)
    eq = pd.read_csv(second / tables.EQUIVALENCE_FILE)
    first_eq = pd.read_csv(first / tables.EQUIVALENCE_FILE)
    none_error = first_eq[first_eq["optimize"] == "none"]["rel_error_latents"].iloc[0]
    assert eq[eq["optimize"] == "none"]["rel_error_latents"].iloc[0] == pytest.approx(none_error)

    # any change of the key (seed, code, steps...) finds nothing stored: the next run computes it anew
    run = experiment.ModelRun("audioldm", tiny_levers_options(tmp_path, "c"), "r", None, {}, "")
    key = experiment.reference_key(run, 2)
    assert references.load_reference(key, tmp_path / "refs") is not None
    for change in ({"seed": 1}, {"code": "0" * 16}, {"steps": 3}, {"duration_s": 2.0}):
        assert references.load_reference(dataclasses.replace(key, **change), tmp_path / "refs") is None
    seeded = experiment.ModelRun("audioldm", tiny_levers_options(tmp_path, "c", seed=1), "r", None, {}, "")
    plans = experiment.lever_plans("audioldm", seeded.opts)
    assert not experiment._load_references(seeded, plans) and not seeded.references


# --- the lossless rule -------------------------------------------------------------------------------------
def test_lossless_is_judged_against_the_study_default():
    e = 3e-3  # the study default's (fp16 `none`) error, above the fp16 floor
    assert is_lossless("max", "float16", 1.5 * e, e)
    assert not is_lossless("max", "float16", 3 * e, e)
    # an fp32-default model (Tango): its fp16 configuration is judged against the fp32 eager error
    fp32_none = 3.7e-4
    assert error_tolerance("float32", fp32_none) == pytest.approx(7.4e-4)
    assert not is_lossless("max", "float32", 2.4e-3, fp32_none)
    assert is_lossless("max", "float32", 6e-4, fp32_none)
    assert not is_lossless("fp8", "float16", 0.0, e)  # fp8 changes the computation by design
    # the floor is not a minimum over 2x a measured error; error_tolerance gives it where the yardstick is 0
    # or missing (judge_lossless refuses a missing latents yardstick before that)
    assert error_tolerance("float32", 1e-6) == pytest.approx(2e-6)
    assert not is_lossless("max", "float32", 5e-6, 1e-6)
    assert error_tolerance("float32", 0.0) == 1e-4 and error_tolerance("float16", None) == 2e-3
    assert error_tolerance("bfloat16", float("nan")) == 1.6e-2


NAN = float("nan")


@pytest.mark.parametrize(("spec", "errors", "lossless"), [
    # (latents error, latents yardstick, waveform error, waveform yardstick)
    ("max", (1e-3, 1e-3, 1e-3, 1e-3), True),
    ("max", (3e-3, 1e-3, 1e-3, 1e-3), False),  # latents beyond 2x the default's
    ("max", (1e-3, 1e-3, 3e-3, 1e-3), False),  # waveform beyond 2x the default's
    # the fp32 reference: lossless by definition, whatever is measured or missing
    (REFERENCE_SPEC, (NAN, NAN, NAN, NAN), True),
    # no latents yardstick (the default not measured at that step count): never lossless, no floor
    ("max", (0.0, NAN, 0.0, 1e-3), False),
    ("max", (0.0, None, 0.0, None), False),
    # a yardstick of 0: the floor of the study's precision (fp16: 2e-3)
    ("max", (1.9e-3, 0.0, 1.9e-3, 0.0), True),
    ("max", (2.1e-3, 0.0, 1.9e-3, 0.0), False),
    # the default's waveform uninformative: the waveform is not judged, the latents decide
    ("max", (1e-3, 1e-3, 0.9, UNINFORMATIVE_ERROR), True),
    ("max", (1e-3, 1e-3, NAN, 0.7), True),
    ("max", (3e-3, 1e-3, 0.0, 0.7), False),
    # no waveform yardstick: the waveform is held to the floor
    ("max", (1e-3, 1e-3, 1.9e-3, NAN), True),
    ("max", (1e-3, 1e-3, 2.1e-3, NAN), False),
    # a missing error of the configuration itself is never within a tolerance
    ("max", (NAN, 1e-3, 1e-3, 1e-3), False),
    ("max", (1e-3, 1e-3, NAN, 1e-3), False),
    # changes the computation by design: never lossless, even where it matches
    ("fp8", (0.0, 1e-3, 0.0, 1e-3), False),
    ("max,trim-latents", (0.0, 1e-3, 0.0, 0.7), False),
])
def test_the_lossless_rule(spec, errors, lossless):
    assert judge_lossless(spec, "float16", *errors) is lossless


def test_the_summary_states_the_rule_from_its_constants(monkeypatch):
    """The summary's sentence on the rule is built from the constants the rule uses."""
    table = pd.DataFrame([{"model": "audioldm", "optimize": "none", "dtype": "float16", "steps": 100,
                           "waveforms_per_prompt": 1, "duration_s": 10.0}]).reindex(
        columns=list(report.LEVERS_COLUMNS))
    text = summary.summary_markdown(table.assign(lossless=False), pd.DataFrame(), pd.DataFrame())
    assert (f"within {YARDSTICK_FACTOR:g} x the error of the study's default" in text
            and f"fp16 {ERROR_FLOOR['float16']:.1e}".replace("e-0", "e-") + ", " in text)
    assert "not judged lossless where the default's latents error was not measured" in text
    assert f">= {UNINFORMATIVE_ERROR} the waveform is not judged" in text
    monkeypatch.setattr(summary, "YARDSTICK_FACTOR", 3.0)
    monkeypatch.setattr(summary, "UNINFORMATIVE_ERROR", 0.25)
    text = summary.summary_markdown(table.assign(lossless=False), pd.DataFrame(), pd.DataFrame())
    assert "within 3 x the error" in text and ">= 0.25 the waveform" in text


def test_the_lossless_candidates_differ_only_where_asked():
    """Each best lossless configuration draws from one filter: the reduction table leaves out `none` and
    other precisions than the study's; the ceiling table keeps both; neither takes the fp32 reference."""
    rows = pd.DataFrame([
        {"model": "tango", "optimize": spec, "dtype": dtype, "lossless": ok}
        for spec, dtype, ok in (("none", "float32", True), ("fp32", "float32", True),
                                ("graphs", "float32", True), ("fp16", "float16", True),
                                ("max", "float16", False))])
    def picked(**kw: bool) -> list[str]:
        return list(report.lossless_candidates(rows, **kw)["optimize"])

    assert picked(with_default=False, study_precision_only=True) == ["graphs"]
    assert picked(with_default=True, study_precision_only=False) == ["none", "graphs", "fp16"]
    assert picked(with_default=False, study_precision_only=False) == ["graphs", "fp16"]
    assert picked(with_default=True, study_precision_only=True) == ["none", "graphs"]


def test_the_table_counts_only_measured_energies(tmp_path):
    """``n_runs`` is the number of finite energies the mean and spread are taken over, and so the n of the
    reduction's interval: a generation without an energy reading does not count."""
    raw = tmp_path / "raw"
    for spec, energies in {"none": [700.0, 680.0, float("nan")], "max": [150.0, 158.0, 154.0]}.items():
        for repeat, energy in enumerate(energies):
            schema.append_row(raw / tables.RUNS_FILE, _row(run_id="20261129T000000Z-a", optimize=spec,
                                                           repeat=repeat, gpu_energy_J=energy,
                                                           energy_denoising_J=0.95 * energy))
    table = report.levers_table([raw]).set_index("optimize")
    assert table.loc["none", "n_runs"] == 2 and table.loc["max", "n_runs"] == 3
    assert table.loc["none", "gpu_energy_J"] == pytest.approx(690.0)


def _row(**values) -> dict[str, object]:
    """A levers run row (test_levers' helper) of a 100-step, batch-1 generation unless told otherwise."""
    from test_levers import _row as levers_row

    return levers_row(**{"steps": 100, "waveforms_per_prompt": 1, "repeat": 0, "wall_s": 2.0, **values})


def test_one_time_cost_counts_applying_and_is_unknown_where_candidates_compiled_unmetered(tmp_path):
    """`compile_s` = seconds of applying the configuration + the first generation's extra; a part whose
    configs table has no `setup_s` compiled sdpa-best's candidates unmetered: its cost is unknown, not 0."""
    specs = ("none", "compile-graphs", "max,compile-graphs")
    for part, setup in (("old", None), ("new", 30.0)):
        raw = tmp_path / part
        for spec in specs:
            for repeat, (warm, wall) in enumerate(((True, 12.0), (False, 2.0))):
                row = _row(run_id=part, optimize=spec, repeat=repeat, is_warmup=warm, wall_s=wall,
                           gpu_energy_J=300.0)
                schema.append_row(raw / tables.RUNS_FILE, row)
            row = {"run_id": part, "model": "audioldm", "optimize": spec, "steps": 100,
                   "waveforms_per_prompt": 1, "status": "ok", "applied": "", "skipped": "{}",
                   "changes_behaviour": False, "gflop": 1000.0}
            if setup is not None:
                row.update(setup_s=setup if spec != "none" else 0.1, setup_J=100.0 * setup)
            tables.append_csv(raw / tables.CONFIGS_FILE, row)
    table = report.levers_table([tmp_path / "old", tmp_path / "new"]).set_index(["run_id", "optimize"])
    assert table.loc[("new", "max,compile-graphs"), "compile_s"] == pytest.approx(40.0)
    assert table.loc[("new", "compile-graphs"), "compile_J"] == pytest.approx(3000.0)
    assert table.loc[("old", "compile-graphs"), "compile_s"] == pytest.approx(10.0)  # warm-up extra only
    assert math.isnan(table.loc[("old", "max,compile-graphs"), "compile_s"])
    assert apply.compilations("max,compile-graphs") == 2 and apply.compilations("max") == 0


def test_report_has_best_at_study_precision_and_best_at_any_precision(tmp_path):
    """Tango (fp32 default): `max` (fp16) is cheapest but beyond 2x the fp32 default's error; the best
    lossless
    configuration at the study's precision is `graphs`, and the any-precision table shows `max` with its
    error."""
    raw = tmp_path / "raw"
    cells = {"none": ("float32", 2200.0, 3.7e-4), "graphs": ("float32", 2080.0, 3.7e-4),
             "max": ("float16", 520.0, 2.4e-3)}
    for spec, (dtype, energy, error) in cells.items():
        schema.append_row(raw / tables.RUNS_FILE, _row(model="tango", optimize=spec, dtype=dtype,
                                                       gpu_energy_J=energy, energy_denoising_J=0.95 * energy))
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "tango", "optimize": spec, "dtype": dtype, "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": error, "rel_error_audio": error})
    for repeat, (wall, energy) in enumerate(((9.0, 900.0), (1.0, 200.0))):  # two 10-step warm-ups
        schema.append_row(raw / tables.RUNS_FILE, _row(model="tango", optimize="graphs", dtype="float32",
                                                       steps=10, repeat=repeat, is_warmup=True, wall_s=wall,
                                                       gpu_energy_J=energy, energy_denoising_J=0.9 * energy))
    table = report.levers_table([raw])
    by = table.set_index("optimize")
    assert by.loc["graphs", "compile_s"] == 8.0 and by.loc["graphs", "compile_J"] == 700.0
    assert by.loc["graphs", "lossless"] and not by.loc["max", "lossless"]
    assert by.loc["max", "yardstick_latents"] == pytest.approx(3.7e-4)  # the fp32 default's error
    text = summary.summary_markdown(table, pd.DataFrame(), pd.DataFrame())
    assert "| tango | 2200.0 | `graphs` | 2080.0 | 1.06x | 1.3x | no |" in text
    assert "best at any precision, with its error" in text
    # Tango's any-precision target (4.5x) is missed by `max`'s 4.23x, and said so with the others missed
    assert "| tango | `max` | float16 | 520.0 | 4.23x | 2.40e-03 | 3.70e-04 | no | 4.5x | no |" in text
    missed = next(line for line in text.splitlines() if line.startswith("- **tango** (any precision)"))
    # what limits it, as for a lossless target: 5% of `max`'s energy is outside the denoising loop
    assert missed.startswith(
        "- **tango** (any precision): 4.23x with `max` (float16), short of 4.5x by a factor 1.06. With the "
        "rest of the generation as measured, even a free denoising loop would give at most 84.62x.")
    assert "outside the denoising loop (text encoding, decoding, vocoder; eager) 5% of `max`'s" in missed
    assert "Float8" not in text  # Tango has no fp8 target
    # the same verdicts as a table (levers_targets.csv): one row per target of the model, one rule deciding
    _, targets = summary.levers_summary(table, pd.DataFrame(), pd.DataFrame())
    assert list(targets.columns) == summary.TARGET_COLUMNS
    by_target = targets.set_index("target")
    assert list(by_target.index) == [summary.LOSSLESS_TARGET, summary.ANY_PRECISION_TARGET,
                                     summary.CEILING_TARGET, summary.CEILING_ANY_PRECISION_TARGET]
    lossless = by_target.loc[summary.LOSSLESS_TARGET]
    any_precision = by_target.loc[summary.ANY_PRECISION_TARGET]
    assert (lossless["optimize"], lossless["dtype"], lossless["steps"],
            lossless["waveforms_per_prompt"]) == ("graphs", "float32", 100, 1)
    assert lossless["value"] == pytest.approx(2200.0 / 2080.0) and lossless["wanted"] == 1.3
    assert pd.notna(lossless["met"]) and not lossless["met"]
    assert (any_precision["optimize"], any_precision["wanted"]) == ("max", 4.5)
    assert pd.notna(any_precision["met"]) and not any_precision["met"]
    assert any_precision["value"] == pytest.approx(2200.0 / 520.0)
    # no ceiling in these rows, so no fraction of it: the ceiling target is not measured (met empty)
    for ceiling_target in (summary.CEILING_TARGET, summary.CEILING_ANY_PRECISION_TARGET):
        assert pd.isna(by_target.loc[ceiling_target, "met"])
    assert pd.isna(by_target.loc[summary.CEILING_TARGET, "optimize"])


def test_a_target_reached_is_met_in_the_targets_table_and_the_report_writes_it(tmp_path):
    raw = tmp_path / "raw"
    for spec, energy in (("none", 700.0), ("graphs", 140.0)):
        schema.append_row(raw / tables.RUNS_FILE, _row(optimize=spec, gpu_energy_J=energy,
                                                       energy_denoising_J=0.95 * energy))
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "audioldm", "optimize": spec, "dtype": "float16", "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": 2.6e-3, "rel_error_audio": 2.6e-3})
    paths = report.build_report([raw], tmp_path / "out")
    assert paths[3] == tmp_path / "out" / tables.TARGETS_FILE
    targets = pd.read_csv(paths[3]).set_index("target")
    lossless = targets.loc[summary.LOSSLESS_TARGET]
    assert (lossless["model"], lossless["optimize"], lossless["value"], lossless["wanted"]) == (
        "audioldm", "graphs", 5.0, 4.5)
    assert bool(lossless["met"]) is True
    assert "| audioldm | 700.0 | `graphs` | 140.0 | 5.00x | 4.5x | yes |" in paths[1].read_text()
    assert summary.meets(5.0, 4.5) is True and summary.meets(4.4, 4.5) is False
    assert summary.meets(float("nan"), 4.5) is None


def test_a_model_outside_the_catalogue_has_only_the_default_ceiling_targets(tmp_path):
    raw = tmp_path / "raw"
    for spec, energy in (("none", 700.0), ("graphs", 140.0)):
        schema.append_row(raw / tables.RUNS_FILE, _row(model="my-model", optimize=spec, gpu_energy_J=energy,
                                                       energy_denoising_J=0.95 * energy))
        tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
            "run_id": "r1", "model": "my-model", "optimize": spec, "dtype": "float16", "steps": 100,
            "waveforms_per_prompt": 1, "repeat": 0, "rel_error_latents": 2.6e-3, "rel_error_audio": 2.6e-3})
    _, targets = summary.levers_summary(report.levers_table([raw]), pd.DataFrame(), pd.DataFrame())
    assert targets[["target", "model", "wanted"]].to_dict("records") == [
        {"target": summary.CEILING_TARGET, "model": "my-model", "wanted": 0.4},
        {"target": summary.CEILING_ANY_PRECISION_TARGET, "model": "my-model", "wanted": 0.4}]


def test_reductions_come_from_the_run_with_the_most_repeats_of_the_default(tmp_path):
    """AudioLDM's eager default moved from 689 J in one device call to 391 J in another: the run reported is
    chosen by its repeats of `none` (then the latest), never by its result, and reductions stay within it."""
    raw = tmp_path / "raw"
    runs = {"20261129T000000Z-a": {"none": [700.0, 680.0], "max": [150.0, 158.0]},
            "20261205T000000Z-b": {"none": [390.0], "max": [142.0]}}
    for run_id, specs in runs.items():
        for spec, energies in specs.items():
            for repeat, energy in enumerate(energies):
                schema.append_row(raw / tables.RUNS_FILE, _row(run_id=run_id, optimize=spec, repeat=repeat,
                                                               gpu_energy_J=energy,
                                                               energy_denoising_J=0.95 * energy))
                tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
                    "run_id": run_id, "model": "audioldm", "optimize": spec, "dtype": "float16", "steps": 100,
                    "waveforms_per_prompt": 1, "repeat": repeat, "rel_error_latents": 2.6e-3,
                    "rel_error_audio": 2.6e-3})
    table = report.levers_table([raw])
    best = report.best_lossless(table, batch=1, steps=100)
    assert list(best["run_id"]) == ["20261129T000000Z-a"] and list(best["best"]) == ["max"]
    assert best["ratio"].iloc[0] == pytest.approx(690.0 / 154.0) and best["none_n_runs"].iloc[0] == 2
    text = summary.summary_markdown(table, pd.DataFrame(), pd.DataFrame())
    assert "| audioldm | 690.0 | `max` | 154.0 | 4.48x | 4.5x | no |" in text
    # the reduction's interval over the run's repeats, and `none` in both runs
    low, high = ratio_interval(690.0, float(np.std([700.0, 680.0], ddof=1)), 2,
                               154.0, float(np.std([150.0, 158.0], ddof=1)), 2)
    assert f"| 390-690 (2) | {low:.2f}-{high:.2f}x |" in text and low < 690.0 / 154.0 < high
    assert "| audioldm | `max` | float16 | 154.0 | 4.48x |" in text  # the any-precision table: the same run
    # equal repeats of `none`: the latest run
    one_each = table[~((table["run_id"] == "20261129T000000Z-a") & (table["optimize"] == "none"))].copy()
    one_each = pd.concat([one_each, table[(table["run_id"] == "20261129T000000Z-a")
                                          & (table["optimize"] == "none")].assign(n_runs=1)])
    assert list(report.best_lossless(one_each, batch=1, steps=100)["run_id"]) == ["20261205T000000Z-b"]


def test_each_configuration_is_reduced_within_its_own_run_and_the_largest_reduction_is_the_best(tmp_path):
    """Tango's `compile-graphs,tf32` was measured in a later call than `compile-graphs` and `max`: the latest
    run alone would hide them. Each configuration keeps its own run's reduction, and the best is the largest
    reduction, not the least energy across runs (the later run's `none` was 42% cheaper)."""
    raw = tmp_path / "raw"
    runs = {"20261205T000000Z-a": {"none": (690.0, 2.6e-3), "compile-graphs": (300.0, 2.6e-3),
                                   "max": (100.0, 5e-2)},
            "20261206T000000Z-b": {"none": (400.0, 2.6e-3), "graphs": (250.0, 2.6e-3)}}
    for run_id, specs in runs.items():
        for spec, (energy, error) in specs.items():
            for repeat in range(3):
                schema.append_row(raw / tables.RUNS_FILE, _row(run_id=run_id, optimize=spec, repeat=repeat,
                                                               gpu_energy_J=energy,
                                                               energy_denoising_J=0.95 * energy))
                tables.append_csv(raw / tables.EQUIVALENCE_FILE, {
                    "run_id": run_id, "model": "audioldm", "optimize": spec, "dtype": "float16", "steps": 100,
                    "waveforms_per_prompt": 1, "repeat": repeat, "rel_error_latents": error,
                    "rel_error_audio": error})
    table = report.levers_table([raw])
    best = report.best_lossless(table, batch=1, steps=100).iloc[0]
    assert (best["best"], best["run_id"]) == ("compile-graphs", "20261205T000000Z-a")
    assert best["ratio"] == pytest.approx(690.0 / 300.0) and best["none_J"] == pytest.approx(690.0)
    text = summary.summary_markdown(table, pd.DataFrame(), pd.DataFrame())
    assert "| audioldm | 690.0 | `compile-graphs` | 300.0 | 2.30x | 4.5x | no |" in text
    assert "| audioldm | `max` | float16 | 100.0 | 6.90x |" in text  # any precision: r a's max, not r b
    bars = report.reduction_bars(table, 100, 1)
    assert set(zip(bars["optimize"], bars["run_id"], strict=True)) == {
        ("none", "20261206T000000Z-b"), ("graphs", "20261206T000000Z-b"),
        ("compile-graphs", "20261205T000000Z-a"), ("max", "20261205T000000Z-a")}


def test_report_states_the_fp8_target(tmp_path):
    raw = tmp_path / "raw"
    for spec, dtype, energy in (("none", "float16", 1500.0), ("fp8", "float16", 1200.0)):
        schema.append_row(raw / tables.RUNS_FILE, _row(model="stable-audio-open", optimize=spec, dtype=dtype,
                                                       gpu_energy_J=energy, energy_denoising_J=0.95 * energy))
    text = summary.summary_markdown(report.levers_table([raw]), pd.DataFrame(), pd.DataFrame())
    # no ceiling and no FLOP count in these rows: no FLOP per joule, so the target is not measured
    assert "- stable-audio-open: no float8 configuration measured (target 0.8 TFLOP/J)" in text
    table = report.levers_table([raw])
    table.loc[table["optimize"] == "fp8", "tflop_per_J"] = 0.61
    text = summary.summary_markdown(table, pd.DataFrame(), pd.DataFrame())
    said = "- stable-audio-open `fp8`, 100 steps, batch 1: 0.610 TFLOP/J against a target of 0.8 (missed)"
    assert said in text
    assert "- **stable-audio-open** (fp8): stable-audio-open `fp8`" in text


def test_a_missed_fp8_target_says_what_limits_it(tmp_path):
    """Float8 runs the linear layers only: the matrix products' share of a 16-bit step and the fp8 ceiling
    over the bf16 one bound what it can give (60% of the kernel time at 2x: at most 1/(0.4 + 0.3) = 1.43x),
    said beside what the same configuration without float8 reaches."""
    raw = tmp_path / "raw"
    for spec, energy in (("none", 1500.0), ("compile-graphs", 900.0), ("compile-graphs,fp8", 750.0)):
        schema.append_row(raw / tables.RUNS_FILE, _row(model="stable-audio-open", optimize=spec,
                                                       dtype="float16", gpu_energy_J=energy,
                                                       energy_denoising_J=0.9 * energy))
    table = report.levers_table([raw])
    tflop = {"none": 0.30, "compile-graphs": 0.50, "compile-graphs,fp8": 0.60}
    table["tflop_per_J"] = table["optimize"].map(tflop)
    profile = pd.DataFrame([{"run_id": "r1", "model": "stable-audio-open", "optimize": spec,
                             "waveforms_per_prompt": 1, "eager_step_ms": 12.0, "graph_step_ms": np.nan,
                             "matmul_ms": 6.0, "conv_ms": 0.0, "attention_ms": 3.0, "other_ms": 1.0,
                             "kernel_ms": 10.0, "gflop_per_step": 100.0, "flop_bound_ms": 0.1}
                            for spec in ("none", "compile-graphs")])
    ceiling = pd.DataFrame([{"n": 8192, "tflop_per_J": tflop_J, "tflop_per_s": 600.0, "power_W": 700.0,
                             "precision": precision} for precision, tflop_J in (("bf16", 0.9), ("fp8", 1.8))])
    text = summary.summary_markdown(table, ceiling, profile)
    missed = next(line for line in text.splitlines() if line.startswith("- **stable-audio-open** (fp8)"))
    assert "0.600 TFLOP/J against a target of 0.8 (missed)" in missed and "by a factor 1.33" in missed
    assert "outside the denoising loop (eager) 10% of its energy" in missed
    assert "`compile-graphs` without float8 reaches 0.500 TFLOP/J at batch 1, so float8 gave 1.20x" in missed
    assert ("in the step profile of `compile-graphs` (batch 1) matrix products take 60% of the kernel time, "
            "attention 30% and the rest 10%; with the fp8 ceiling 2.00x the bf16 one, float8 matrix "
            "products at its rate would make that step at most 1.43x as efficient") in missed


# --- the dry run and plan files ----------------------------------------------------------------------------
def _history() -> pd.DataFrame:
    return pd.DataFrame([
        {"model": "tango", "optimize": "none", "steps": 100, "waveforms_per_prompt": 1, "wall_s": 4.0,
         "compile_s": 0.0},
        {"model": "tango", "optimize": "max", "steps": 100, "waveforms_per_prompt": 1, "wall_s": 1.0,
         "compile_s": 0.5},
        {"model": "tango", "optimize": "max", "steps": 100, "waveforms_per_prompt": 10, "wall_s": 6.0,
         "compile_s": 2.0},
        {"model": "tango", "optimize": "fp32", "steps": 100, "waveforms_per_prompt": 1, "wall_s": 5.0,
         "compile_s": float("nan")},
    ])


def test_dry_run_prices_cells_from_measured_rows_scaling_and_the_catalogue():
    h = _history()
    assert plan.generation_s(h, "tango", "max", 100, 10) == (6.0, "measured")
    assert plan.generation_s(h, "tango", "max", 10, 1) == (pytest.approx(0.1), "scaled from 100 steps")
    gen, how = plan.generation_s(h, "tango", "none", 100, 10)  # batch ratio measured on max: 6x
    assert gen == pytest.approx(24.0) and "6.0" in how
    assert plan.generation_s(h, "tango", "max,compile-graphs", 100, 1) == (1.0, "measured as max")
    # no configuration measured at batch 32: the largest measured batch, scaled by the batch size
    assert plan.generation_s(h, "tango", "max", 100, 32) == (pytest.approx(6.0 * 3.2), "batch 10 x 3.2")
    gen, how = plan.generation_s(h, "audioldm", "none", 100, 1)
    assert how == "catalogue cost" and gen == pytest.approx(plan.FALLBACK_S_PER_COST_STEP * 1.0 * 100)
    assert plan.compile_s(h, "tango", "max", 10) == 2.0
    one = plan.compile_s(h, "tango", "compile", 1)
    assert one == pytest.approx(plan.COMPILE_S_PER_COST * 1.9)
    assert plan.compile_s(h, "tango", "compile", 10) == pytest.approx(one * plan.COMPILE_BATCH_FACTOR)
    assert plan.compile_s(h, "tango", "max,compile-graphs", 1) == pytest.approx(2 * one)  # 2 sdpa candidates

    # once a compiled spec of the model is measured, its seconds per compilation price the others
    measured = pd.concat([h, pd.DataFrame([
        {"model": "tango", "optimize": "compile-graphs", "steps": 10, "waveforms_per_prompt": 1,
         "wall_s": 0.1, "compile_s": 50.0},
        {"model": "tango", "optimize": "max,compile-graphs", "steps": 10, "waveforms_per_prompt": 1,
         "wall_s": 0.1, "compile_s": 120.0}])], ignore_index=True)  # two candidates: 60 s each
    assert plan.compile_s(measured, "tango", "max,compile-graphs", 1) == 120.0
    assert plan.compile_s(measured, "tango", "compile", 1) == pytest.approx(55.0)
    assert plan.compile_s(measured, "tango", "compile", 10) == pytest.approx(55.0 * plan.COMPILE_BATCH_FACTOR)
    assert plan.compile_s(measured, "tango", "max,compile-graphs", 10) == pytest.approx(
        2 * 55.0 * plan.COMPILE_BATCH_FACTOR)
    assert plan.compile_s(measured, "tango", "max", 1) == 0.5 and apply.compilations("compile") == 1
    # compiled blocks: a share of a whole compilation each, until blocks are measured; then its own seconds
    # price it, and compilations of blocks price other blocks specs only, while whole ones are measured
    assert plan.compile_s(measured, "tango", "max,compile-blocks", 1) == pytest.approx(
        2 * 55.0 * plan.BLOCKS_COMPILE_SHARE)
    blocks = pd.concat([measured, pd.DataFrame([
        {"model": "tango", "optimize": "max,compile-blocks", "steps": 10, "waveforms_per_prompt": 1,
         "wall_s": 0.1, "compile_s": 24.0}])], ignore_index=True)
    assert plan.compile_s(blocks, "tango", "max,compile-blocks", 1) == 24.0
    assert plan.compile_s(blocks, "tango", "compile", 1) == pytest.approx(55.0)
    assert plan.compile_s(blocks, "tango", "max,fp8,compile-blocks", 1) == pytest.approx(24.0)
    only_blocks = blocks[~blocks["optimize"].isin(["compile-graphs", "max,compile-graphs"])]
    assert plan.compile_s(only_blocks, "tango", "compile", 1) == pytest.approx(
        24.0 / (2 * plan.BLOCKS_COMPILE_SHARE))  # no whole compilation measured: the blocks' share

    declared = {"tango": (("max", ((100, 1), (100, 10)), 3),)}
    est = plan.estimate_plan(declared, h, min_window_s=1.0)
    ref = est[est["optimize"] == "fp32 (reference)"].iloc[0]
    assert ref["generation_s"] == 5.0 and ref["total_s"] > 5.0
    cell = est[(est["optimize"] == "max") & (est["waveforms_per_prompt"] == 10)].iloc[0]
    # repeats + two warm-ups at 10 steps (the first's one-time cost over the second's) + one-time cost
    assert cell["total_s"] == pytest.approx(3 * 6.0 + 2 * 0.6 + 2.0)
    stored = plan.estimate_plan(declared, h, stored_references={("tango", 100)})
    assert stored[stored["optimize"] == "fp32 (reference)"]["total_s"].sum() == 0.0


def test_dry_run_table_lists_each_cell_and_the_totals():
    lines = plan.estimate_text(plan.estimate_plan({"tango": (("max", ((100, 1),), 3),)}, _history()))
    assert lines[0].split()[:3] == ["model", "configuration", "steps"]
    assert any(line.startswith("tango") and " max " in line for line in lines)
    assert lines[-2].startswith("per model: tango") and lines[-1].startswith("total: ")


def test_a_bare_plan_file_measures_the_default_at_the_target_cell(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text("[levers]\nmodels = ['tango']\n")
    p = plan.read_levers_plan(path)
    assert (PLAN_DEFAULT_STEPS, PLAN_DEFAULT_BATCHES) == ((100,), (1,))
    assert p.declared == {"tango": (("none", ((100, 1),), DEFAULT_REPEATS),)} and p.repeats == DEFAULT_REPEATS
    with pytest.raises(LeversError, match=r"unknown model 'nope' in .*plan.toml: \[levers\] models: choose "
                                          r"one of audioldm, "):
        path.write_text("[levers]\nmodels = ['tango', 'nope']\n")
        plan.read_levers_plan(path)


def test_campaign_plan_file_declares_the_levers_table():
    p = plan.read_levers_plan(plan.Path("campaigns/h200_levers.toml"))
    assert len(p.models) == 7 and p.repeats == 3
    declared = dict((s, c) for s, c, _ in p.declared["tango2"])
    assert set(declared) == {"none", "graphs", "compile", "compile-graphs", "max", "max,compile-blocks",
                             "graphs,tf32", "compile-graphs,tf32"}
    assert p.declared["tango2"][0][1] == ((100, 1), (100, 10))
    # TF32 for the models the study ran in fp32, at the targets' batch size
    assert declared["graphs,tf32"] == ((100, 1),) and declared["compile-graphs,tf32"] == ((100, 1), (100, 10))
    assert not any("tf32" in s for s, _, _ in p.declared["audioldm"])
    assert ((10, 1) in p.declared["audioldm"][0][1]) and ("max,fp8" in {s for s, _, _ in p.declared["tango"]})
    # [[levers.extra]]: max also at batch 32 for the compute-bound models, with the plan's steps and repeats
    assert dict((s, c) for s, c, _ in p.declared["tango"])["max"] == ((100, 1), (100, 10), (100, 32))
    audioldm_max = dict((s, c) for s, c, _ in p.declared["audioldm"])["max"]
    assert audioldm_max == ((10, 1), (100, 1), (10, 10), (100, 10))
    # eager fp8 (known to cost more than it saves) only at batch 1; its compiled combinations at both, and
    # compile-graphs,fp8 at batch 32 too (the FP8 target)
    stable_audio = dict((s, c) for s, c, _ in p.declared["stable-audio-open"])
    assert stable_audio["fp8"] == ((100, 1),)
    assert stable_audio["max,fp8"] == stable_audio["none"] == ((100, 1), (100, 10))
    assert stable_audio["compile-graphs,fp8"] == ((100, 1), (100, 10), (100, 32))
    opts = experiment.LeversOptions(models=p.models, declared=p.declared)
    plans = experiment.lever_plans("tango2", opts)
    assert plans[0].reference and plans[0].cells == ((100, 1),)


@pytest.mark.parametrize(("text", "needle"), [
    ("[levers]\nspecs = ['warp']\n", "unknown lever 'warp'"),
    ("[levers]\nmodels = ['nope']\n", "unknown model 'nope'"),
    ("[levers]\nsteps = [0]\n", "steps must be a non-empty list"),
    ("[levers]\nmodels = ['tango']\n[levers.model.audioldm]\nsteps = [10]\n", "not in models"),
    ("levers = 3\n", "needs a [levers] table"),
    ("[levers\n", "not valid TOML"),
    ("[levers]\n[[levers.extra]]\nspecs = ['max']\n", "needs specs and batches"),
    ("[levers]\nmodels = ['tango']\n[[levers.extra]]\nmodels = ['audioldm']\nspecs = ['max']\n"
     "batches = [32]\n", "not in models"),
    ("[levers]\n[[levers.extra]]\nspecs = ['max']\nbatches = [32]\nsize = 3\n", "unknown key 'size'"),
    ("[levers]\ngpu = ''\n", "gpu is empty: give a value, or leave gpu out for its default"),
    ("[levers]\nout_dir = ''\n", "out_dir is empty"),
])
def test_bad_plan_files_fail_with_one_line(tmp_path, text, needle):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(LeversError, match=None) as err:
        plan.read_levers_plan(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_bad_spec_in_a_plan_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text("[levers]\nmodels = ['audioldm']\n[levers.model.audioldm]\nextra_specs = ['fp16,bf16']\n")
    with pytest.raises(LeversError) as err:
        plan.read_levers_plan(path)
    assert str(err.value) == (f"{path}: audioldm extra_specs: lever spec 'fp16,bf16' names two precisions "
                              "(fp16, bf16): choose one")


# --- timed choices in their execution mode -----------------------------------------------------------------
def test_compile_blocks_compiles_each_block_shape_once_and_keeps_the_output():
    """Regional compilation: the UNet's 38 ResNet and transformer blocks are compiled one by one, blocks of
    one class and shape sharing a graph, the glue between them eager; the output is the uncompiled one's."""
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    req = GenerationRequest(prompts=["a dog barks"], steps=2, duration_s=1.0)
    ref = build_model("audioldm", size="tiny", dtype="float32", device="cpu").generate(req)
    levers = dataclasses.replace(parse_levers("fp32,compile-blocks"), compile_backend="eager")
    adapter = apply.apply_levers(build_model("audioldm", size="tiny", dtype="float32", device="cpu"), levers,
                                 duration_s=1.0)
    assert isinstance(adapter.denoiser, apply.BlockCompiledDenoiser)
    blocks = apply.repeated_blocks(adapter.denoiser.base_module, ("ResnetBlock2D", "Transformer2DModel"))
    assert adapter.applied_levers.notes["compiled_blocks"] == len(blocks) == 22 + 16
    before = counters["stats"]["unique_graphs"]
    out = adapter.generate(req)
    graphs = counters["stats"]["unique_graphs"] - before
    assert 0 < graphs < len(blocks)  # shared by blocks of one shape
    adapter.generate(req)
    assert counters["stats"]["unique_graphs"] - before == graphs  # no recompilation for the same call
    assert relative_error(out.latents, ref.latents) < 1e-5
    assert apply.execution_mode(levers, graphs=False, compiled=True) == "compile-blocks"
    assert apply.execution_mode(parse_levers("max,compile-blocks"), graphs=True,
                                compiled=True) == "compile-blocks+cudagraph"
    torch._dynamo.reset()


def test_compile_blocks_needs_declared_blocks():
    adapter = build_model("audioldm", size="tiny", dtype="float32", device="cpu")
    adapter.repeated_blocks = ()
    levers = dataclasses.replace(parse_levers("compile-blocks"), compile_backend="eager")
    with pytest.raises(LeverError, match="compile-blocks: audioldm's denoiser has no repeated blocks"):
        apply.apply_levers(adapter, levers)


def test_block_compiler_lowers_with_its_attention_backend():
    """The attention kernel is chosen while a graph is lowered: the compiler sets the backend flags around its
    inner backend, and compilers of two backends are unequal (Dynamo keeps their graphs apart)."""
    import torch._dynamo
    from torch._dynamo import register_backend

    seen: list[tuple[bool, bool]] = []

    @register_backend(name="tta_test_flags")
    def flags_backend(graph, example_inputs):
        seen.append((torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()))
        return graph.forward

    def attend(q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.randn(1, 2, 8, 16)
    torch._dynamo.reset()
    for sdpa in ("math", "flash"):
        torch.compile(attend, backend=apply.SdpaCompiler(sdpa, "tta_test_flags"), dynamic=False)(q)
    # math alone; flash with the math fallback; and the second backend compiled anew rather than reusing
    assert seen == [(False, True), (True, True)]
    assert apply.SdpaCompiler("flash") == apply.SdpaCompiler("flash") != apply.SdpaCompiler("math")
    assert torch.backends.cuda.flash_sdp_enabled()  # the flags are restored
    torch._dynamo.reset()


def test_block_compilers_bake_their_attention_kernel_into_the_lowered_graph():
    """What the compilers are for: AOT autograd (the front half of Inductor) picks the attention kernel while
    it lowers a graph, so a graph lowered by the `math` compiler holds matrix products and one lowered by the
    `flash` compiler holds the flash-attention op, and neither reuses the other's graph."""
    import torch._dynamo
    from torch._dynamo import register_backend
    from torch._functorch.aot_autograd import aot_module_simplified

    lowered: list[str] = []

    def keep(graph, _inputs):
        lowered.append(str(graph.graph))
        return graph.forward

    @register_backend(name="tta_test_lowered")
    def lowered_backend(graph, example_inputs):
        return aot_module_simplified(graph, example_inputs, fw_compiler=keep)

    def attend(q):
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.randn(1, 2, 64, 32)
    torch._dynamo.reset()
    with torch.inference_mode():
        outs = [torch.compile(attend, backend=apply.SdpaCompiler(sdpa, "tta_test_lowered"), dynamic=False)(q)
                for sdpa in ("math", "flash")]
    assert len(lowered) == 2
    assert "flash_attention" not in lowered[0] and "aten.bmm" in lowered[0]
    assert "_scaled_dot_product_flash_attention" in lowered[1]
    assert torch.allclose(outs[0], outs[1], atol=1e-5)  # the same attention, two kernels
    torch._dynamo.reset()


def test_block_compilers_never_share_a_cached_graph_under_inductor(tmp_path, monkeypatch):
    """With Inductor (here on the CPU), AOT autograd's cache is keyed by the graph before lowering, which two
    candidates' blocks share: without the backend in the key the second candidate would load the first's
    kernel from it, in this process or a later call that carries the cache."""
    import torch._dynamo
    import torch._functorch.config
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))

    class Attend(torch.nn.Module):
        def forward(self, q):
            return torch.nn.functional.scaled_dot_product_attention(q, q, q)

    q = torch.randn(1, 2, 64, 32)
    torch._dynamo.reset()
    hits = counters["aot_autograd"]["autograd_cache_hit"]
    module = Attend()
    with torch._functorch.config.patch(enable_autograd_cache=True), torch.inference_mode():
        for sdpa in ("math", "flash"):
            module.compile(backend=apply.SdpaCompiler(sdpa, "inductor"), dynamic=False)
            module(q)
    assert counters["aot_autograd"]["autograd_cache_hit"] == hits
    code = [f.read_text() for f in (tmp_path / "inductor").rglob("*.py")]
    calls = [c for c in code if "def call(" in c]
    assert sorted("flash_attention" in c for c in calls) == [False, True]  # one graph per kernel

    class Plain(torch.nn.Module):  # no attention: the second candidate's compiler reuses the first's graph
        def forward(self, q):
            return torch.nn.functional.silu(q) * 2.0

    plain = Plain()
    with torch._functorch.config.patch(enable_autograd_cache=True), torch.inference_mode():
        for sdpa in ("math", "flash"):
            plain.compile(backend=apply.SdpaCompiler(sdpa, "inductor"), dynamic=False)
            plain(q)
    assert counters["aot_autograd"]["autograd_cache_hit"] == hits + 1
    torch._dynamo.reset()


def test_attention_candidates_under_compiled_blocks_each_get_their_compiler(monkeypatch):
    import torch._dynamo

    torch._dynamo.reset()
    seen: dict[str, object] = {}
    real = apply.time_denoiser_chains

    def spy(adapter, duration_s, chains, repeats=3, batch=1):
        seen.update(chains=dict(chains))
        return real(adapter, duration_s, chains, repeats=1, batch=batch)

    monkeypatch.setattr(apply, "time_denoiser_chains", spy)
    levers = dataclasses.replace(parse_levers("fp32,compile-blocks,sdpa-best"), compile_backend="eager")
    adapter = apply.apply_levers(build_model("stable-audio-open", size="tiny", dtype="float32", device="cpu"),
                                 levers, duration_s=1.0)
    chains = seen["chains"]
    assert len(chains) == 2
    assert {c.compiler.sdpa for c in chains.values()} == set(chains)  # one compiler per candidate
    notes = adapter.applied_levers.notes
    assert adapter.denoiser.compiler.sdpa == notes["sdpa"] and notes["sdpa_timed_in"] == "compile-blocks"
    torch._dynamo.reset()


def test_attention_backend_is_timed_in_the_mode_it_runs_in(monkeypatch):
    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    seen: list[tuple[tuple[str, ...], int]] = []
    real = apply.time_denoiser_chains

    def spy(adapter, duration_s, chains, repeats=3, batch=1):
        seen.append((tuple(chains), batch))
        for name, chain in chains.items():  # each candidate: its own compiled module, its backend inside
            assert isinstance(chain._orig_mod, apply.SdpaDenoiser)
            assert chain._orig_mod.backend == name and chain._orig_mod.traceable
        assert len({id(c) for c in chains.values()}) == len(chains)
        return real(adapter, duration_s, chains, repeats=1, batch=batch)

    monkeypatch.setattr(apply, "time_denoiser_chains", spy)
    levers = dataclasses.replace(parse_levers("fp32,compile,sdpa-best"), compile_backend="eager")
    graphs_before = counters["stats"]["unique_graphs"]
    adapter = apply.apply_levers(build_model("stable-audio-open", size="tiny", dtype="float32", device="cpu"),
                                 levers, duration_s=1.0, batch=2)
    assert seen and seen[0][1] == 2
    # the backend flags are read while tracing and not guarded: a candidate that reused another's compiled
    # graph would run that one's kernel, so each candidate must have been compiled on its own
    assert counters["stats"]["unique_graphs"] - graphs_before >= len(seen[0][0]) == 2
    notes = adapter.applied_levers.notes
    assert notes["sdpa_timed_in"] == "compile" and notes["sdpa"] in seen[0][0]
    assert set(notes["sdpa_ms"]) <= set(seen[0][0]) and "sdpa_eager_ms" in notes
    assert adapter.denoiser._orig_mod.backend == notes["sdpa"]
    assert torch._dynamo.config.recompile_limit >= apply.RECOMPILE_LIMIT
    assert apply.execution_mode(parse_levers("max"), graphs=True, compiled=False) == "cudagraph"
    mode = apply.execution_mode(parse_levers("compile-graphs"), graphs=False, compiled=True)
    assert mode == "compile-graphs"
    torch._dynamo.reset()


# --- fp8 ---------------------------------------------------------------------------------------------------
def test_fp8_spec_and_its_targets():
    levers = parse_levers("max,fp8")
    assert levers.fp8 and levers.changes_behaviour and levers.cudagraph and levers.precision == "float16"
    assert not parse_levers("max").fp8
    dit = build_model("stable-audio-open", size="tiny", dtype="float32", device="cpu").denoiser
    targets = apply.fp8_targets(dit)
    assert targets and all("transformer_blocks." in t for t in targets)
    modules = dict(dit.named_modules())
    assert all(isinstance(modules[t], torch.nn.Linear) for t in targets)
    assert all(modules[t].in_features % 16 == 0 and modules[t].out_features % 16 == 0 for t in targets)
    outside = [n for n, m in dit.named_modules() if isinstance(m, torch.nn.Linear) and n not in targets]
    assert all("transformer_blocks." not in n or m.in_features % 16 or m.out_features % 16
               for n, m in ((n, modules[n]) for n in outside))


def test_fp8_fails_clearly_without_a_capable_gpu_or_torchao(monkeypatch):
    adapter = build_model("stable-audio-open", size="tiny", dtype="float32", device="cpu")
    with pytest.raises(LeverError, match="compute capability 8.9"):
        apply.apply_levers(adapter, "fp8", duration_s=1.0)
    with pytest.raises(LeversError, match="fp8 ceiling: float8 matrix products need"):
        ceiling.measure_ceiling(None, "cpu", 0.01, 32, "fp8")
    monkeypatch.setattr(apply, "fp8_unavailable", lambda _device: None)
    try:
        import torchao  # noqa: F401
    except ImportError:
        with pytest.raises(LeverError, match="needs torchao"):
            apply.convert_fp8(adapter.denoiser, adapter.device)
    else:
        pytest.skip("torchao is installed: its float8 kernels need an sm_89+ GPU, not this CPU")


def test_applying_levers_never_changes_the_precision_of_later_configurations(monkeypatch):
    """torchao's float8 conversion switches the process to TF32 and coordinate-descent tuning unless told not
    to; whatever a lever does to those settings is undone when it has been applied."""
    import torch._inductor.config as inductor

    before = apply.global_numerics()
    assert before["float32_matmul_precision"] == "highest" and not before["matmul.allow_tf32"]

    def like_torchao(module, device):  # what torchao's recommended_inductor_config_setter does
        torch.set_float32_matmul_precision("high")
        inductor.coordinate_descent_tuning = True
        inductor.triton.unique_kernel_names = not before["inductor.triton.unique_kernel_names"]
        return 1

    monkeypatch.setattr(apply, "fp8_unavailable", lambda _device: None)
    monkeypatch.setattr(apply, "convert_fp8", like_torchao)
    adapter = build_model("stable-audio-open", size="tiny", dtype="float32", device="cpu")
    apply.apply_levers(adapter, "fp8", duration_s=1.0)
    assert adapter.applied_levers.notes["fp8_linear_layers"] == 1
    assert apply.global_numerics() == before
    with pytest.raises(RuntimeError), apply.preserved_numerics():  # also when the lever fails
        torch.set_float32_matmul_precision("medium")
        raise RuntimeError("a lever that failed half-way")
    assert apply.global_numerics() == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.get_device_capability() < (8, 9),
                    reason="needs an NVIDIA GPU of compute capability 8.9+ (float8 tensor cores) and torchao")
def test_fp8_converts_the_dit_and_changes_the_output_a_little():
    pytest.importorskip("torchao")
    from tta_energy.levers.equivalence import relative_error
    from tta_energy.models.base import GenerationRequest

    req = GenerationRequest(prompts=[PROMPT], steps=2, duration_s=1.0, seed=3)
    ref = build_model("stable-audio-open", size="tiny", dtype="float32", device="cuda").generate(req)
    built = build_model("stable-audio-open", size="tiny", dtype="float32", device="cuda")
    numerics = apply.global_numerics()
    adapter = apply.apply_levers(built, "bf16,fp8", duration_s=1.0)
    assert adapter.applied_levers.notes["fp8_linear_layers"] > 0
    assert apply.global_numerics() == numerics
    err = relative_error(adapter.generate(req).latents, ref.latents)
    assert 0.0 < err < 0.5


def test_dry_run_history_is_the_asked_size_only(tmp_path):
    """A tiny replica's cells are never priced from full-size (GPU) times."""
    rows = pd.DataFrame({"model": ["audioldm"] * 2, "size": ["full", "tiny"], "optimize": ["none"] * 2,
                         "steps": [10, 10], "waveforms_per_prompt": [1, 1], "wall_s": [8.5, 0.3],
                         "compile_s": [float("nan")] * 2})
    rows.to_csv(tmp_path / "levers.csv", index=False)
    assert plan.read_history([tmp_path / "levers.csv"], size="tiny")["wall_s"].tolist() == [0.3]
    assert plan.read_history([tmp_path / "levers.csv"], size="full")["wall_s"].tolist() == [8.5]
    assert plan.read_history([tmp_path / "levers.csv"])["wall_s"].tolist() == [pytest.approx(4.4)]


def test_step_profiles_are_quoted_once_each_in_the_mode_they_ran(tmp_path):
    """A configuration compiled with CUDA graph trees has one step time (no manual graph to time without), and
    a configuration profiled by two runs is quoted from the run the summary reports."""
    def prof(run_id, optimize, eager, graph):
        return {"run_id": run_id, "model": "tango", "optimize": optimize, "waveforms_per_prompt": 1,
                "eager_step_ms": eager, "graph_step_ms": graph, "matmul_ms": 1.0, "conv_ms": 1.0,
                "attention_ms": 1.0, "other_ms": 1.0, "kernel_ms": 4.0, "gflop_per_step": 100.0,
                "flop_bound_ms": 0.5}
    profile = pd.DataFrame([prof("r1", "none", 30.0, np.nan), prof("r2", "none", 20.0, np.nan),
                            prof("r1", "max", 15.0, 5.0), prof("r1", "compile-graphs", 2.0, np.nan),
                            prof("r1", "compile", 8.0, np.nan)])
    text = summary._limits_text("tango", pd.Series({"run_id": "r1", "optimize": "max"}), profile)
    assert "an eager step takes 30.00 ms" in text and "20.00 ms" not in text  # the reported run's profile
    assert "`max` batch 1: a step takes 5.00 ms as a CUDA graph (15.00 ms eager without it)" in text
    assert "`compile-graphs` batch 1: a step takes 2.00 ms compiled, replayed by CUDA graph trees" in text
    assert "(25% of the step)" in text  # 0.5 ms of FLOPs in a 2 ms step
    assert "`compile` batch 1: a step takes 8.00 ms compiled, without CUDA graphs" in text
    assert "n/a" not in text and "nan" not in text
    # without the reported run's profile, the latest run's
    assert "an eager step takes 20.00 ms" in summary._limits_text("tango", None, profile)


def test_a_compiled_spec_is_priced_from_the_catalogue_where_no_compilation_was_measured():
    """No compiled row for the model at that batch (the filter leaves an empty string column, whose map keeps
    its string dtype under pandas 3): the catalogue's estimate, not a type error."""
    h = pd.DataFrame([{"model": "audioldm", "optimize": "none", "steps": 100, "waveforms_per_prompt": 1,
                       "wall_s": 2.0, "compile_s": float("nan")}])
    h["optimize"] = h["optimize"].astype("str")
    assert plan._one_compilation_s(h, "audioldm", 1) is None
    assert plan.compile_s(h, "audioldm", "compile", 1) == pytest.approx(
        plan.COMPILE_S_PER_COST * plan._cost("audioldm"))


def test_a_cell_measured_on_the_plans_own_gpu_is_priced_from_that_gpu_alone(tmp_path):
    """Tables of the plan's own GPU (an earlier folder) price the cells they hold; another card's tables fill
    only the cells they lack; by default the plan's out_dir tables come first."""
    row = {"model": "audioldm", "optimize": "compile", "steps": 100, "waveforms_per_prompt": 1,
           "duration_s": 10.0, "size": "full", "compile_s": 30.0}
    cols = ["model", "optimize", "steps", "waveforms_per_prompt", "duration_s", "size", "wall_s", "compile_s"]
    own, other = tmp_path / "h100", tmp_path / "h200"
    own.mkdir(), other.mkdir()
    pd.DataFrame([{**row, "wall_s": 2.0, "compile_s": 50.0}], columns=cols).to_csv(own / "levers.csv",
                                                                                     index=False)
    pd.DataFrame([{**row, "wall_s": 1.0}, {**row, "optimize": "graphs", "wall_s": 1.5, "compile_s": 0.2}],
                 columns=cols).to_csv(other / "levers.csv", index=False)
    h = plan.read_history([own / "levers.csv", other / "levers.csv"], size="full", duration_s=10.0)
    by_spec = h.set_index("optimize")
    assert by_spec.loc["compile", "wall_s"] == 2.0 and by_spec.loc["compile", "compile_s"] == 50.0
    assert by_spec.loc["graphs", "wall_s"] == 1.5  # only the other card measured it
    # a value the own folder left empty (a compilation not timed) comes from the other card, per value
    pd.DataFrame([{**row, "optimize": "graphs", "wall_s": 3.0, "compile_s": float("nan")}],
                 columns=cols).to_csv(own / "steps_levers.csv", index=False)
    tables = [own / "levers.csv", own / "steps_levers.csv", other / "levers.csv"]
    mixed = plan.read_history(tables, size="full", duration_s=10.0).set_index("optimize")
    assert mixed.loc["graphs", "wall_s"] == 3.0 and mixed.loc["graphs", "compile_s"] == 0.2
    pooled_own = plan.read_history([own / "levers.csv", own / "levers.csv"], size="full", duration_s=10.0)
    assert len(pooled_own) == 1 and pooled_own["wall_s"].iloc[0] == 2.0
    pooled = plan.read_history([other / "levers.csv", own / "levers.csv"], size="full", duration_s=10.0)
    assert pooled.set_index("optimize").loc["compile", "wall_s"] == 1.0  # the order decides

    from tta_energy.cli.levers_commands import DEFAULT_HISTORY, history_paths

    plan_file = tmp_path / "p.toml"
    plan_file.write_text('[levers]\nmodels = ["audioldm"]\nout_dir = "h100"\n', encoding="utf-8")
    paths = history_paths(None, plan.read_levers_plan(plan_file).out_dir)
    assert paths[0] == (own / "levers.csv").resolve()
    assert paths[1:] == [Path(h).resolve() for h in DEFAULT_HISTORY if Path(h).is_file()]
    assert history_paths("", own) == []  # named: only what is named


def test_the_ceiling_panel_shows_the_default_the_best_lossless_and_a_better_one_that_changes_the_output():
    """One rule picks the best configuration against the ceiling for the summary's table and the figure:
    lossless, at any batch size, never the fp32 reference; the figure adds the study default of the summary's
    run and the best at any precision where that is another configuration (not fp8 or trim-latents)."""
    rows = [("r1", "none", 1, 0.10, True, False), ("r2", "none", 1, 0.12, True, False),
            ("r1", "graphs", 10, 0.30, True, False), ("r1", "max", 10, 0.45, False, False),
            ("r1", "fp32", 1, 0.90, True, False), ("r1", "fp8", 10, 0.80, False, True)]
    table = pd.DataFrame([{"run_id": run, "model": "tango", "optimize": spec, "steps": 100,
                           "waveforms_per_prompt": batch, "fraction_of_ceiling": frac, "lossless": lossless,
                           "changes_behaviour": changes}
                          for run, spec, batch, frac, lossless, changes in rows])
    assert report.best_fraction(table, "tango")["optimize"] == "graphs"
    assert report.best_fraction(table, "tango", lossless=False)["optimize"] == "max"
    assert report.best_fraction(table, "audioldm") is None
    bars = report.ceiling_bars(table, 100, {"tango": "r2"})
    assert bars[["role", "label", "fraction_of_ceiling"]].values.tolist() == [
        [plot.STUDY_DEFAULT_BAR, "none, b1", 0.12], [plot.BEST_LOSSLESS_BAR, "graphs, b10", 0.30],
        [plot.BEST_ANY_BAR, "max, b10", 0.45]]
    assert (bars["target"] == catalogue.entry("tango").levers.ceiling_fraction).all()
    # where the best lossless is also the best, it is drawn once
    only = report.ceiling_bars(table[table["optimize"] != "max"], 100, {"tango": "r1"})
    assert list(only["role"]) == [plot.STUDY_DEFAULT_BAR, plot.BEST_LOSSLESS_BAR]


def test_the_report_says_how_much_of_a_compilation_the_cache_served(tmp_path):
    raw = tmp_path / "raw"
    for spec in ("none", "compile", "compile-graphs", "graphs"):
        for repeat, (warm, wall) in enumerate(((True, 12.0), (False, 2.0))):
            schema.append_row(raw / tables.RUNS_FILE, _row(run_id="r1", optimize=spec, repeat=repeat,
                                                           is_warmup=warm, wall_s=wall, gpu_energy_J=300.0))
    for spec, hits, misses in (("compile", 0, 4), ("compile-graphs", 3, 1)):
        tables.append_csv(raw / tables.COMPILE_FILE, {
            "run_id": "r1", "model": "audioldm", "optimize": spec, "waveforms_per_prompt": 1,
            "aot_cache_hits": hits, "aot_cache_misses": misses})
    table = report.levers_table([raw])
    share = table.set_index("optimize")["compile_cache_hit_share"]
    assert share["compile"] == 0.0 and share["compile-graphs"] == pytest.approx(0.75)
    assert math.isnan(share["graphs"]) and math.isnan(share["none"])  # nothing compiled: no count
    text = summary.summary_markdown(table, pd.DataFrame(), pd.DataFrame())
    assert "| audioldm | `compile-graphs` | 1 | 10.0 | 0 | 75% |" in text
    assert "| audioldm | `compile` | 1 | 10.0 | 0 | 0% |" in text


def test_a_steady_generation_predicts_another_step_count_by_its_denoising(tmp_path):
    """A second warm-up (the steady baseline) or a measured generation at 10 steps predicts 100 steps: the
    denoising scaled by steps, the rest kept (Stable Audio Open on the H100, batch 10: 2.26 s at 10 steps,
    1.43 s of it denoising, gave 14.8 s at 100 steps; the whole wall scaled would say 22.6 s)."""
    options = tiny_levers_options(tmp_path, "a", min_window_s=1.0)
    run = experiment.ModelRun("stable-audio-open", options, "r", None, {}, "")
    run.steady[("none", 10, 10)] = (2.26, 1.43)
    assert run.predicted_s("none", 100, 10) == pytest.approx(0.83 + 14.3)
    assert run.predicted_s("none", 100, 1) == 0.0  # another batch size: nothing known
    run.steady[("graphs", 10, 10)] = (0.2, 0.1)
    assert run.predicted_s("graphs", 1, 10) == 1.0  # never below the meter's window
    run.walls[("none", 100, 10)] = 14.8
    assert run.predicted_s("none", 100, 10) == 14.8  # the cell itself


def _prepared(spec: str, cells: tuple[tuple[int, int], ...], repeats: int = 3) -> experiment.Prepared:
    plan = experiment.LeverPlan(parse_levers(spec), cells, repeats)
    return experiment.Prepared(plan, None, None, "float16")


def test_rounds_that_cannot_all_fit_measure_the_cells_that_can_with_all_their_repeats(tmp_path):
    """A Stable Audio Open batch-10 unit of six configurations had time for 13 of its 18 generations: rounds
    cut short left every cell short of its 3 repeats, and the next call measured them all again. Where the
    rounds do not fit, the cells that do are measured whole: `none` first (the reductions' reference), then
    the plan's order; a cell whose `none` does not fit is left out."""
    run = experiment.ModelRun("stable-audio-open", tiny_levers_options(tmp_path, "a"), "r", None, {}, "")
    seconds = {"none": 15.0, "compile": 11.0, "max": 14.0, "max,fp8": 22.0, "compile-graphs,fp8": 9.5}
    prepared = [_prepared(spec, ((100, 10),)) for spec in ("compile", "max,fp8", "none", "max",
                                                           "compile-graphs,fp8")]
    for spec, wall in seconds.items():
        run.walls[(spec, 100, 10)] = wall
    cells = [(p, 100, 10) for p in prepared]
    # each deadline leaves seconds to spare beyond the cells it keeps (a loaded machine's clock read comes
    # late), and too few for the next cell
    assert experiment.cells_that_fit(run, cells, (100, 10)) == cells  # no deadline: every cell
    run.deadline = time.perf_counter() + 3 * (15.0 + 11.0 + 22.0) + 15.0
    kept = experiment.cells_that_fit(run, cells, (100, 10))
    assert [p.plan.spec for p, _, _ in kept] == ["compile", "max,fp8", "none"]  # in the plan's order
    run.deadline = time.perf_counter() + 3 * 15.0 + 10.0
    assert [p.plan.spec for p, _, _ in experiment.cells_that_fit(run, cells, (100, 10))] == ["none"]
    run.deadline = time.perf_counter() + 10.0  # not even `none`: the rounds are cut as they come
    assert experiment.cells_that_fit(run, cells, (100, 10)) == cells
    # two step counts: a 10-step cell whose `none` at 10 steps does not fit is never measured alone
    two = [_prepared("none", ((10, 1), (100, 1))), _prepared("max", ((10, 1), (100, 1)))]
    run.walls.update({("none", 10, 1): 30.0, ("none", 100, 1): 2.0, ("max", 10, 1): 0.5,
                      ("max", 100, 1): 1.0})
    run.deadline = time.perf_counter() + 3 * (2.0 + 1.0 + 0.5) + 5.0
    kept = experiment.cells_that_fit(run, [(p, s, b) for p in two for s, b in p.plan.cells], (100, 1))
    assert [(p.plan.spec, s) for p, s, _ in kept] == [("none", 100), ("max", 100)]


def test_a_compiled_configuration_with_no_steady_generation_is_predicted_as_the_default(tmp_path):
    """Where a compiled configuration's only warm-up is a measured cell's (10 and 100 steps), that warm-up
    holds its compilation: the study default's steady generation predicts it instead (a configuration is
    taken to be no slower, as the plan prices one not measured)."""
    options = tiny_levers_options(tmp_path, "a", min_window_s=0.0)
    run = experiment.ModelRun("make-an-audio-2", options, "r", None, {}, "")
    run.warmup_walls[("compile", 10, 10)] = 20.9  # its compilation
    run.steady[("none", 10, 10)] = (0.9, 0.4)
    assert run.predicted_s("compile", 100, 10) == pytest.approx(0.5 + 4.0)
    run.steady[("compile", 10, 10)] = (0.6, 0.2)  # its own steady generation, once known
    assert run.predicted_s("compile", 100, 10) == pytest.approx(0.4 + 2.0)
