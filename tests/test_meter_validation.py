"""The validation benchmark's protocol on the simulated GPU, and its aggregation on hand-made data."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from tta_energy.analysis import docs_numbers_docs
from tta_energy.experiments.meter_validation.protocol import CSV_COLUMNS, Config, Validation
from tta_energy.experiments.meter_validation.report import (
    METER_SUMMARY,
    METER_TABLE,
    check_targets,
    overhead_summary,
    overhead_verdict,
    summarise,
    write_outputs,
)
from tta_energy.experiments.meter_validation.rigs import SimulatedRig


def tiny_config() -> Config:
    return Config(windows=(0.2, 1.0), trials={0.2: 2, 1.0: 2}, truth_s=3.0, truth_blocks=3,
                  isolated_windows=(0.2,), isolated_trials=1, repeated_targets=(0.2,), repeated_trials=2,
                  isolated_repeated_trials=1, overhead_reps=2, overhead_calls=1, idle_s=1.0, warmup_s=1.0,
                  budget_s=1e9)


def test_dry_run_protocol_writes_a_tidy_table_and_a_summary(tmp_path):
    rig = SimulatedRig(seed=1)
    validation = Validation(rig, tiny_config(), log=lambda message: None)
    frame = validation.run()
    rig.close()
    assert list(frame.columns) == list(CSV_COLUMNS)
    methods = set(frame["method"])
    assert {"meter_split", "meter_linear", "meter_naive", "raw_counter", "simulated_edge_reads",
            "meter_split_repeated_1s", "meter_naive_repeated_1s", "sampler_off", "sampler_process",
            "sampler_thread"} <= methods
    assert set(frame["scenario"]) == {"steady", "isolated", "overhead"}
    steady = frame[frame["scenario"] == "steady"]
    assert steady["truth_J"].gt(0).all() and steady["rel_error"].notna().all()
    assert steady["continuous"].all()  # simulated work holds its load until synchronised
    single = steady[~steady["method"].str.contains("repeated")]
    # every method measured the very same windows: one row per method per steady trial
    assert single.groupby("method").size().nunique() == 1
    split = single[single["method"] == "meter_split"]["rel_error"].abs().max()
    naive = single[single["method"] == "raw_counter"]["rel_error"].abs().max()
    assert split < 0.02 and naive > 3 * split
    # repetition: per-call energy of calls repeated over >= 1 s, all inside the load
    repeated = steady[steady["method"] == "meter_split_repeated_1s"]
    assert len(repeated) == 4 and (repeated["calls"] >= 4).all()
    assert repeated["rel_error"].abs().max() < 0.02
    # interleaved truth blocks: 3 per workload; the truth passes through each block and stays between
    # neighbouring blocks' values (monotone interpolation), constant outside them
    blocks = validation.truth["matmul_bf16_8192"]
    assert len(blocks) == 3
    for b in blocks:
        assert validation.e_iter_at("matmul_bf16_8192", b["t_mid"]) == pytest.approx(b["e_iter"])
    halfway = 0.5 * (blocks[0]["t_mid"] + blocks[1]["t_mid"])
    low, high = sorted((blocks[0]["e_iter"], blocks[1]["e_iter"]))
    assert low - 1e-12 <= validation.e_iter_at("matmul_bf16_8192", halfway) <= high + 1e-12
    assert validation.e_iter_at("matmul_bf16_8192", blocks[0]["t_mid"] - 100) == pytest.approx(
        blocks[0]["e_iter"])
    # the peers' wider windows: their truth adds steady power x their extra loaded time
    assert (single[single["method"] == "meter_split"]["extra_s"] == 0).all()
    assert (single[single["method"] == "raw_counter"]["extra_s"] >= 0).all()
    # the sampler overhead on both workloads, two interleaved repetitions each
    overhead = frame[frame["scenario"] == "overhead"]
    assert set(overhead["workload"]) == {"matmul_bf16_8192", "unet_audioldm_fp16"}
    assert overhead.groupby(["workload", "method"]).size().eq(2).all()
    csv_path, md_path = write_outputs(tmp_path / "validation", frame, validation, dry_run=True)
    assert (csv_path.name, md_path.name) == (METER_TABLE, METER_SUMMARY)
    back = pd.read_csv(csv_path)
    assert len(back) == len(frame) and list(back.columns) == list(CSV_COLUMNS)
    text = md_path.read_text()
    assert text.startswith("# GPU energy meter: validation")
    assert "DRY RUN" in text and "## Verdict" in text and "zeus: dry run (no GPU)" in text
    assert "`meter_split_repeated_1s` max" in text
    assert not list(csv_path.parent.glob("*.tmp"))
    # the docs' blocks find the table and the summary where write_outputs put them
    docs = SimpleNamespace(data=tmp_path)
    assert [t["target"] for t in docs_numbers_docs._validation_targets(docs)] == [
        t["target"] for t in check_targets(back)]
    assert docs_numbers_docs.block_meter_truth_span(docs).startswith("~")  # not "no `meter_summary.md` ..."


def synthetic_frame() -> pd.DataFrame:
    rows = []
    for window, errors in ((0.2, {"meter_split": (0.01, -0.015), "zeus": (0.3, -0.4)}),
                           (1.0, {"meter_split": (0.001, -0.004), "zeus": (0.05, 0.02)}),
                           (5.0, {"meter_split": (0.006, 0.0), "zeus": (0.01, -0.01)})):
        for method, errs in errors.items():
            for trial, err in enumerate(errs):
                rows.append({"workload": "w", "scenario": "steady", "method": method,
                             "window_target_s": window, "trial": trial, "measured_J": 100 * (1 + err),
                             "truth_J": 100.0, "rel_error": err})
    off = (100.0, 100.4, 100.2)
    for method, energies in (("sampler_off", off), ("sampler_process", (100.1, 100.5, 100.4))):
        for trial, e in enumerate(energies):
            rows.append({"workload": "w", "scenario": "overhead", "method": method, "window_target_s": 1.0,
                         "trial": trial, "measured_J": e, "truth_J": off[trial], "window_s": 1.0,
                         "rel_error": e / off[trial] - 1})
    frame = pd.DataFrame(rows)
    frame["continuous"] = True
    return frame


def test_aggregation_and_target_check_on_known_numbers():
    frame = synthetic_frame()
    table = summarise(frame)
    row = table[(table["method"] == "zeus") & (table["window_target_s"] == 0.2)].iloc[0]
    assert row["trials"] == 2 and row["max_abs_error_pct"] == pytest.approx(40.0)
    assert row["mean_error_pct"] == pytest.approx(-5.0) and row["mean_abs_error_pct"] == pytest.approx(35.0)
    targets = {t["target"].split(":")[0]: t for t in check_targets(frame)}
    long = targets["windows >= 1 s"]
    assert long["value_pct"] == pytest.approx(0.6) and not long["met"]  # the 5 s window's 0.6% breaks it
    assert long["peers_max_pct"]["zeus"] == pytest.approx(5.0)
    short = targets["windows of 0.2 s"]
    assert short["value_pct"] == pytest.approx(1.5) and short["met"]
    assert short["by_method"]["zeus"]["max_abs_pct"] == pytest.approx(40.0)
    assert not short["by_method"]["zeus"]["met"] and short["by_method"]["meter_split"]["met"]
    overhead = targets["meter overhead <= 1% of a 1 s workload's energy"]
    paired = np.array([100.1 / 100.0, 100.5 / 100.4, 100.4 / 100.2]) * 100 - 100
    assert overhead["value_pct"] == pytest.approx(paired.mean())
    ov = overhead_summary(frame).set_index("method")
    assert ov.loc["sampler_process", "sd_pct"] == pytest.approx(paired.std(ddof=1))
    # 95% t interval with 2 degrees of freedom: 4.303 x sd / sqrt(3)
    expected_ci = 4.3027 * paired.std(ddof=1) / np.sqrt(3)
    assert ov.loc["sampler_process", "ci95_pct"] == pytest.approx(expected_ci, rel=1e-3)
    assert overhead["met"] and overhead["verdicts"]["w"].startswith("met")


def test_overhead_verdict_separates_met_not_met_and_noise():
    assert overhead_verdict(0.2, 0.3).startswith("met")
    assert overhead_verdict(2.5, 0.5).startswith("NOT met")
    assert overhead_verdict(-1.6, 0.5).startswith("NOT met")
    assert overhead_verdict(0.5, 1.2).startswith("inconclusive")
    assert overhead_verdict(0.3, math.nan).startswith("inconclusive (one repetition")
    assert overhead_verdict(math.nan, math.nan) == "not measured"


def test_the_console_line_gives_the_overheads_verdicts_not_a_plain_fail():
    from tta_energy.experiments.meter_validation.report import target_status

    inconclusive = {"target": "meter overhead <= 0.5% of a 1 s workload's energy", "met": False,
                    "value_pct": 0.8, "verdicts": {"steady": overhead_verdict(-0.8, 13.98)}}
    line = target_status(inconclusive)
    assert "inconclusive" in line and "NOT met" not in line
    assert target_status({**inconclusive, "verdicts": {}}).endswith("not measured")
    plain = {"target": ">= 1 s windows: deviation <= 1%", "met": False, "value_pct": 1.234}
    assert target_status(plain) == "NOT met >= 1 s windows: deviation <= 1%: 1.234%"


def test_missing_measurements_are_reported_as_not_met():
    empty = pd.DataFrame(columns=list(CSV_COLUMNS))
    empty["continuous"] = empty["continuous"].astype(bool)
    results = check_targets(empty)
    assert [r["met"] for r in results] == [False, False, False]
    assert all(math.isnan(r["value_pct"]) for r in results)
    assert summarise(synthetic_frame().assign(rel_error=np.nan)).empty


def test_summary_tables_show_a_dash_for_an_undefined_value():
    """The SD of a single trial is undefined: the summary shows a dash, never "nan"."""
    import pandas as pd

    from tta_energy.experiments.meter_validation.report import _md_table

    text = _md_table(pd.DataFrame({"trials": [1, 3], "sd_error_pct": [float("nan"), 0.25]}))
    assert "| 1 | – |" in text and "| 3 | 0.250 |" in text and "nan" not in text
