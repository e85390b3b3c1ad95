"""A levers plan measured over several device calls: units of one model and batch size with the study default
in each, first-fit packing into calls, what earlier calls hold, the price history from the sweeps' tables, and
`levers run --plan --done --time-budget-s` calls on a CPU that measure the plan once and then stop, a call
with time left going on with the next units."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pandas as pd
import pytest
from conftest import refused

from tta_energy import schema
from tta_energy.cli.exits import NOTHING_LEFT_EXIT
from tta_energy.cli.main import main
from tta_energy.levers import calls, compile_cache, experiment, plan, tables
from tta_energy.models import catalogue

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _history() -> pd.DataFrame:
    return pd.DataFrame([
        {"model": "tango", "optimize": spec, "steps": 100, "waveforms_per_prompt": batch, "wall_s": wall,
         "compile_s": comp}
        for spec, batch, wall, comp in [("none", 1, 4.0, float("nan")), ("none", 10, 27.0, float("nan")),
                                         ("max", 1, 1.0, 0.5), ("max", 10, 7.0, 2.0),
                                         ("fp32", 1, 6.0, float("nan"))]])


DECLARED = {"tango": (("none", ((100, 1), (100, 10)), 3), ("max", ((100, 1), (100, 10)), 3),
                      ("compile", ((100, 1), (100, 10)), 3))}


def test_each_unit_is_one_batch_size_with_the_default_and_split_to_fit_a_call():
    units = calls.plan_units(DECLARED, _history(), budget_s=10_000.0, overhead_s=50.0)
    assert [(u.model, u.batch, u.specs) for u in units] == [("tango", 1, ("none", "max", "compile")),
                                                           ("tango", 10, ("none", "max", "compile"))]
    # priced as a call would run it alone: the reference (not stored) in the first unit only
    at_batch_1 = {"tango": tuple((s, ((100, 1),), r) for s, _, r in DECLARED["tango"])}
    alone = plan.estimate_plan(at_batch_1, _history())
    assert units[0].seconds == pytest.approx(float(alone["total_s"].sum()))

    tight = calls.plan_units(DECLARED, _history(), budget_s=250.0, overhead_s=50.0)
    assert all(u.specs[0] == "none" for u in tight)  # every unit holds the default of its own call
    assert {s for u in tight for s in u.specs} == {"none", "max", "compile"}
    assert [u.batch for u in tight] == sorted(u.batch for u in tight)  # batch 1 (the targets) first
    assert len(tight) > 2


def test_a_unit_is_split_greedily_and_each_part_is_priced_as_a_call_would_run_it_alone():
    declared = {"tango": (*DECLARED["tango"], ("graphs", ((100, 1), (100, 10)), 3),
                          ("sdpa-flash", ((100, 10),), 3))}
    seconds = {}
    for kept in (True, False):
        units = calls.plan_units(declared, _history(), budget_s=200.0, overhead_s=50.0, references_kept=kept)
        # batch 1: three entries fit 150 s, the fourth starts a unit; batch 10: `compile` alone is larger than
        # a call and gets a unit of its own, the others one each since no two of them fit together
        assert [(u.batch, u.specs) for u in units] == [
            (1, ("none", "max", "compile")), (1, ("none", "graphs")), (10, ("none", "max")),
            (10, ("none", "compile")), (10, ("none", "graphs")), (10, ("none", "sdpa-flash"))]
        stored: set[tuple[str, int]] = set()
        for u in units:  # the same float as the whole estimate of the unit alone, not just close to it
            alone = plan.estimate_plan({u.model: u.entries}, _history(), stored_references=stored)
            assert u.seconds == float(alone["total_s"].sum())
            if kept:
                stored.add((u.model, 100))
        seconds[kept] = [u.seconds for u in units]
    # the fp32 reference (its 6 s generation and a build) is priced in every unit unless kept
    reference_s = 6.0 + plan.BUILD_S_PER_COST * catalogue.entry("tango").levers.cost
    assert seconds[False][0] == seconds[True][0]
    assert [a - b for a, b in zip(seconds[False][1:], seconds[True][1:], strict=True)] == pytest.approx(
        [reference_s] * 5)


def test_units_are_packed_first_fit_in_order_and_an_oversized_unit_gets_its_own_call():
    def unit(name: str, seconds: float) -> calls.CallUnit:
        return calls.CallUnit(name, 1, (("none", ((100, 1),), 3),), seconds)

    packed = calls.pack_calls([unit("a", 300), unit("b", 300), unit("c", 150), unit("d", 900)], 540.0, 50.0)
    assert [[u.model for u in call] for call in packed] == [["a", "c"], ["b"], ["d"]]
    text = calls.calls_text(packed, 540.0, 50.0, done=2, total=9)
    assert text[0] == "cells done by earlier calls: 2 of 9" and text[1].startswith("left: 3 device calls")
    assert "larger than one call" in text[-1] and "larger" not in text[2]
    assert calls.calls_text([], 540.0, 50.0, 9, 9)[-1] == "nothing left to measure"
    one = (("none", ((100, 1),), 3), ("max", ((100, 1),), 3))
    merged = calls.merge_units([calls.CallUnit("tango", 1, one, 1),
                                calls.CallUnit("tango", 10, (("none", ((100, 10),), 3),), 1)])
    assert merged == {"tango": (("none", ((100, 1), (100, 10)), 3), ("max", ((100, 1),), 3))}


def test_a_short_call_passes_over_a_unit_larger_than_itself_for_one_that_fits():
    """A call of 220 s was given Tango's batch-10 unit of 289 s, the plan's first: its compilation used the
    call's time and nothing was measured, where a unit of 133 s behind it would have fit whole."""
    def unit(name: str, seconds: float) -> calls.CallUnit:
        return calls.CallUnit(name, 10, (("none", ((100, 10),), 3),), seconds)

    units = [unit("tango", 289.0), unit("tango2", 259.0), unit("make-an-audio", 133.0)]
    short = calls.CallsPlan(calls.pack_calls(units, 220.0, 60.0), 0, 3, 220.0, 60.0)
    assert [[u.model for u in call] for call in short.calls] == [["make-an-audio"], ["tango"], ["tango2"]]
    assert short.next_call() == {"make-an-audio": (("none", ((100, 10),), 3),)}
    assert short.model_seconds() == {"make-an-audio": 133.0}
    # where no unit fits, the call still measures the plan's first (the time budget cuts it)
    assert calls.pack_calls(units[:2], 220.0, 60.0)[0][0].model == "tango"
    # a call that holds them keeps the plan's order
    assert [[u.model for u in c] for c in calls.pack_calls(units, 520.0, 60.0)] == [
        ["tango", "make-an-audio"], ["tango2"]]


def test_a_unit_that_a_call_of_the_plans_size_holds_waits_for_one_instead_of_filling_a_short_call(
        tmp_path):
    """A chained call of 140 s was given Tango 2's batch-10 `none, compile` unit of 286 s: it compiled for
    90 s and measured nothing. A unit larger than the call but within a call of the plan's size waits; one
    larger than both is still started (no call holds it, and its time budget cuts it)."""
    declared = {"tango": (("none", ((100, 1),), 3), ("compile", ((100, 1),), 3))}  # one unit, never split

    def plan_for(budget_s: float, full_call_s: float | None) -> calls.CallsPlan:
        earlier = calls.read_earlier_runs([tmp_path / "none*"], size="full", duration_s=10.0, seed=0)
        return calls.plan_calls(declared, _history(), earlier, size="full", budget_s=budget_s,
                                overhead_s=10.0, min_window_s=1.0, references_dir=None,
                                full_call_s=full_call_s)

    whole = plan_for(1e6, None).calls[0][0]
    short = plan_for(whole.seconds, 1e6)  # shorter than the unit with its start-up, within the plan's size
    assert short.calls == [] and short.waiting == (whole,)
    text = short.text()
    assert text[-1] == "nothing left that fits this call"
    assert text[1] == (f"waits for a call of 1000000 s (larger than this one's {whole.seconds:.0f} s): "
                       f"{whole.label()}")
    never = plan_for(whole.seconds, whole.seconds + 5.0)  # no call of the plan's size holds it either
    assert never.waiting == () and [u.specs for call in never.calls for u in call] == [whole.specs]
    assert plan_for(whole.seconds + 10.0, 1e6).calls == [[whole]]  # a call that holds it measures it


def test_an_unmeasured_compilation_is_priced_from_compilations_of_its_own_scope_and_denoiser():
    """Tango's whole-denoiser compilation at batch 10 took 90 s and its compiled blocks with fp8 255 s, where
    the blocks' share measured on AudioLDM (0.37 of a whole compilation) would price them at a third of
    that: a whole-denoiser spec is priced from whole-denoiser compilations, blocks from blocks, and Tango 2
    from Tango where it has none of its own."""
    history = pd.DataFrame([
        {"model": "tango", "optimize": spec, "steps": 100, "waveforms_per_prompt": 10, "wall_s": 5.0,
         "compile_s": seconds} for spec, seconds in (("compile", 90.0), ("max,fp8,compile-blocks", 255.0))])
    whole = plan.compile_s(history, "tango2", "compile-graphs", 10)
    assert whole == pytest.approx(90.0 * plan.whole_compilations("compile-graphs"))
    blocks = plan.compile_s(history, "tango2", "max,compile-blocks", 10)
    per_block_compilation = 255.0 / plan.whole_compilations("max,fp8,compile-blocks")
    assert blocks == pytest.approx(per_block_compilation * plan.whole_compilations("max,compile-blocks"))
    # a model with neither: batch 1 of its own scaled by the batch factor, else the catalogue estimate
    assert plan.compile_s(history, "audioldm", "compile", 10) == pytest.approx(
        plan.COMPILE_S_PER_COST * catalogue.entry("audioldm").levers.cost * plan.COMPILE_BATCH_FACTOR)


def _runs(rows: list[tuple[str, str, int, int]], folder, size="full") -> None:
    """A raw levers folder with one measured generation per (run_id, spec, batch, repeat) row given."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for run_id, spec, batch, repeat in rows:
        r = schema.empty_row()
        r.update(run_id=run_id, experiment="levers", model="tango", size=size, weights="random",
                 dtype="float32", optimize=spec, steps=100, denoiser_calls=100, n_prompts=1,
                 waveforms_per_prompt=batch, n_clips=batch, duration_s=10.0, seed=0, repeat=repeat,
                 is_warmup=False, status="ok", wall_s=1.0, gpu_energy_J=100.0, config_id=f"{spec}-{batch}",
                 gpu_energy_method="nvml_counter", cpu_energy_method="unavailable",
                 source="tta-energy")
        out.append(r)
    schema.write_runs(folder / tables.RUNS_FILE, pd.DataFrame(out))


def test_earlier_runs_read_once_take_a_folder_read_again_without_counting_a_run_twice(tmp_path):
    """A refill reads its own folder again after each run; where that folder is also among the earlier
    calls' folders, its runs must not count twice (a cell would look measured with half its repeats)."""
    declared = {"tango": (("none", ((100, 1),), 3), ("compile", ((100, 1),), 3))}
    _runs([("r1", spec, 1, i) for spec in ("none", "compile") for i in range(2)], tmp_path / "part")
    earlier = calls.read_earlier_runs([tmp_path / "part"], size="full", duration_s=10.0, seed=0)
    assert earlier.done(declared) == set()
    again = earlier.with_runs(earlier)
    assert len(again.rows) == len(earlier.rows) == 4 and again.done(declared) == set()
    # the folder's new run (r2) measured the third repeats: counted, within its own run only
    _runs([("r1", spec, 1, i) for spec in ("none", "compile") for i in range(2)]
          + [("r2", spec, 1, i) for spec in ("none", "compile") for i in range(3)], tmp_path / "part")
    read_again = calls.read_earlier_runs([tmp_path / "part"], size="full", duration_s=10.0, seed=0)
    now = earlier.with_runs(read_again)
    assert len(now.rows) == 10
    assert now.done(declared) == {("tango", "none", 100, 1), ("tango", "compile", 100, 1)}
    # runs of another model size are not read at all
    assert calls.read_earlier_runs([tmp_path / "part"], size="tiny", duration_s=10.0, seed=0).rows.empty


def test_a_compilation_measured_only_in_the_warm_ups_of_a_cut_unit_prices_the_next_call(tmp_path):
    """Tango 2's `compile` at batch 10 compiled in its first warm-up (64.5 s against 2.7 s for the second)
    and its call's time budget ran out before a generation: no levers table holds that compilation, yet the
    next call must be priced with it, made fresh by the share the compile cache served."""
    def cut_unit(folder, hits: int, misses: int) -> None:
        folder.mkdir(parents=True)
        rows = []
        for spec, walls in (("none", (3.5, 3.0)), ("compile", (64.5, 2.7))):
            for repeat, wall in enumerate(walls):
                r = schema.empty_row()
                r.update(run_id="r1", experiment="levers", model="tango2", size="full", weights="random",
                         dtype="float32", optimize=spec, steps=10, denoiser_calls=10, n_prompts=1,
                         waveforms_per_prompt=10, n_clips=10, duration_s=10.0, seed=0, repeat=repeat,
                         is_warmup=True, status="ok", wall_s=wall, gpu_energy_J=100.0 * wall,
                         config_id=f"{spec}-10", gpu_energy_method="nvml_counter",
                         cpu_energy_method="unavailable", source="tta-energy")
                rows.append(r)
        schema.write_runs(folder / tables.RUNS_FILE, pd.DataFrame(rows))
        pd.DataFrame([{"run_id": "r1", "model": "tango2", "optimize": spec, "steps": 100,
                       "waveforms_per_prompt": 10, "status": "ok", "setup_s": setup}
                      for spec, setup in (("none", 0.0), ("compile", 2.0))]).to_csv(
            folder / tables.CONFIGS_FILE, index=False)
        pd.DataFrame([{"run_id": "r1", "model": "tango2", "optimize": "compile", "waveforms_per_prompt": 10,
                       "aot_cache_hits": hits, "aot_cache_misses": misses}]).to_csv(
            folder / tables.COMPILE_FILE, index=False)

    def priced(folder, history: pd.DataFrame) -> float:
        earlier = calls.read_earlier_runs([folder], size="full", duration_s=10.0, seed=0)
        grown = calls.history_with_cut_units(history, earlier)
        return plan.compile_s(grown, "tango2", "compile", 10)

    cut_unit(tmp_path / "fresh", hits=0, misses=2)
    cut_unit(tmp_path / "quarter", hits=1, misses=3)
    cut_unit(tmp_path / "cached", hits=2, misses=1)
    empty = pd.DataFrame(columns=["model", "optimize", "steps", "waveforms_per_prompt", "wall_s",
                                  "compile_s"])
    assert priced(tmp_path / "fresh", empty) == pytest.approx(61.8 + 2.0)
    assert priced(tmp_path / "quarter", empty) == pytest.approx((61.8 + 2.0) / 0.75)
    # mostly from the cache: it says nothing of a fresh machine, so the usual estimate prices it
    assert priced(tmp_path / "cached", empty) == plan.compile_s(empty, "tango2", "compile", 10)
    # a compilation a levers table already holds for the cell keeps its price
    measured = pd.DataFrame([{"model": "tango2", "optimize": "compile", "steps": 100,
                              "waveforms_per_prompt": 10, "wall_s": 2.5, "compile_s": 90.0}])
    assert priced(tmp_path / "fresh", measured) == 90.0


def test_a_cell_is_done_with_its_repeats_and_the_default_in_the_same_run(tmp_path):
    _runs([("r1", "max", 1, i) for i in range(3)] + [("r1", "none", 1, i) for i in range(3)]
          + [("r1", "max", 10, i) for i in range(3)] + [("r2", "none", 10, i) for i in range(3)]
          + [("r3", "compile", 1, i) for i in range(2)] + [("r3", "none", 1, i) for i in range(3)]
          + [("r4", "none", 10, i) for i in range(3)], tmp_path / "part-a")
    pd.DataFrame([{"run_id": "r4", "model": "tango", "optimize": "compile", "steps": 100,
                   "waveforms_per_prompt": 10, "status": "same as max"}]).to_csv(
        tmp_path / "part-a" / tables.CONFIGS_FILE, index=False)
    done = calls.read_earlier_runs([tmp_path / "part-a"], size="full", duration_s=10.0, seed=0).done(DECLARED)
    # max at batch 10 has its repeats, but its run has no default: not done; compile at batch 1: 2 of 3
    assert done == {("tango", "none", 100, 1), ("tango", "max", 100, 1), ("tango", "none", 100, 10),
                    ("tango", "compile", 100, 10)}
    left = calls.remaining(DECLARED, done)
    # the default is measured again wherever something else is left at its cell
    assert left == {"tango": (("none", ((100, 1), (100, 10)), 3), ("max", ((100, 10),), 3),
                              ("compile", ((100, 1),), 3))}
    # other sizes' runs count for nothing: neither their rows nor what they found about a spec
    assert calls.read_earlier_runs([tmp_path / "part-a"], size="tiny", duration_s=10.0, seed=0).done(
        DECLARED) == set()


def test_the_sweeps_tables_price_the_study_default(tmp_path):
    rows = []
    cases = [(4.0, "float32", False, 1, "ok"),
             (6.0, "float32", False, 1, "ok"),
             (99.0, "float32", True, 1, "ok"),  # a warm-up
             (50.0, "float16", False, 1, "ok"),  # another precision
             (70.0, "float32", False, 10, "ok"),  # ten prompts
             (80.0, "float32", False, 1, "error")]
    for wall, dtype, warm, n_prompts, status in cases:
        r = schema.empty_row()
        r.update(model="tango", size="full", dtype=dtype, optimize="none", steps=100, n_prompts=n_prompts,
                 waveforms_per_prompt=1, duration_s=10.0, is_warmup=warm, status=status, wall_s=wall,
                 source="tta-energy", gpu_energy_method="nvml_counter", cpu_energy_method="unavailable")
        rows.append(r)
    schema.write_runs(tmp_path / "steps.csv", pd.DataFrame(rows))
    h = plan.read_history([tmp_path / "steps.csv"], size="full", duration_s=10.0)
    # the median of the measured fp32 (Tango's study precision) generations with one prompt
    keys = ["model", "optimize", "steps", "waveforms_per_prompt"]
    assert h[keys].values.tolist() == [["tango", "none", 100, 1]]
    assert h["wall_s"].tolist() == [5.0]
    assert plan.read_history([tmp_path / "steps.csv"], size="full", duration_s=5.0).empty


def test_a_call_with_time_left_measures_the_next_unit_as_a_run_of_its_own_then_the_plan_is_done(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiment, "_describe_flops", lambda *_args: {})  # FLOPs are not this test's subject
    # a call's start-up priced at 200 s: with the catalogue's ~22 s per unit (one batch size) a call of 240 s
    # holds one unit, and the second fits the time the tiny replica leaves however slow this machine is
    monkeypatch.setattr(plan, "CALL_START_S", 200.0)
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "channels-last"]\nsteps = [2]\n'
                         'batches = [1, 2]\nrepeats = 1\nduration_s = 1.0\n')
    base = ["levers", "run", "--plan", str(plan_file), "--size", "tiny", "--device", "cpu", "--idle-s", "0",
            "--ceiling-s", "0.02", "--ceiling-n", "32", "--min-window-s", "0", "--no-profile", "--no-report",
            "--references", str(tmp_path / "refs"), "--done", str(tmp_path / "part*"), "--history", "",
            "--time-budget-s", "240"]
    main([*base, "--dry-run"])
    said = capsys.readouterr().out
    assert "left: 2 device calls" in said and "call 1" in said and "audioldm batch 1" in said
    main([*base, "--out-dir", str(tmp_path / "part1")])
    said = capsys.readouterr().out
    # the tiny replica takes seconds, not the ~220 predicted: the call goes on with the second call's unit
    assert "this call: audioldm batch 1: none, channels-last" in said
    assert "s of the time budget left: run " in said and "audioldm batch 2: none, channels-last" in said
    runs = schema.read_runs(tmp_path / "part1" / tables.RUNS_FILE)
    measured = runs[~runs["is_warmup"].astype(bool)]
    cells = {run_id: set(zip(group["optimize"], group["waveforms_per_prompt"].astype(int), strict=True))
             for run_id, group in measured.groupby("run_id")}
    # two runs, each with the default it is reduced against; the reference was stored by the first
    assert sorted(cells.values(), key=len, reverse=True) == [
        {("fp32", 1), ("none", 1), ("channels-last", 1)}, {("none", 2), ("channels-last", 2)}]
    ceilings = pd.read_csv(tmp_path / "part1" / "levers_ceiling.csv")
    assert set(ceilings.loc[ceilings["when"] == "start", "run_id"]) == set(cells)  # each run its ceiling
    with pytest.raises(SystemExit) as exc:
        main([*base, "--out-dir", str(tmp_path / "part2")])
    assert exc.value.code == NOTHING_LEFT_EXIT
    assert "nothing left to measure (4 of 4 cells done)" in capsys.readouterr().out
    assert not (tmp_path / "part2").exists()


def test_a_call_too_short_for_every_unit_left_is_refused_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plan, "CALL_START_S", 200.0)  # the catalogue's ~22 s unit does not fit 210 s with it
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('[levers]\nmodels = ["audioldm"]\nspecs = ["none", "channels-last"]\nsteps = [2]\n'
                         'batches = [1]\nrepeats = 1\nduration_s = 1.0\ncall_budget_s = 600\n')
    said = refused(capsys, [
        "levers", "run", "--plan", str(plan_file), "--size", "tiny", "--device", "cpu", "--idle-s", "0",
        "--ceiling-s", "0.02", "--min-window-s", "0", "--no-report", "--references", str(tmp_path / "refs"),
        "--done", str(tmp_path / "part*"), "--history", "", "--time-budget-s", "210",
        "--out-dir", str(tmp_path / "part1")], absent=(tmp_path / "part1",))
    assert said.startswith(f"error: --time-budget-s 210 s: no unit left of levers plan {plan_file} fits it; "
                           "1 unit(s) wait for a call of 600 s, the smallest ")
    assert said.endswith("(0 of 2 cells done)")


def _refill_opts(tmp_path, declared) -> experiment.LeversOptions:
    return experiment.LeversOptions(models=tuple(declared), declared=declared, out_dir=tmp_path / "part",
                                    size="full", device="cpu", idle_s=0.0, ceiling_s=5.0)


NO_RUNS = calls.read_earlier_runs([], size="full", duration_s=10.0, seed=0)
FIRST = {"tango": (("none", ((100, 1),), 3), ("max", ((100, 1),), 3))}
MEASURED_FIRST = [("r1", spec, 1, i) for spec in ("none", "max") for i in range(3)]


def test_a_refill_takes_the_next_units_that_fit_the_time_left_and_never_retries_a_cell(tmp_path):
    opts = _refill_opts(tmp_path, DECLARED)
    _runs(MEASURED_FIRST, tmp_path / "part")  # the call's first run measured its cells
    refill = calls.plan_refill(opts, _history(), NO_RUNS, first=FIRST)
    # left at batch 1: compile, with the default it is reduced against; the new run's ceiling comes first
    left = {"tango": (("none", ((100, 1),), 3), ("compile", ((100, 1),), 3))}
    unit = calls.plan_units(left, _history(), budget_s=1e9, overhead_s=0.0, references_kept=False)[0]
    needed = unit.seconds + opts.ceiling_s
    assert refill(needed - 1.0) is None
    nxt = refill(needed + 1.0)
    assert nxt is not None and nxt.declared == left and nxt.model_seconds == {"tango": unit.seconds}
    # batch 1 was tried (by the first run and this one): what comes next is batch 10, whatever time is left
    later = refill(10_000.0)
    assert later is not None and {b for _, cells, _ in later.declared["tango"] for _, b in cells} == {10}
    assert refill(10_000.0) is None  # everything tried: a failing cell is not retried within the call


def test_a_refill_passes_over_a_unit_too_large_and_nothing_of_what_failed_comes_back(tmp_path):
    declared = {**DECLARED, "audioldm": (("none", ((10, 1),), 3), ("max", ((10, 1),), 3))}
    opts = _refill_opts(tmp_path, declared)
    _runs(MEASURED_FIRST, tmp_path / "part")
    small = calls.plan_units({"audioldm": declared["audioldm"]}, _history(), budget_s=1e9, overhead_s=0.0,
                             references_kept=False)[0]
    big = calls.plan_units({"tango": (("none", ((100, 1),), 3), ("compile", ((100, 1),), 3))}, _history(),
                           budget_s=1e9, overhead_s=0.0, references_kept=False)[0]
    assert small.seconds < big.seconds
    # tango's compile comes first in the plan but does not fit: AudioLDM's smaller unit behind it does
    nxt = calls.plan_refill(opts, _history(), NO_RUNS, first=FIRST)(small.seconds + opts.ceiling_s + 1.0)
    assert nxt is not None and nxt.declared == {"audioldm": declared["audioldm"]}
    # a model that failed in the call gets nothing more in it
    failed_tango = calls.plan_refill(opts, _history(), NO_RUNS, first=FIRST)(10_000.0, {"tango"})
    assert failed_tango.models == ("audioldm",)
    # a default the call did not finish (no rows: an error, out of memory, the deadline): nothing more at
    # its (steps, batch), so tango's batch-1 compile is not tried; batch 10 and AudioLDM are
    (tmp_path / "part" / tables.RUNS_FILE).unlink()
    rest = calls.plan_refill(opts, _history(), NO_RUNS, first=FIRST)(10_000.0)
    assert rest is not None
    assert {(m, b) for m, entries in rest.declared.items() for _, cells, _ in entries for _, b in cells} == {
        ("tango", 10), ("audioldm", 1)}


def test_done_needs_a_plan_and_folders(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["levers", "run", "-m", "audioldm", "--done", str(tmp_path), "--size", "tiny",
              "--device", "cpu"])
    assert exc.value.code == 2 and "--done needs --plan" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["levers", "run", "--plan", "campaigns/h200_levers.toml", "--dry-run", "--done",
              str(tmp_path / "missing")])
    assert exc.value.code == 2 and "missing is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # a call too short for its own start-up holds no cell
        main(["levers", "run", "--plan", "campaigns/h200_levers.toml", "--dry-run", "--time-budget-s", "20"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "cannot hold any cell" in err[0]


@pytest.mark.parametrize(("option", "value", "said"), [
    ("--time-budget-s", "-5", "--time-budget-s must be > 0"),
    ("--time-budget-s", "0", "--time-budget-s must be > 0"),
    ("--idle-s", "-1", "--idle-s must be >= 0"), ("--size", "huge", "unknown size 'huge'"),
    ("--device", "tpu", "unknown device 'tpu'")])
def test_a_bad_option_is_refused_before_anything_runs(tmp_path, capsys, option, value, said):
    """A budget of 0 would otherwise fall back to the plan's budget, a negative one price calls of "at most
    -5 s", and an unknown size run a call that measures nothing."""
    base = {"--size": "tiny", "--device": "cpu", "--out-dir": str(tmp_path / "raw"), option: value}
    with pytest.raises(SystemExit) as exc:
        main(["levers", "run", "-m", "audioldm", *(t for item in base.items() for t in item)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and said in err and err.count("\n") == 1
    assert not (tmp_path / "raw").exists()


def test_a_model_may_use_what_the_later_models_of_the_call_do_not_need():
    from tta_energy.levers.experiment import model_allowance_s

    # predicted 176 s and 211 s with 460 s left: AudioLDM may go on until 249 s, not stop at its 209 s share
    assert model_allowance_s(460.0, [176.0, 211.0], in_seconds=True) == pytest.approx(249.0)
    # a budget that does not cover the predictions: shares in proportion, as relative costs always do
    assert model_allowance_s(300.0, [200.0, 200.0], in_seconds=True) == pytest.approx(150.0)
    assert model_allowance_s(460.0, [1.0, 1.0], in_seconds=False) == pytest.approx(230.0)
    assert model_allowance_s(-5.0, [1.0], in_seconds=True) == 0.0


def test_compile_time_by_phase_names_the_phases_of_a_compilation():
    import torch

    from tta_energy.levers.compile_cache import compile_time_by_phase

    torch.compile(torch.nn.Linear(4, 4), backend="eager")(torch.randn(2, 4))
    phases = compile_time_by_phase(top=3)
    assert 0 < len(phases) <= 3 and all(seconds >= 0 for _, seconds in phases)
    assert phases == sorted(phases, key=lambda kv: -kv[1])
    # Dynamo's own timers: its compilation entry point and the tracing of the module's bytecode
    names = [name for name, _ in compile_time_by_phase(top=50)]
    assert any("compile" in n for n in names) and "bytecode_tracing" in names


def test_compile_cache_counts_say_what_was_compiled_and_what_came_from_the_cache():
    import torch
    import torch._functorch.config
    from torch._dynamo.utils import counters

    from tta_energy.levers.compile_cache import compile_cache_counts

    torch._dynamo.reset()
    graphs = counters["stats"]["unique_graphs"]
    hits = counters["aot_autograd"]["autograd_cache_hit"]
    with torch._functorch.config.patch(enable_autograd_cache=False):
        torch.compile(torch.nn.Linear(4, 4), backend="aot_eager")(torch.randn(2, 4))
        torch.compile(torch.nn.Linear(4, 4), backend="aot_eager")(torch.randn(3, 4))
    counts = compile_cache_counts()
    assert set(counts) == {"graphs", "aot_cache_hits", "aot_cache_misses"}
    assert counts["graphs"] == graphs + 2 and counts["aot_cache_hits"] == hits  # no cache: nothing hit


def test_cache_use_counts_a_compilation_the_cache_served_apart_from_one_compiled_anew(tmp_path, monkeypatch):
    """A later call on a machine still warm (or a model of the same architecture compiled earlier in the
    process) finds its graphs in the compile cache: the count tells those compilations apart."""
    import torch

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    counts = []
    for _ in range(2):
        torch._dynamo.reset()
        before = compile_cache.compile_cache_counts()
        with torch.no_grad():
            torch.compile(torch.nn.Linear(4, 4))(torch.randn(2, 4))
        counts.append(compile_cache.cache_use_since(before))
    torch._dynamo.reset()
    (fresh_hits, fresh_misses), (warm_hits, warm_misses) = counts
    assert fresh_hits == 0 and fresh_misses >= 1
    assert warm_hits >= 1 and warm_misses == 0


def test_a_compiled_configuration_writes_its_cache_use_per_batch_size_and_applying_counts_once(tmp_path):
    from conftest import tiny_levers_options

    from tta_energy.levers.spec import parse_levers

    run = experiment.ModelRun("audioldm", tiny_levers_options(tmp_path, "a"), "r1", None, {}, "")
    for spec in ("max,compile-graphs", "graphs"):
        prepared = experiment.Prepared(experiment.LeverPlan(parse_levers(spec), ((2, 1), (2, 10)), 1), None,
                                       None, "float16", setup_cache=(2, 3))
        for batch, warm in ((1, (0, 4)), (10, (5, 0))):
            experiment._write_compile_row(run, prepared, batch, warm)
    rows = tables.read_side_table(run.out_dir / tables.COMPILE_FILE)
    assert set(rows["optimize"]) == {"max,compile-graphs"}  # CUDA graphs alone compile nothing
    by_batch = rows.set_index("waveforms_per_prompt")
    # applying (the attention candidates' compilations, at the smallest batch size) counts in batch 1 only
    assert by_batch.loc[1, ["aot_cache_hits", "aot_cache_misses"]].tolist() == [2, 7]
    assert by_batch.loc[10, ["aot_cache_hits", "aot_cache_misses"]].tolist() == [5, 0]


def test_a_compilation_the_cache_served_prices_no_call(tmp_path):
    """A call priced on a compilation the cache served (9 s for Tango's `compile` after Tango 2's, against
    about 40 s anew) ran out of its time before it measured anything: pricing takes the longest compilation
    done anew, one partly served scaled up to a fresh machine, and a table that predates the count has every
    one."""
    levers_csv = tmp_path / "levers.csv"
    rows = [("compile", 1, 40.0, 0.0), ("compile", 1, 9.0, 1.0), ("compile", 1, 35.0, float("nan")),
            ("compile-graphs", 1, 5.0, 0.9), ("max,compile-blocks", 10, 160.0, 0.2)]
    pd.DataFrame([{"model": "tango", "optimize": spec, "steps": 100, "waveforms_per_prompt": batch,
                   "wall_s": 1.0, "compile_s": comp, "duration_s": 10.0, "compile_cache_hit_share": share}
                  for spec, batch, comp, share in rows]).to_csv(levers_csv, index=False)
    history = plan.read_history([levers_csv])
    by_spec = history.set_index("optimize")["compile_s"]
    assert by_spec["compile"] == 40.0
    assert pd.isna(by_spec["compile-graphs"])  # served from the cache only: priced as an unmeasured spec
    assert plan.compile_s(history, "tango", "compile-graphs", 1) == pytest.approx(40.0)
    # a fifth of its graphs served: a fresh machine pays at least what was measured, priced 160 / 0.8
    assert by_spec["max,compile-blocks"] == pytest.approx(200.0)
    # Tango 2 (Tango's denoiser, other weights) is priced by Tango's compilation of the same spec and batch
    assert plan.compile_s(history, "tango2", "max,compile-blocks", 10) == pytest.approx(200.0)
    assert plan.same_denoiser("tango2") == ("tango2", "tango")
    assert plan.same_denoiser("audioldm") == ("audioldm",)
    # a table that predates the count: Tango's 9 s, served by Tango 2's graphs, does not price either model;
    # the longest of the denoiser's does
    twins = pd.DataFrame([{"model": model, "optimize": "compile", "steps": 100, "waveforms_per_prompt": 1,
                           "wall_s": 1.0, "compile_s": comp} for model, comp in (("tango", 9.2),
                                                                                 ("tango2", 40.2))])
    assert [plan.compile_s(twins, m, "compile", 1) for m in ("tango", "tango2")] == [40.2, 40.2]
    old = tmp_path / "old.csv"
    pd.read_csv(levers_csv).drop(columns="compile_cache_hit_share").to_csv(old, index=False)
    assert plan.read_history([old]).set_index("optimize").loc["compile", "compile_s"] == 40.0  # the longest


def test_plan_progress_counts_the_declared_cells_its_call_folders_settle(tmp_path):
    plan_file = tmp_path / "campaigns" / "tango_levers.toml"
    plan_file.parent.mkdir()
    plan_file.write_text('[levers]\nmodels = ["tango"]\nspecs = ["none", "compile"]\nsteps = [100]\n'
                         'batches = [1, 10]\nrepeats = 2\nduration_s = 10.0\nseed = 0\n'
                         'out_dir = "../data/tango"\n', encoding="utf-8")
    assert calls.plan_progress(plan_file) == (0, 4)  # no call yet: nothing settled of 2 specs x 2 batches
    parts = tmp_path / "data" / "tango" / "levers"
    _runs([("r1", spec, 1, i) for spec in ("none", "compile") for i in range(2)], parts / "partplan-a")
    _runs([("r2", "none", 10, 0)], parts / "partplan-b")  # one repeat of two: not yet measured
    assert calls.plan_progress(plan_file) == (2, 4)
    # the same folders under another table folder: what the docs read with their own data folder
    elsewhere = tmp_path / "copy"
    shutil.copytree(tmp_path / "data" / "tango", elsewhere)
    assert calls.plan_progress(plan_file, elsewhere) == (2, 4)
    assert calls.plan_progress(plan_file, tmp_path / "empty") == (0, 4)


def test_a_model_the_plan_does_not_plan_is_one_clear_error(tmp_path, capsys):
    plan_file = tmp_path / "tango_levers.toml"
    plan_file.write_text('[levers]\nmodels = ["tango"]\nspecs = ["none"]\nsteps = [100]\nbatches = [1]\n'
                         'repeats = 3\nduration_s = 10.0\nseed = 0\n', encoding="utf-8")
    refused(capsys, ["levers", "run", "--plan", str(plan_file), "--model", "audioldm", "--dry-run",
                     "--out-dir", str(tmp_path / "out")],
            f"--model names audioldm, which {plan_file} does not plan; it plans tango",
            absent=(tmp_path / "out",))


def test_models_of_one_denoiser_share_a_call_and_the_second_is_priced_without_the_first_ones_compilations():
    """Tango 2 runs the graphs compiled for Tango earlier in the same process (0.16 s against 43.4 s on the
    H100): the same specs of both are cut into one call, Tango 2's unit right after Tango's and priced
    without the compilations Tango's unit makes."""
    history = _history().assign(compile_s=lambda h: h["compile_s"].where(h["optimize"] != "max", 30.0))
    both = {m: (("none", ((100, 1),), 3), ("max", ((100, 1),), 3), ("graphs", ((100, 1),), 3))
            for m in ("tango", "tango2")}
    units = calls.plan_units(both, history, budget_s=10_000.0, overhead_s=50.0)
    assert [(u.model, u.specs, u.follows) for u in units] == [
        ("tango", ("none", "max", "graphs"), None), ("tango2", ("none", "max", "graphs"), "tango")]
    alone = plan.estimate_plan({"tango2": both["tango2"]}, history)
    compiled = float(alone.loc[alone["optimize"] == "max", "compile_s"].sum())
    assert compiled == 30.0
    assert units[1].seconds == pytest.approx(float(alone["total_s"].sum()) - compiled)
    assert "reusing tango's compilations" in units[1].label()
    # packed whole: a call that has room for Tango's unit but not for both takes neither
    other = calls.CallUnit("audioldm", 1, (("none", ((100, 1),), 3),), 10_000 - 50 - units[0].seconds)
    packed = calls.pack_calls([other, *units], 10_000.0, 50.0)
    assert [[u.model for u in call] for call in packed] == [["audioldm"], ["tango", "tango2"]]
    assert calls.merge_units(packed[1]).keys() == {"tango", "tango2"}  # Tango first: it compiles
    assert list(calls.merge_units(packed[1])) == ["tango", "tango2"]

    # a spec whose two units fit no call together is cut model by model, each priced with its compilation
    pair_s = sum(u.seconds for u in calls.plan_units({m: both[m][:2] for m in both}, history,
                                                     budget_s=10_000.0, overhead_s=0.0))
    tight = calls.plan_units({m: both[m][:2] for m in both}, history, budget_s=pair_s - 1.0, overhead_s=0.0)
    assert [(u.model, u.follows) for u in tight] == [("tango", None), ("tango2", None)]
    assert tight[1].seconds == pytest.approx(float(plan.estimate_plan(
        {"tango2": both["tango2"][:2]}, history)["total_s"].sum()))
    # nothing compiled: the units are cut together but packed as any others
    uncompiled = calls.plan_units({m: both[m][::2] for m in both}, history, budget_s=10_000.0,
                                  overhead_s=50.0)
    assert [u.follows for u in uncompiled] == [None, None]
    # a refill of a call whose process compiled Tango's `max` at batch 1 prices Tango 2's without it
    compiled = {("tango", "max", 1), ("tango", "max", 10), ("audioldm", "graphs", 1)}
    later = calls.plan_units({"tango2": both["tango2"]}, history, budget_s=10_000.0, overhead_s=50.0,
                             compiled_before=compiled)
    assert [(u.follows, u.seconds) for u in later] == [(None, pytest.approx(units[1].seconds))]
