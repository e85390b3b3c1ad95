"""``tta-energy campaign``: the campaign file, the done rule, the plan's estimates, a tiny-model run (CPU)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import refused
from tta_energy import schema
from tta_energy.cli.exits import NOTHING_LEFT_EXIT
from tta_energy.cli.main import main
from tta_energy.experiments import campaign as cp
from tta_energy.experiments import resume
from tta_energy.experiments.campaign_plan import pace_range_text, run_paces
from tta_energy.experiments.grids import Config
from tta_energy.experiments.runner import Item
from tta_energy.intervals import t_critical, t_interval
from tta_energy.study import STUDY_PROMPT

ROOT = Path(__file__).resolve().parents[1]
H200_CAMPAIGN = ROOT / "campaigns" / "h200.toml"  # the committed campaign, wherever pytest runs from


def test_the_committed_campaign_file_parses_into_typed_entries():
    c = cp.load_campaign(H200_CAMPAIGN)
    assert [e.experiment for e in c.entries] == ["steps", "batch", "quality", "quality", "duration",
                                                 "guidance", "precision"]
    steps = c.entries[0]
    assert len(steps.models) == 7 and steps.stopping == cp.Stopping(5, 8, 0.05)
    quality = c.entries[2:4]
    assert [(q.grid, q.caption_limit) for q in quality] == [(("10",), 30), (("100",), 10)]
    assert c.entries[-1].stopping.min_repeats == 3 and c.entries[-1].stopping.max_repeats == 8
    assert c.dtype is None and c.size == "full" and c.min_window_s == 1.0


def test_relative_paths_in_a_campaign_file_are_relative_to_its_folder(tmp_path, monkeypatch, capsys):
    folder, elsewhere = tmp_path / "campaigns", tmp_path / "elsewhere"
    folder.mkdir()
    elsewhere.mkdir()
    path = folder / "c.toml"
    path.write_text('out_dir = "../tables"\nsize = "tiny"\n'
                    '[[experiment]]\nname = "steps"\nmodels = ["audioldm"]\n'
                    '[[experiment]]\nname = "quality"\nmodels = ["tango"]\n'
                    'captions = ["clotho", "mine_captions.csv"]\n', encoding="utf-8")
    monkeypatch.chdir(elsewhere)
    c = cp.load_campaign(path)
    assert c.out_dir == tmp_path / "tables"
    assert c.entries[1].captions == ("clotho", str(folder / "mine_captions.csv"))
    assert cp.load_campaign(H200_CAMPAIGN).out_dir == ROOT / "data" / "h200"
    # the commands read the same tables from any folder
    for cwd, campaign in ((elsewhere, path), (folder, Path("c.toml"))):
        monkeypatch.chdir(cwd)
        main(["campaign", "status", "--campaign", str(campaign), "--model", "audioldm"])
        shown = capsys.readouterr().out.splitlines()[0].split("tables in ")[1]
        assert Path(shown).resolve() == (tmp_path / "tables").resolve()
    # without out_dir: runs/ beside the file, not under the working directory (docs/campaign.md)
    path.write_text(path.read_text(encoding="utf-8").replace('out_dir = "../tables"\n', ""), encoding="utf-8")
    assert cp.load_campaign(path).out_dir == folder / "runs"
    for cwd, campaign in ((elsewhere, path), (folder, Path("c.toml"))):
        monkeypatch.chdir(cwd)
        main(["campaign", "status", "--campaign", str(campaign), "--model", "audioldm"])
        shown = capsys.readouterr().out.splitlines()[0].split("tables in ")[1]
        assert Path(shown).resolve() == (folder / "runs").resolve()
    assert not (elsewhere / "runs").exists() and not (folder / "runs").exists()  # status makes nothing


@pytest.mark.parametrize(("text", "message"), [
    ("name = 'x'\n[[experiment]]\nname = 'stepz'\n", "name must be one of steps"),
    ("[[experiment]]\nname = 'steps'\nmodels = ['nope']\n", "unknown model 'nope' in "),
    ("[[experiment]]\nname = 'steps'\nrepeats = {min = 6, max = 4}\n", "2 <= min <= max"),
    ("[[experiment]]\nname = 'steps'\nrepeats = {min = 1, max = 3}\n",
     "experiment 1 (steps): repeats need 2 <= min <= max (a confidence interval needs 2 repeats) or "
     "min = max = 1, got min 1, max 3"),
    ("[repeats]\nmin = 0\nmax = 0\n[[experiment]]\nname = 'steps'\n", "got min 0, max 0"),
    ("colour = 1\n[[experiment]]\nname = 'steps'\n", "unknown key(s) colour"),
    ("[[experiment]]\nname = 'steps'\ncaption_limit = 3\n", "belong to the quality experiment"),
    ("name = 'x'\n", "no [[experiment]] table"),
    ("[[experiment]\n", "is not valid TOML"),
    ("seed = 'zero'\n[[experiment]]\nname = 'steps'\n", "seed must be an integer"),
    ("[levers]\nmodels = ['tango']\n", "is a levers plan file"),
    # an empty string is no value: gpu = "" would read as any card, out_dir = "" as the file's own folder
    ("gpu = ''\n[[experiment]]\nname = 'steps'\n",
     "gpu is empty: give a value, or leave gpu out for its default"),
    ("out_dir = ' '\n[[experiment]]\nname = 'steps'\n", "out_dir is empty"),
    ("name = ''\n[[experiment]]\nname = 'steps'\n", "name is empty"),
])
def test_a_bad_campaign_file_is_one_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(cp.CampaignError, match="bad.toml"):
        cp.load_campaign(path)
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "plan", "--campaign", str(path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["campaign", "status", "--campaign", str(tmp_path / "missing.toml")])
    assert "does not exist" in capsys.readouterr().err


def test_one_repeat_per_cell_is_allowed_only_as_both_min_and_max(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[repeats]\nmin = 1\nmax = 1\n[[experiment]]\nname = 'steps'\n"
                    "[[experiment]]\nname = 'batch'\nrepeats = {min = 2, max = 3}\n", encoding="utf-8")
    assert [e.stopping for e in cp.load_campaign(path).entries] == [cp.Stopping(1, 1, 0.05),
                                                                     cp.Stopping(2, 3, 0.05)]


def _cell(n_configs: int = 1, per_caption: bool = False) -> cp.Cell:
    items = tuple(Item(Config("steps", "tango", 10, (STUDY_PROMPT,), call_index=i), 0, f"cid{i}", "float32")
                  for i in range(n_configs))
    return cp.Cell("tango", "steps", (("steps", 10),), items, cp.Stopping(5, 8, 0.05), per_caption)


def _observed(values_per_repeat: list[list[float]], statuses: str = "ok") -> dict[str, cp.Observed]:
    obs: dict[str, cp.Observed] = {}
    for r, values in enumerate(values_per_repeat):
        for i, v in enumerate(values):
            obs.setdefault(f"cid{i}", cp.Observed()).add(r, statuses, v, 1.0)
    return obs


def test_done_rule_on_synthetic_rows():
    cell = _cell()
    tight = cp.cell_state(cell, _observed([[100.0], [101.0], [99.0], [100.5], [99.5]]))
    assert tight.n == 5 and tight.done and tight.ci95_half_width_rel < 0.05
    assert tight.mean_J == pytest.approx(100.0)
    wide_values = [[100.0], [140.0], [70.0], [120.0], [80.0]]
    wide = cp.cell_state(cell, _observed(wide_values))
    assert wide.n == 5 and not wide.done and wide.ci95_half_width_rel > 0.05
    eight = cp.cell_state(cell, _observed(wide_values + [[130.0], [75.0], [110.0]]))
    assert eight.n == 8 and eight.done and not eight.at_target(cell.stopping)  # reported as it is
    four_tight = cp.cell_state(cell, _observed([[100.0]] * 4))
    assert not four_tight.done  # the study's 5 repeats first
    # an ok row whose window got no energy (NaN) is a repeat, but not one of the interval's minimum five
    one_unmeasured = cp.cell_state(cell, _observed([[100.0]] * 4 + [[math.nan]]))
    assert one_unmeasured.n == 5 and one_unmeasured.n_with_energy == 4 and not one_unmeasured.done
    # warm-ups never reach Observed; error rows do not count and the repeat is measured again
    errors = _observed([[100.0]] * 5)
    errors["cid0"].add(5, "error", math.nan, 1.0)
    assert cp.cell_state(cell, errors).n == 5
    # an out-of-memory repeat ends the cell: repeating it would only repeat it
    assert cp.cell_state(cell, _observed([[math.nan]], statuses="oom")).done
    # a batch layout: a repeat is all its calls, its sample their summed energy; a half-done repeat is
    # finished first
    batch = _cell(n_configs=2)
    obs = _observed([[10.0, 12.0], [11.0]])
    state = cp.cell_state(batch, obs)
    assert state.n == 1 and state.samples == [22.0]
    assert [(it.config_id, it.repeat) for it in cp.next_items(batch, obs)] == [("cid1", 1)]
    assert [it.repeat for it in cp.next_items(batch, _observed([[10.0, 12.0]]))] == [1, 1]
    # a quality cell is done when each caption was measured once
    quality = _cell(n_configs=3, per_caption=True)
    part = _observed([[5.0, 6.0]])
    assert not cp.cell_state(quality, part).done
    assert [it.config_id for it in cp.next_items(quality, part)] == ["cid2"]
    assert cp.cell_state(quality, _observed([[5.0, 6.0, 7.0]])).done


def _rows(model: str, config_id: str, steps: int, seconds: list[float], run_id: str,
          start: str) -> pd.DataFrame:
    rows = []
    for r, s in enumerate(seconds):
        row = schema.empty_row() | {
            "source": "tta-energy", "run_id": run_id, "experiment": "steps", "config_id": config_id,
            "repeat": r, "model": model,
            "steps": steps, "n_prompts": 1, "waveforms_per_prompt": 1, "n_clips": 1, "duration_s": 10.0,
            "guidance_scale": 3.0, "status": "ok", "wall_s": s / 2, "meter_window_s": s,
            "gpu_energy_J": 100.0,
            "gpu_energy_method": "nvml_counter", "cpu_energy_method": "unavailable",
            "timestamp": (pd.Timestamp(start) + pd.Timedelta(seconds=20 + 10 * r)).isoformat()}
        rows.append(row)
    return schema.validate(pd.DataFrame(rows))


def test_plan_estimates_from_synthetic_rows(tmp_path):
    measured = Item(Config("steps", "tango", 10, (STUDY_PROMPT,)), 0, "a", "float32")
    unmeasured = Item(Config("steps", "tango", 20, (STUDY_PROMPT,)), 0, "b", "float32")
    other_model = Item(Config("steps", "audioldm", 10, (STUDY_PROMPT,)), 0, "c", "float32")
    cells = [cp.Cell("tango", "steps", (("steps", n),), (it,), cp.Stopping(5, 8, 0.05), False)
             for n, it in ((10, measured), (20, unmeasured))]
    frame = _rows("tango", "a", 10, [2.0, 2.0, 2.0], "20261129T120000Z-abc123", "2026-11-29T12:00:00Z")
    est = cp.estimator([frame], cells)
    assert est.generation_s("tango", measured) == pytest.approx(2.0)  # the same cell's windows
    assert est.generation_s("tango", unmeasured) == pytest.approx(2.0 * unmeasured.cost() / measured.cost())
    assert est.generation_s("audioldm", other_model) == pytest.approx(2.0)  # every model's rate
    assert est.model_build_s("tango") == pytest.approx(20.0)  # run start -> its first row
    assert est.model_build_s("audioldm") == cp.DEFAULT_BUILD_S
    campaign = replace(cp.load_campaign(H200_CAMPAIGN), out_dir=tmp_path)  # no calls logged there
    reports, est = cp.report(campaign, cells, [frame])
    assert [r.missing for r in reports] == [2, 5]  # 5 repeats at least; 3 measured (with no spread)
    assert reports[0].estimate_s == pytest.approx(2 * 2.0)
    rows, overhead = cp.plan_table(reports, est)
    assert rows == [{"experiment": "steps", "cells": 2, "done": 0, "generations_missing": 7,
                     "estimated_s": pytest.approx(4.0 + 5 * 2.0 * unmeasured.cost() / measured.cost())}]
    assert overhead == pytest.approx(20.0)


def test_a_runs_pace_is_its_median_window_against_its_configurations_mean():
    """Two runs measured the same configurations, one 20% slower: each against the other, their paces are
    1/1.2 and 1.2; a run of too few rows has no pace of its own, and configurations only one run measured
    have no say."""
    fast = pd.concat([_rows("tango", c, 10, [1.0] * 6, "20261129T120000Z-aaaaaa", "2026-11-29T12:00:00Z")
                      for c in ("a", "b")])
    slow = pd.concat([_rows("tango", c, 10, [1.2] * 6, "20261129T130000Z-bbbbbb", "2026-11-29T13:00:00Z")
                      for c in ("a", "b")])
    alone = _rows("tango", "z", 10, [9.0] * 12, "20261129T140000Z-cccccc", "2026-11-29T14:00:00Z")
    few = _rows("tango", "a", 10, [5.0] * 3, "20261129T150000Z-dddddd", "2026-11-29T15:00:00Z")
    paces = run_paces([fast, slow, alone, None])
    assert paces == {"20261129T120000Z-aaaaaa": pytest.approx(1.0 / 1.2),
                     "20261129T130000Z-bbbbbb": pytest.approx(1.2)}
    with_few = run_paces([fast, slow, few])
    assert set(with_few) == set(paces) and with_few != paces  # its rows move the means, not a pace of its own
    assert run_paces([]) == {} and run_paces([alone]) == {}
    # a plan's 100 s of generations (+ 10 s of builds) at those two paces
    assert pace_range_text(100.0, 10.0, paces).endswith("0.83x to 1.20x): 93 to 130 GPU s")
    assert pace_range_text(100.0, 10.0, {"one": 1.2}) == "" and pace_range_text(0.0, 10.0, paces) == ""


def test_a_cell_without_repeats_is_planned_with_its_models_spread(tmp_path):
    """A launch-bound model's cells spread alike: a cell with one repeat is planned for the repeats its
    model's repeated cells need (the duration sweep was planned at 53 generations with the minimum and
    needed about 140), not for the minimum."""
    items = {n: Item(Config("steps", "tango", n, (STUDY_PROMPT,)), 0, f"c{n}", "float32") for n in (10, 20)}
    cells = [cp.Cell("tango", "steps", (("steps", n),), (it,), cp.Stopping(5, 8, 0.05), False)
             for n, it in items.items()]
    spread = _rows("tango", "c10", 10, [2.0] * 3, "20261129T120000Z-abc123", "2026-11-29T12:00:00Z")
    spread["gpu_energy_J"] = [80.0, 100.0, 120.0]  # cv 0.2: the cap of 8 repeats
    single = _rows("tango", "c20", 20, [4.0], "20261129T120000Z-abc123", "2026-11-29T12:01:00Z")
    campaign = replace(cp.load_campaign(H200_CAMPAIGN), out_dir=tmp_path)
    reports, _ = cp.report(campaign, cells, [schema.validate(pd.concat([spread, single], ignore_index=True))])
    assert [r.missing for r in reports] == [5, 7]  # 8 repeats each; without the prior the second would be 4
    assert cp.prior_cvs([(c, r.state) for c, r in zip(cells, reports, strict=True)]) == {
        "tango": pytest.approx(0.2), "": pytest.approx(0.2)}


def test_a_build_costs_what_earlier_campaign_calls_spent_outside_their_windows(tmp_path):
    cell = cp.Cell("tango", "steps", (("steps", 10),),
                   (Item(Config("steps", "tango", 10, (STUDY_PROMPT,)), 0, "a", "float32"),),
                   cp.Stopping(5, 8, 0.05), False)
    frame = _rows("tango", "a", 10, [2.0, 2.0, 2.0], "20261129T120000Z-abc123", "2026-11-29T12:00:00Z")
    warm = frame.iloc[[0]].assign(is_warmup=True, meter_window_s=5.0, repeat=-1)
    frame = schema.validate(pd.concat([warm, frame], ignore_index=True))
    frame.to_csv(tmp_path / "steps.csv", index=False)
    assert cp.build_overhead_s(tmp_path) is None  # no call logged: the sweeps' start-to-first-row gap
    assert cp.estimator([frame], [cell]).model_build_s("tango") == pytest.approx(20.0)
    lines = [  # windows of the first from its rows (11 s); the second's from its line; a stopped one left out
        {"run_id": "20261129T120000Z-abc123", "wall_s": 15.0, "measured_s": 99.0, "warmup_rows": 1},
        {"run_id": "r2", "wall_s": 100.0, "measured_s": 88.0, "warmup_rows": 2},
        {"run_id": "r3", "wall_s": 100.0, "measured_s": 10.0, "warmup_rows": 1, "interrupted": True},
        {"run_id": "r4", "wall_s": 50.0, "measured_s": 50.0, "warmup_rows": 0}]
    (tmp_path / cp.RUNS_LOG).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert cp.build_overhead_s(tmp_path) == pytest.approx((4.0 + 6.0) / 2)
    est = cp.estimator([frame], [cell], cp.build_overhead_s(tmp_path))
    assert est.model_build_s("tango") == pytest.approx(5.0 + 5.0)  # + its warm-up window


def test_the_half_width_is_the_packages_t_interval():
    samples = [1.0, 2.0, 3.0, math.nan]  # non-finite samples are left out
    half = 4.302652729749462 / math.sqrt(3)  # t(0.975, 2) x sd 1 / sqrt(3)
    assert cp.ci95_half_width(samples) == pytest.approx(half, rel=1e-12)
    low, high = t_interval(np.array(samples))
    assert cp.ci95_half_width(samples) == pytest.approx((high - low) / 2, rel=1e-12)
    assert math.isnan(cp.ci95_half_width([5.0]))
    # the plan's repeats use the same critical values: cv 0.05 needs t(0.975, n - 1) / sqrt(n) <= 1
    cell = replace(_cell(), stopping=cp.Stopping(2, 20, 0.05))
    state = cp.cell_state(cell, _observed([[95.0], [105.0]]))
    cv = float(np.std([95.0, 105.0], ddof=1) / 100.0)
    needed = next(n for n in range(2, 21) if t_critical(n - 1) * cv / math.sqrt(n) <= 0.05)
    assert needed == 11 and cp.expected_missing(cell, state, _observed([[95.0], [105.0]])) == 9


def test_a_cells_seconds_per_generation_average_its_configurations_with_an_estimate():
    cell = _cell(n_configs=3)  # cid0 measured, cid1 and cid2 without any rate
    est = cp.Estimator({"cid0": 2.0}, {}, {}, math.nan)
    assert math.isnan(est.generation_s("tango", cell.items[1]))
    assert est.cell_generation_s(cell) == 2.0
    assert math.isnan(cp.Estimator({}, {}, {}, math.nan).cell_generation_s(cell))
    est = cp.Estimator({"cid0": 2.0, "cid1": 4.0}, {}, {}, math.nan)
    assert est.cell_generation_s(cell) == 3.0


def test_run_plan_and_status_count_the_same_cells_on_a_cpu(tmp_path, capsys):
    """A file without dtype declares each model's GPU precision (AudioLDM: float16); a CPU would measure
    float32, rows of other configuration ids that plan and status never count (the run said "nothing left"
    while status said "0 done"). The run is refused in one line naming the fix, before anything is made;
    with dtype = "float32" the CPU run measures the cells plan and status count, and all three agree."""
    from tta_energy.experiments.campaign_plan import PLAN_DEVICE

    tables = tmp_path / "tables"
    path = tmp_path / "c.toml"
    settings = (f'out_dir = "{tables}"\nsize = "tiny"\nidle_s = 0\nmin_window_s = 0\n'
                '[repeats]\nmin = 2\nmax = 2\n')
    entry = '[[experiment]]\nname = "steps"\nmodels = ["audioldm"]\ngrid = ["1", "2"]\n'
    path.write_text(settings + entry, encoding="utf-8")
    assert PLAN_DEVICE == "cuda"
    assert {it.dtype for c in cp.build_cells(cp.load_campaign(path)) for it in c.items} == {"float16"}
    run = ["campaign", "run", "-c", str(path), "--device", "cpu", "--no-codecarbon", "--no-progress"]
    refused(capsys, run, f"{path} sets no dtype", "(audioldm: float16), which cpu would run in float32",
            'set dtype = "float32" in the file', absent=(tables,))

    path.write_text('dtype = "float32"\n' + settings + entry, encoding="utf-8")
    main(run)
    assert "measured 4 steps" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # nothing left, the same answer as status and plan give
        main(run)
    assert exc.value.code == NOTHING_LEFT_EXIT
    assert "nothing left to measure (2 cells done)" in capsys.readouterr().out
    main(["campaign", "status", "-c", str(path), "--json"])
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(c["done"], c["generations_missing"]) for c in cells] == [(True, 0), (True, 0)]
    main(["campaign", "plan", "-c", str(path)])
    total = capsys.readouterr().out.splitlines()[-1].split()
    assert total[:4] == ["total", "2", "2", "0"]


def test_tiny_campaign_run_interleaves_resumes_honours_the_budget_and_logs(tmp_path, tiny_campaign,
                                                                         capsys):
    path = tiny_campaign
    tables = tmp_path / "tables"
    base = ["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-codecarbon", "--no-progress"]
    with pytest.raises(SystemExit) as exc:  # a model build alone would not fit: refused before anything
        main([*base, "--time-budget-s", "5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: --time-budget-s 5 s cannot cover")
    assert "the smallest useful budget is" in err[0]
    assert not list(tables.glob("*.csv")) and not (tables / cp.RUNS_LOG).exists()
    main(base)
    out = capsys.readouterr().out
    assert "measured 2 quality, 4 steps (+2 warm-up)" in out
    steps = schema.read_runs(tables / "steps.csv")
    measured = steps[~steps["is_warmup"]]
    assert len(measured) == 4 and (measured["status"] == "ok").all()
    # rounds: every cell's first repeat (both models, resident) before any second repeat
    assert list(measured["repeat"]) == [0, 0, 1, 1] and measured["model"][:2].nunique() == 2
    assert measured["run_id"].nunique() == 1 and steps["is_warmup"].sum() == 2
    # host diagnostics on every row
    assert (measured["cpu_time_s"] >= 0).all() and (measured["host_cpu_model"] != "").all()
    assert (measured["host_cpu_count"] >= 1).all() and measured["gpu_busy_fraction"].isna().all()  # no GPU
    quality = schema.read_runs(tables / "quality.csv")
    assert sorted(quality[~quality["is_warmup"]]["caption_id"]) == sorted(quality["caption_id"].unique())[:2]
    # the same command again: every cell is done; one line says so, nothing is measured, logged or written
    def files() -> dict[str, bytes]:
        return {str(p.relative_to(tables)): p.read_bytes() for p in sorted(tables.rglob("*")) if p.is_file()}

    before = files()
    with pytest.raises(SystemExit) as exc:
        main(base)
    assert exc.value.code == NOTHING_LEFT_EXIT
    assert capsys.readouterr().out.splitlines() == ["campaign tiny: nothing left to measure (3 cells done)"]
    assert files() == before
    log = [json.loads(line) for line in (tables / cp.RUNS_LOG).read_text().splitlines()]
    assert len(log) == 1 and log[0]["rows"] == {"quality": 2, "steps": 4}
    assert log[0]["measured_s"] > 0 and log[0]["wall_s"] >= log[0]["measured_s"]
    # every window as it was measured, warm-ups included (a warm-up is not counted as long as its sequel)
    windows = pd.concat([schema.read_runs(tables / f"{e}.csv") for e in ("steps", "quality")])
    windows = windows[windows["run_id"] == log[0]["run_id"]]["meter_window_s"]
    assert len(windows) == 8 and log[0]["measured_s"] == pytest.approx(windows.sum(), abs=0.002)
    assert {"command", "start_utc", "end_utc", "git_commit", "host_cpu_model", "gpu_name"} <= set(log[0])
    # where the time outside the windows went: every phase timed, together within what the windows leave
    phases = log[0]["phases_s"]
    assert list(phases) == list(cp.CALL_PHASES) and all(v >= 0 for v in phases.values())
    assert sum(phases.values()) <= log[0]["wall_s"] - log[0]["measured_s"] + 0.01
    # status: one JSON object per cell
    main(["campaign", "status", "--campaign", str(path), "--json"])
    cells = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(cells) == 3 and all(c["done"] for c in cells)
    first = next(c for c in cells if c["experiment"] == "steps")
    assert {"model", "experiment", "steps", "n", "mean_J", "ci95_half_width_rel", "done"} <= set(first)
    assert first["n"] == 2 and first["mean_J"] is None  # no GPU energy on the CPU
    assert not first["at_target"]  # done at max repeats, the interval unknown
    assert next(c for c in cells if c["experiment"] == "quality")["at_target"]  # every caption measured
    main(["campaign", "plan", "--campaign", str(path)])
    out = capsys.readouterr().out
    assert "total" in out and "at the pace" not in out  # one run: no range of paces to give


def test_a_budget_that_fits_one_cell_measures_it_and_skips_the_rest(tmp_path, tiny_campaign, capsys,
                                                                   monkeypatch):
    """A budget that fits one model's build but not the other's: the run proceeds, measures the cells that
    fit and leaves the others for the next run (builds estimated: AudioLDM 100 s, Tango 1000 s)."""
    monkeypatch.setattr(cp.Estimator, "model_build_s",
                        lambda self, model: 100.0 if model == "audioldm" else 1000.0)
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "run", "--campaign", str(tiny_campaign), "--device", "cpu", "--no-codecarbon",
              "--no-progress", "--experiment", "steps", "--time-budget-s", "500"])
    assert exc.value.code == 3 and "stopped by the time budget" in capsys.readouterr().out
    rows = schema.read_runs(tmp_path / "tables" / "steps.csv")
    measured = rows[~rows["is_warmup"]]
    assert len(measured) == 2 and set(measured["model"]) == {"audioldm"}  # both repeats of its one cell
    assert (measured["status"] == "ok").all()
    with pytest.raises(SystemExit) as exc:  # no cell fits: refused, naming the cheapest one
        main(["campaign", "run", "--campaign", str(tiny_campaign), "--device", "cpu", "--no-codecarbon",
              "--no-progress", "--model", "tango", "--time-budget-s", "500"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "tango steps 1 needs" in err
    smallest = re.search(r"the smallest useful budget is (\d+) s", err)
    assert smallest and 1000 < int(smallest.group(1)) < 1100, err  # the 1000 s build and one cell


def test_run_filters_models_and_experiments(tmp_path, tiny_campaign, capsys):
    path = tiny_campaign
    main(["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-codecarbon", "--progress",
          "--model", "tango", "--experiment", "steps"])
    bar = capsys.readouterr().err.replace("\r", "\n")  # the progress bar names model and experiment once
    assert "tango steps 1 r1 ok" in bar or "tango steps 1 r0 ok" in bar
    assert "steps steps" not in bar and "steps=" not in bar
    rows = schema.read_runs(tmp_path / "tables" / "steps.csv")
    assert set(rows["model"]) == {"tango"} and not (tmp_path / "tables" / "quality.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "run", "--campaign", str(path), "--experiment", "batch"])
    assert exc.value.code == 2 and "not in" in capsys.readouterr().err
    assert np.isfinite(rows["cpu_time_s"]).all()


def test_a_cell_that_keeps_failing_is_left_for_the_next_run(tmp_path, tiny_campaign, monkeypatch, capsys):
    from tta_energy.models.audioldm import AudioLDMAdapter

    def broken(self, request, phases=None):
        raise RuntimeError("a deterministic failure")

    monkeypatch.setattr(AudioLDMAdapter, "generate", broken)
    path = tiny_campaign
    with pytest.raises(SystemExit) as exc:  # a cell is left unfinished: exit 3, run the command again
        main(["campaign", "run", "--campaign", str(path), "--device", "cpu", "--no-codecarbon",
              "--no-progress", "--model", "audioldm", "--experiment", "steps"])
    assert exc.value.code == 3
    assert f"{cp.MAX_ERRORS_PER_RUN} error rows in this run; left for the next run" in capsys.readouterr().out
    rows = schema.read_runs(tmp_path / "tables" / "steps.csv")
    measured = rows[~rows["is_warmup"]]
    assert len(measured) == cp.MAX_ERRORS_PER_RUN and (measured["status"] == "error").all()
    assert measured["error"].str.contains("a deterministic failure").all()


def test_cost_apportions_gpu_time_and_reports_the_overhead(tmp_path, tiny_campaign, capsys):
    path = tiny_campaign
    tables = tmp_path / "tables"
    lines = [
        {"wall_s": 100.0, "measured_s": 80.0, "rows": {"steps": 10}, "world_size": 1,
         "phases_s": {"before_meter": 6.0, "meter_start": 2.0, "builds": 3.0, "idle": 3.0}},
        {"wall_s": 60.0, "measured_s": 40.0, "rows": {"steps": 1, "quality": 3}, "world_size": 2,
         "phases_s": {"before_meter": 9.0}},  # rank 0's only: not in the breakdown
        {"wall_s": 5.0, "measured_s": 0.0, "rows": {}, "world_size": 1},  # stopped by its budget
    ]
    tables.mkdir()
    text = "".join(json.dumps(line) + "\n" for line in lines) + '{"wall_s": 3'  # a line cut by a crash
    (tables / cp.RUNS_LOG).write_text(text, encoding="utf-8")
    main(["campaign", "cost", "--campaign", str(path), "--json"])
    cost = json.loads(capsys.readouterr().out)
    assert cost["calls"] == 3 and cost["gpu_s"] == pytest.approx(100 + 120 + 5)
    assert cost["measured_s"] == pytest.approx(120) and cost["overhead"] == pytest.approx(225 / 120, abs=1e-4)
    by = {row["experiment"]: row for row in cost["by_experiment"]}
    assert by["steps"]["gpu_s"] == pytest.approx(100 + 120 / 4) and by["steps"]["rows"] == 11
    assert by["quality"]["gpu_s"] == pytest.approx(120 * 3 / 4) and by["quality"]["calls"] == 1
    assert by["(none)"]["gpu_s"] == pytest.approx(5)
    assert cost["outside_windows"] == {"calls": 1, "before_meter": 6.0, "meter_start": 2.0, "builds": 3.0,
                                       "idle": 3.0, "between_and_after_windows": 6.0}  # 100 - 80 - 14
    main(["campaign", "cost", "--campaign", str(path)])
    out = capsys.readouterr().out
    assert "above the target 1.15" in out
    assert ("outside the windows, in the 1 call(s) that time it: before meter 6 s, meter start 2 s, "
            "builds 3 s, idle 3 s, between and after windows 6 s") in out
    main(["campaign", "status", "--campaign", str(path)])
    assert "3 campaign call(s): 225 GPU s" in capsys.readouterr().out
    assert cp.campaign_cost([])["overhead"] is None


def test_cost_counts_whole_device_calls_where_the_runs_log_their_start(tmp_path, tiny_campaign, capsys,
                                                                        monkeypatch):
    """A run inside a device call logs the call's start (scripts/gpu_call.sh sets it before the wheels'
    install): the cost says the overhead of the whole calls too, from that start to the end of the call's
    last run, over the windows of its runs; a run outside any call, or with no valid start, logs none."""
    from tta_energy.experiments import campaign

    start = "2026-12-06T04:00:00.000+00:00"
    lines = [  # one call of two runs (a fresh process after a lost context), then a call of one run
        {"wall_s": 400.0, "measured_s": 300.0, "start_utc": "2026-12-06T04:00:50.000+00:00",
         "end_utc": "2026-12-06T04:07:30.000+00:00", "call_start_utc": start},
        {"wall_s": 100.0, "measured_s": 90.0, "start_utc": "2026-12-06T04:07:40.000+00:00",
         "end_utc": "2026-12-06T04:09:20.000+00:00", "call_start_utc": start},
        {"wall_s": 200.0, "measured_s": 150.0, "start_utc": "2026-12-06T05:00:30.000+00:00",
         "end_utc": "2026-12-06T05:04:00.000+00:00", "call_start_utc": "2026-12-06T05:00:00.000+00:00"},
        {"wall_s": 50.0, "measured_s": 40.0},  # measured outside a device call
    ]
    cost = cp.campaign_cost(lines)
    assert cost["device_calls"] == {"calls": 2, "wall_s": 560.0 + 240.0, "measured_s": 540.0,
                                    "overhead": pytest.approx(800 / 540, abs=1e-4)}
    assert "whole device calls, for the 2 that log their start: 1.48 (800 s over 540 s of windows" in (
        cp.overhead_text(cost))
    assert cp.campaign_cost(lines[3:])["device_calls"]["overhead"] is None
    assert "whole device calls" not in cp.overhead_text(cp.campaign_cost(lines[3:]))
    monkeypatch.setenv(campaign.CALL_START_ENV, "2026-12-06T04:00:00.123+00:00")
    assert campaign.device_call_start() == "2026-12-06T04:00:00.123+00:00"
    monkeypatch.setenv(campaign.CALL_START_ENV, "yesterday")
    assert campaign.device_call_start() is None
    monkeypatch.delenv(campaign.CALL_START_ENV)
    assert campaign.device_call_start() is None
    tiny = tmp_path / "tables"
    monkeypatch.setenv(campaign.CALL_START_ENV, start)
    main(["campaign", "run", "--campaign", str(tiny_campaign), "--device", "cpu", "--no-progress",
          "--experiment", "steps", "--model", "tango"])
    logged = [json.loads(t) for t in (tiny / cp.RUNS_LOG).read_text(encoding="utf-8").splitlines()]
    assert [line["call_start_utc"] for line in logged] == [start]
    capsys.readouterr()


def test_cost_reads_each_calls_windows_from_its_rows(tmp_path, tiny_campaign, capsys):
    """A call's measured seconds are its rows' windows, warm-ups as long as they were (an older run log
    counted each warm-up as long as the row after it); a call without rows keeps its logged seconds."""
    tables = tmp_path / "tables"
    tables.mkdir()
    run_id = "20261129T120000Z-abc123"
    frame = _rows("tango", "a", 10, [2.0, 2.0, 2.0], run_id, "2026-11-29T12:00:00Z")
    frame.loc[0, ["is_warmup", "meter_window_s"]] = [True, 12.0]  # a fresh model's warm-up
    schema.write_runs(tables / "steps.csv", frame)
    lines = [{"run_id": run_id, "wall_s": 20.0, "measured_s": 6.0, "rows": {"steps": 2}},
             {"run_id": "20261129T130000Z-def456", "wall_s": 10.0, "measured_s": 8.0, "rows": {"steps": 1}}]
    (tables / cp.RUNS_LOG).write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    assert cp.call_windows_s(tables, lines) == {run_id: pytest.approx(16.0)}
    longer = schema.read_runs(tables / "steps.csv")
    longer["meter_window_s"] *= 2  # a table the caller has read already is used as given, not read again
    assert cp.call_windows_s(tables, lines, [longer]) == {run_id: pytest.approx(32.0)}
    assert cp.call_windows_s(tables, lines, [None]) == {run_id: pytest.approx(16.0)}  # the others are read
    shard = resume.shard_path(tables / "steps.csv", 1)  # merged, then a kill before its removal
    schema.write_runs(shard, frame)
    both = [schema.read_runs(tables / "steps.csv"), schema.read_runs(shard)]
    assert cp.call_windows_s(tables, lines, both) == {run_id: pytest.approx(16.0)}  # each row counts once
    shard.unlink()
    main(["campaign", "cost", "--campaign", str(tiny_campaign), "--json"])
    cost = json.loads(capsys.readouterr().out)
    assert cost["measured_s"] == pytest.approx(16.0 + 8.0)
    assert cost["overhead"] == pytest.approx(30 / 24, abs=1e-4)


def _measured(run_id: str, repeat: int, steps: int = 10) -> dict[str, object]:
    row = schema.empty_row()
    row.update(source="tta-energy", run_id=run_id, experiment="steps", model="audioldm", size="tiny",
               weights="random", dtype="float32", optimize="none", steps=steps, denoiser_calls=steps,
               n_prompts=1, waveforms_per_prompt=1, n_clips=1, duration_s=1.0, seed=0, repeat=repeat,
               is_warmup=False, status="ok", wall_s=1.0, gpu_energy_J=100.0 + repeat, config_id=f"c{steps}",
               gpu_energy_method="nvml_counter", cpu_energy_method="unavailable",
               timestamp=f"2026-12-04T10:00:0{repeat}+00:00")
    return row


def test_collect_merges_what_a_device_call_returned_once(tmp_path, tiny_campaign, capsys):
    tables = tmp_path / "tables"
    tables.mkdir()
    schema.write_runs(tables / "steps.csv", pd.DataFrame([_measured("local", 0)]))
    (tables / cp.RUNS_LOG).write_text(json.dumps({"run_id": "local", "wall_s": 10.0}) + "\n")
    returned = tmp_path / "returned"
    (returned / "traces").mkdir(parents=True)
    # the device's copy: the local row, and two rows its call measured
    schema.write_runs(returned / "steps.csv", pd.DataFrame([_measured("local", 0), _measured("call", 1),
                                                            _measured("call", 2)]))
    (returned / cp.RUNS_LOG).write_text(json.dumps({"run_id": "local", "wall_s": 10.0}) + "\n"
                                        + json.dumps({"run_id": "call", "wall_s": 20.0}) + "\n")
    (returned / "traces" / "campaign-call-rank0.csv.gz").write_bytes(b"trace")
    original = (tables / "steps.csv").read_bytes()
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    said = capsys.readouterr().out
    assert (tables / "steps.csv").read_bytes().startswith(original)  # new rows appended, old lines kept
    assert "steps.csv: +2 rows (3 in all)" in said and "1 call(s) added" in said
    assert "1 trace(s) added" in said
    merged = schema.read_runs(tables / "steps.csv")
    assert sorted(merged["repeat"]) == [0, 1, 2] and merged.duplicated(["config_id", "repeat"]).sum() == 0
    logged = [json.loads(x)["run_id"] for x in (tables / cp.RUNS_LOG).read_text().splitlines()]
    assert logged == ["local", "call"]
    assert (tables / "traces" / "campaign-call-rank0.csv.gz").read_bytes() == b"trace"

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in tables.rglob("*") if p.is_file() and ".lock" not in p.name}

    before = files()
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])  # again: nothing new
    assert "+0 rows" in capsys.readouterr().out and files() == before
    # a pair that failed here and was measured there: the error row gives way (the table is rewritten)
    failed = _measured("local", 3) | {"status": "error", "gpu_energy_J": float("nan")}
    schema.append_row(tables / "steps.csv", failed)
    schema.write_runs(returned / "steps.csv", pd.concat([schema.read_runs(returned / "steps.csv"),
                                                         pd.DataFrame([_measured("call", 3)])]))
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    merged = schema.read_runs(tables / "steps.csv")
    assert sorted(merged["repeat"]) == [0, 1, 2, 3] and (merged["status"] == "ok").all()
    capsys.readouterr()
    # rows of a run no runs log names (a call killed outright, or a sweep's copy) are merged and said
    schema.write_runs(returned / "steps.csv", pd.concat([schema.read_runs(returned / "steps.csv"),
                                                         pd.DataFrame([_measured("killed", 4)])]))
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    assert ("steps.csv: +1 rows (5 in all); 1 of them from 1 run(s) no runs log names (killed: a call killed "
            "outright, or rows measured outside the campaign)") in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "collect", str(tmp_path / "nothing"), "--campaign", str(tiny_campaign)])
    assert exc.value.code == 2 and "not a folder" in capsys.readouterr().err


def test_collect_says_a_returned_table_lost_its_last_line(tmp_path, tiny_campaign, capsys):
    """The rows before the cut are merged; the row in flight is lost, and one warning line says so."""
    returned = tmp_path / "returned"
    returned.mkdir()
    table = returned / "steps.csv"
    schema.write_runs(table, pd.DataFrame([_measured("call", 0), _measured("call", 1)]))
    text = table.read_text(encoding="utf-8")
    table.write_text(text[: text.rstrip("\n").rfind("\n") + 41], encoding="utf-8")  # the last row cut
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    out, err = capsys.readouterr()
    assert err.strip().splitlines() == [f"warning: {table}: its last line is cut (a writer was killed "
                                        "mid-line): the row in flight is lost, the rows before it are read"]
    assert "steps.csv: +1 rows (1 in all)" in out


def test_collect_writes_nothing_when_a_returned_table_is_invalid(tmp_path, tiny_campaign, capsys):
    """A valid steps table next to an invalid quality table: the error names the invalid one and the
    campaign's folder stays as it was (no table merged before the bad one is found)."""
    returned = tmp_path / "returned"
    returned.mkdir()
    schema.write_runs(returned / "steps.csv", pd.DataFrame([_measured("call", 0)]))
    (returned / "quality.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "quality.csv" in err and err.count("\n") == 1
    tables = tmp_path / "tables"
    assert not tables.exists() or not [p for p in tables.rglob("*") if p.is_file() and ".lock" not in p.name]


@pytest.mark.parametrize(("row", "said"), [
    ({"gpu_name": "NVIDIA H100 80GB HBM3"}, "measured on NVIDIA H100 80GB HBM3, not an H200"),
    ({"gpu_name": np.nan}, "measured on no GPU, not an H200"),
    ({"gpu_name": "NVIDIA H200", "size": "full"}, "size full, not tiny"),
])
def test_collect_refuses_rows_of_another_gpu_or_size(tmp_path, tiny_campaign, capsys, row, said):
    """A campaign that names its GPU takes no other GPU's rows (a sweep's folder given to collect by
    mistake), and no rows of another size or weights: one line, nothing merged."""
    tiny_campaign.write_text('gpu = "H200"\n' + tiny_campaign.read_text(encoding="utf-8"), encoding="utf-8")
    returned = tmp_path / "returned"
    returned.mkdir()
    ours = {**_measured("call", 0), "gpu_name": "NVIDIA H200"}
    schema.write_runs(returned / "steps.csv", pd.DataFrame([ours, {**_measured("call", 1), **row}]))
    with pytest.raises(SystemExit) as exc:
        main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    assert f"steps.csv: rows {said}: campaign tiny" in err and "nothing was merged" in err
    assert not (tmp_path / "tables" / "steps.csv").exists()
    schema.write_runs(returned / "steps.csv", pd.DataFrame([ours]))  # its own rows only: merged
    main(["campaign", "collect", str(returned), "--campaign", str(tiny_campaign)])
    assert len(schema.read_runs(tmp_path / "tables" / "steps.csv")) == 1


def test_gpu_campaign_script_collects_into_the_campaign_files_folder(tmp_path):
    """``scripts/gpu_campaign.sh collect`` with ``CAMPAIGN`` naming another campaign file: the returned rows,
    the call's log and the validation go to that campaign's out_dir, not to data/h200."""
    import subprocess
    import tarfile

    from tests.conftest import campaign_checkout

    repo, env = campaign_checkout(tmp_path, ("gpu_campaign.sh", "device_exits.sh"), out="../mine")
    returned = tmp_path / "returned"
    schema.write_runs(returned / "mine" / "steps.csv", pd.DataFrame([_measured("call", 0)]))
    (tmp_path / "files_at" / "campaign").mkdir(parents=True)
    (tmp_path / "files_at" / "campaign" / "log-20261204T000000.txt").write_text("the call's log\n")
    with tarfile.open(tmp_path / "files_at" / "campaign" / "h200.tar.gz", "w:gz") as tar:
        tar.add(returned / "mine" / "steps.csv", arcname="mine/steps.csv")
    done = subprocess.run(["bash", str(repo / "scripts" / "gpu_campaign.sh"), "collect",
                           str(tmp_path / "files_at")], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert len(schema.read_runs(repo / "mine" / "steps.csv")) == 1
    assert (repo / "mine" / "logs" / "campaign-log-20261204T000000.txt").is_file()
    assert not (repo / "data").exists()


@pytest.mark.parametrize("case", ["refused", "earlier calls' rows merged", "rows written, then exit 2"])
def test_a_campaign_call_whose_run_is_refused_packs_nothing_unless_its_tables_changed(tmp_path, case):
    """``scripts/gpu_campaign.sh run`` whose ``campaign run`` exits 2 (bad use: here an unknown option) having
    written nothing returns no tarball and keeps no copy in .cache/campaign-calls; a call whose tables did
    change (an earlier call's rows merged on a warm machine, or rows the run wrote before it exited 2) packs
    them as any other."""
    import subprocess
    import sys
    import tarfile

    from tests.conftest import campaign_checkout

    repo, env = campaign_checkout(tmp_path)
    if case == "earlier calls' rows merged":  # what an earlier call on this machine returned
        schema.write_runs(tmp_path / "earlier" / "tables" / "steps.csv", pd.DataFrame([_measured("call", 0)]))
        (repo / ".cache" / "campaign-calls").mkdir(parents=True)
        with tarfile.open(repo / ".cache" / "campaign-calls" / "earlier.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "earlier" / "tables" / "steps.csv", arcname="tables/steps.csv")
    elif case == "rows written, then exit 2":  # a run that wrote a row and then stopped on bad use
        fake = tmp_path / "bin" / "python"
        fake.parent.mkdir()
        fake.write_text('#!/bin/sh\nif [ "$3 $4" = "campaign run" ]; then\n  mkdir -p tables\n'
                        '  echo row >tables/steps.csv\n  exit 2\nfi\n'
                        f'exec {sys.executable} "$@"\n', encoding="utf-8")
        fake.chmod(0o755)
        env["PYTHON"] = str(fake)
    done = subprocess.run(["bash", "scripts/gpu_campaign.sh", "run", "--bogus"], cwd=repo, env=env,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2, done.stdout + done.stderr
    returned = tmp_path / "out" / "campaign" / "h200.tar.gz"
    kept = sorted(p.name for p in (repo / ".cache" / "campaign-calls").glob("*.tar.gz"))
    if case == "refused":
        assert "No such option: --bogus" in done.stdout
        assert "the campaign run was refused (exit 2) and wrote nothing: nothing packed" in done.stdout
        assert not returned.exists() and kept == [] and not (repo / "tables").exists()
        assert [p.name[:4] for p in returned.parent.iterdir()] == ["log-"]  # the call's log only
    else:
        assert "nothing packed" not in done.stdout and returned.is_file(), done.stdout + done.stderr
        with tarfile.open(returned) as tar:
            assert "tables/steps.csv" in tar.getnames()
        assert len(kept) == 1 + (case == "earlier calls' rows merged")


def test_gpu_campaign_script_names_a_returned_tarball_or_folder_it_cannot_read(tmp_path):
    """A returned h200.tar.gz that gzip cannot read (corrupt, cut short) is one line naming it, not tar's
    three; a FILES_AT that is no folder is one line saying so (it printed only the usage line); nothing is
    merged, exit 2."""
    import subprocess

    from tests.conftest import campaign_checkout

    repo, env = campaign_checkout(tmp_path, ("gpu_campaign.sh", "device_exits.sh"), out="../mine")
    tarball = tmp_path / "files_at" / "campaign" / "h200.tar.gz"
    tarball.parent.mkdir(parents=True)
    tarball.write_bytes(b"not gzip\n")
    done = subprocess.run(["bash", str(repo / "scripts" / "gpu_campaign.sh"), "collect",
                           str(tmp_path / "files_at")], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
    assert done.stderr == (f"error: {tarball}: not a readable .tar.gz (corrupt or cut short); "
                           "nothing was merged\n")
    assert sorted(p.name for p in repo.iterdir()) == ["campaigns", "scripts"]
    for files_at, wrong in ((tmp_path / "missing", "no such folder"), (tarball, "not a folder")):
        done = subprocess.run(["bash", str(repo / "scripts" / "gpu_campaign.sh"), "collect", str(files_at)],
                              env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 2 and done.stdout == "", done.stdout + done.stderr
        assert done.stderr == (f"error: FILES_AT={files_at}: {wrong}; give the folder a device call's files "
                               "came back to\n")
    assert sorted(p.name for p in repo.iterdir()) == ["campaigns", "scripts"]
