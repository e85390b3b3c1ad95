"""The priced dry run against the calls' times: each model's log line carries its units' price, and
``levers.forecast`` reads prices and times back from the call logs, old and new."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from conftest import tiny_levers_options

from tta_energy import schema
from tta_energy.levers import experiment, tables
from tta_energy.levers.forecast import FORECAST_COLUMNS, forecast_text, read_forecasts, unit_prices


def test_a_model_line_gives_its_price_and_the_log_reads_back_to_a_forecast_row(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's
    said: list[str] = []
    folder = experiment.run_levers(tiny_levers_options(
        tmp_path, "a", progress=said.append, declared={"audioldm": (("none", ((2, 1),), 2),)},
        model_seconds={"audioldm": 42.0})).folder
    line = next(s for s in said if s.startswith("audioldm: "))
    assert re.fullmatch(r"audioldm: \d+ generations measured in \d+ s \(predicted 42 s\)", line), line
    log = tmp_path / "log-levers-plan-20261206T000000.txt"
    log.write_text("\n".join(["this call: audioldm batch 1: none (42 s)", *said]) + "\n", encoding="utf-8")
    rows = read_forecasts([log])
    measured = schema.read_runs(folder / tables.RUNS_FILE)
    assert list(rows.columns) == FORECAST_COLUMNS and len(rows) == 1
    row = rows.iloc[0]
    assert (row["call"], row["model"], row["predicted_s"], row["cut"]) == ("plan-20261206T000000", "audioldm",
                                                                           42.0, False)
    # the fp32 reference and the two repeats of none
    assert row["generations"] == int((~measured["is_warmup"].astype(bool)).sum()) == 3
    assert f"measured in {row['measured_s']:.0f} s" in line


def test_without_a_plan_the_model_line_names_no_price(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})
    said: list[str] = []
    experiment.run_levers(tiny_levers_options(tmp_path, "a", progress=said.append))
    line = next(s for s in said if s.startswith("audioldm: "))
    assert "generations measured in" in line and "predicted" not in line


def test_an_older_log_prices_only_its_first_runs_models_from_the_this_call_line(tmp_path):
    log = tmp_path / "log-levers-plan-20261206T123622.txt"
    log.write_text("\n".join([
        "levers part plan-20261206T123622 on vm; budget 520s",
        "this call: tango batch 1: none, graphs,tf32 (78 s); make-an-audio batch 1: none (71 s); "
        "make-an-audio batch 10: none, compile-graphs,tf32 (72 s)",
        "tango: 9 generations measured in 102 s",
        "make-an-audio: 15 generations measured in 101 s",
        "120 s of the time budget left: run r2 measures make-an-audio-2 batch 1: none",
        "make-an-audio-2: 6 generations measured in 43 s",  # a refill's run: no price in an older log
    ]) + "\n", encoding="utf-8")
    rows = read_forecasts([log])
    assert rows[["model", "predicted_s", "measured_s", "generations"]].to_dict("records") == [
        {"model": "tango", "predicted_s": 78.0, "measured_s": 102.0, "generations": 9},
        {"model": "make-an-audio", "predicted_s": 143.0, "measured_s": 101.0, "generations": 15}]


def test_unit_prices_sum_each_models_units():
    assert unit_prices("tango2 batch 10: none, compile (255 s); tango2 batch 32: max (107 s); "
                       "audioldm batch 1: none (12 s)") == {"tango2": 362.0, "audioldm": 12.0}


def test_the_text_leaves_the_runs_the_budget_cut_out_of_the_ratio():
    rows = pd.DataFrame([
        ("c1", "tango", 100.0, 90.0, 6, False),
        ("c1", "tango2", 100.0, 40.0, 6, False),
        ("c2", "tango", 200.0, 240.0, 6, False),
        ("c3", "tango", 385.0, 88.0, 0, True),  # cut by the time budget
    ], columns=FORECAST_COLUMNS)
    text = forecast_text(rows)
    assert text == ("a model's measured time over its units' price was 0.90 in the median (0.40 to 1.20; "
                    "within 0.8 to 1.25 in 67% of them) over 3 model runs in 2 calls; the time budget cut 1 "
                    "more")
    assert forecast_text(rows.iloc[3:]) == "no model run with a prediction in the call logs"


@pytest.mark.parametrize("suffix", [" (predicted 50 s) (stopped: time budget)", " (stopped: time budget)"])
def test_a_run_the_budget_stopped_is_marked_cut(tmp_path, suffix):
    log = tmp_path / "log-levers-plan-x.txt"
    log.write_text(f"this call: tango batch 10: none (50 s)\ntango: 0 generations measured in 30 s{suffix}\n",
                   encoding="utf-8")
    rows = read_forecasts([log])
    assert rows["cut"].tolist() == [True] and rows["predicted_s"].tolist() == [50.0]
