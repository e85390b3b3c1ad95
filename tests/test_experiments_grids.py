"""Sweep definitions: the study's grids, config ids, run order, caption files, sharding, resume rules."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import ROOT
from tta_energy import schema
from tta_energy.errors import TtaError
from tta_energy.experiments import distributed, resume
from tta_energy.experiments.grids import (
    EXPERIMENTS,
    GridRequest,
    SweepError,
    audio_path,
    build_configs,
    check_repeats,
    config_id,
    load_captions,
    run_order,
)
from tta_energy.study import CLIPS_PER_REPEAT, STUDY_PROMPT


def configs(experiment: str, model: str = "audioldm", **kw):
    return build_configs(GridRequest(experiment=experiment, model=model, **kw))


def test_study_grids_and_defaults():
    steps = configs("steps")
    assert [c.steps for c in steps] == [10, 25, 50, 100, 150, 200]
    assert all(c.prompts == (STUDY_PROMPT,) and c.n_clips == 1 for c in steps)
    assert EXPERIMENTS["steps"].repeats == 5 and EXPERIMENTS["batch"].repeats == 5
    assert EXPERIMENTS["quality"].repeats == 1


def test_batch_makes_ten_clips_per_layout_and_a_distinct_prompt_batch():
    cfgs = configs("batch")
    assert {c.steps for c in cfgs} == {100}
    by_layout: dict[tuple[int, int], list] = {}
    for c in cfgs:
        by_layout.setdefault((c.n_prompts, c.waveforms_per_prompt), []).append(c)
    assert sorted(by_layout) == [(1, 1), (1, 2), (1, 5), (1, 10), (10, 1)]
    for calls in by_layout.values():
        assert sum(c.n_clips for c in calls) == CLIPS_PER_REPEAT
        assert sorted(c.call_index for c in calls) == list(range(len(calls)))
    distinct = by_layout[(10, 1)][0]
    assert len(set(distinct.prompts)) == 10
    for grid in ("3", "0", "p0", "20"):
        with pytest.raises(SweepError, match=f"batch grid value '{grid}': use B waveforms .* 1, 2, 5, 10"):
            configs("batch", grid=[grid])


@pytest.mark.parametrize("grid", ["5x2", "p", "px", "2.5"])
def test_a_batch_grid_value_of_no_allowed_form_lists_the_forms(grid):
    """The help describes the batch as 5x2 (calls x waveforms): a value written so is told the forms."""
    with pytest.raises(SweepError) as exc:
        configs("batch", grid=[grid])
    said = str(exc.value)
    assert f"batch grid value {grid!r} is not an integer or pN" in said
    assert "B and N one of 1, 2, 5, 10" in said and "--grid 1,2,5,10,p10" in said


def test_new_sweeps():
    assert [c.duration_s for c in configs("duration")] == [2.5, 5.0, 10.0, 20.0]
    assert [c.guidance_scale for c in configs("guidance")] == [None, 1.0]
    assert [c.dtype for c in configs("precision", grid=["fp32", "fp16", "bf16"])] == ["float32", "float16",
                                                                                      "bfloat16"]
    assert all(c.steps == 100 for c in configs("precision"))
    assert all(c.steps == 30 for c in configs("guidance", steps=30))


@pytest.mark.parametrize(("experiment", "grid", "label"), [
    ("steps", ["10"], "steps 10"),
    ("duration", ["2.5"], "duration 2.5 s"),
    ("guidance", ["default"], "guidance default"),
    ("precision", ["bf16"], "precision bfloat16"),
    ("batch", ["2"], "batch 1 prompt(s) x 2"),
    ("quality", ["25"], "quality audiocaps steps 25"),
])
def test_a_configuration_label_names_its_experiment_once(experiment, grid, label):
    """Progress lines and notes show the label: the experiment's word appears once in it."""
    first = configs(experiment, grid=grid, captions=("audiocaps",), limit=1)[0]
    assert first.label == label


@pytest.mark.parametrize(("experiment", "grid", "message"), [
    ("steps", ["ten"], "not an integer"), ("steps", ["0"], ">= 1"),
    ("steps", ["10", "10"], "make the same configuration"),
    ("duration", ["-1"], "> 0"), ("duration", ["inf"], "must be a finite number"),
    ("duration", ["nan"], "duration grid value must be a finite number, got nan"),
    ("guidance", ["x"], "not a number or 'default'"), ("guidance", ["-1"], ">= 0"),
    ("guidance", ["nan"], "guidance grid value must be a finite number"),  # a NaN scale: every waveform NaN
    ("batch", ["0"], "use B waveforms"), ("batch", ["p0"], "use B waveforms"),
    ("precision", ["fp8"], "unknown dtype"),
])
def test_bad_grid_values_are_one_line_errors(experiment, grid, message):
    with pytest.raises(SweepError, match=message):
        configs(experiment, grid=grid)


@pytest.mark.parametrize(("experiment", "grid", "message"), [
    ("steps", ["5", "05"], "steps grid values 5 and 05 make the same configuration (steps 5): keep one"),
    ("quality", ["1", "01"], "quality grid values 1 and 01 make the same configuration (steps 1)"),
    ("batch", ["2", "02"], "batch grid values 2 and 02 make the same configuration (batch 2)"),
    ("batch", ["p2", "P2"], "batch grid values p2 and P2 make the same configuration (batch p2)"),
    ("duration", ["5", "5.0"], "duration grid values 5 and 5.0 make the same configuration (duration 5.0)"),
    ("guidance", ["1", "1.0"], "guidance grid values 1 and 1.0 make the same configuration (guidance 1.0)"),
    ("precision", ["fp16", "float16"], "precision grid values fp16 and float16 make the same configuration"),
])
def test_grid_values_that_mean_the_same_are_refused(experiment, grid, message):
    """Two spellings of one value would measure one configuration twice (the campaign's rule too)."""
    with pytest.raises(SweepError) as exc:
        configs(experiment, grid=grid)
    assert message in str(exc.value)
    assert len(configs(experiment, grid=grid[:1])) >= 1  # either spelling alone is fine


def test_unknown_experiment():
    with pytest.raises(SweepError, match="unknown experiment"):
        configs("loudness")


def test_config_id_is_stable_and_sensitive():
    """The ids of the committed run tables are still what their configurations hash to (a resumed sweep
    finds its finished pairs by them), and each part of the configuration changes the id."""
    table = pd.read_csv(ROOT / "data" / "h200" / "steps.csv")
    table = table[(table["source"] == "tta-energy") & (table["model"] == "audioldm")]
    committed = dict(zip(table["steps"], table["config_id"], strict=True))
    study = dict(size="full", weights="random", levers="none", dtype="float16")
    assert {c.steps: config_id(c, **study) for c in configs("steps")} == committed
    a, b = configs("steps")[:2]
    kw = dict(size="tiny", weights="random", levers="none", dtype="float32")
    assert config_id(a, **kw) != config_id(b, **kw)
    assert config_id(a, **kw) != config_id(a, **{**kw, "dtype": "float16"})
    assert config_id(a, **kw) != config_id(a, **{**kw, "weights": "/w"})
    assert len(config_id(a, **kw)) == 16


def test_run_order_is_seeded_random_within_each_repeat():
    cfgs = configs("steps")
    items = run_order(cfgs, repeats=3, seed=0)
    assert len(items) == 18
    assert [r for _, r in items] == [0] * 6 + [1] * 6 + [2] * 6
    orders = [[c.steps for c, r in items if r == k] for k in range(3)]
    assert all(sorted(o) == [10, 25, 50, 100, 150, 200] for o in orders)
    assert any(o != [10, 25, 50, 100, 150, 200] for o in orders)  # not the study's ascending order
    assert run_order(cfgs, 3, seed=0) == items
    assert run_order(cfgs, 3, seed=1) != items
    with pytest.raises(SweepError, match=r"^--repeats must be >= 1, got 0$"):
        run_order(cfgs, 0, seed=0)  # the rule check_options applies to --repeats (grids.check_repeats)
    assert check_repeats(2) == 2


def test_the_studys_repeats_and_steps_come_from_study_py():
    """The study's protocol (arXiv 2505.07615): 5 repeats, 100 steps where the grid does not vary them; each
    experiment, the campaign's minimum, the model defaults, the efficiency table and the help read them."""
    import typer

    from tta_energy.analysis.efficiency import GENERATION_STEPS
    from tta_energy.cli.main import app
    from tta_energy.experiments.campaign_spec import Stopping
    from tta_energy.models.base import GenerationRequest
    from tta_energy.models.catalogue import ModelDefaults, entry
    from tta_energy.study import STUDY_REPEATS, STUDY_STEPS

    assert (STUDY_REPEATS, STUDY_STEPS) == (5, 100)
    assert {n: s.repeats for n, s in EXPERIMENTS.items()} == {**dict.fromkeys(EXPERIMENTS, STUDY_REPEATS),
                                                             "quality": 1}
    for name in ("batch", "duration", "guidance", "precision"):
        assert {c.steps for c in configs(name)} == {STUDY_STEPS}, name
    assert len(run_order(configs("steps"), EXPERIMENTS["steps"].repeats, seed=0)) == 6 * STUDY_REPEATS
    assert Stopping().min_repeats == STUDY_REPEATS
    assert GenerationRequest(prompts=["x"]).steps == ModelDefaults().steps == GENERATION_STEPS == STUDY_STEPS
    assert entry("audioldm").defaults.steps == STUDY_STEPS
    sweep = typer.main.get_command(app).commands["sweep"]
    helps = {p.name: p.help for p in sweep.params}
    assert f"default: {STUDY_REPEATS};" in helps["repeats"] and f"(default {STUDY_STEPS})" in helps["steps"]


def test_quality_grid_reads_the_bundled_caption_files(tmp_path):
    cfgs = configs("quality", limit=2, grid=["10", "50"])
    assert len(cfgs) == 2 * 2 * 2  # datasets x captions x steps
    assert {c.dataset for c in cfgs} == {"audiocaps", "clotho"}
    c = cfgs[0]
    path = audio_path(tmp_path, c)
    assert path == tmp_path / "audioldm" / c.dataset / str(c.steps) / c.caption_id
    first_caption = load_captions("audiocaps").rows[0][1]
    assert [c.prompts for c in cfgs if c.dataset == "audiocaps"][0] == (first_caption,)


def test_caption_file_errors(tmp_path):
    with pytest.raises(SweepError, match="does not exist"):
        load_captions(tmp_path / "none.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("name,text\na.wav,hello\n")
    with pytest.raises(TtaError, match="missing column"):
        load_captions(bad)
    good = tmp_path / "mine_captions.csv"
    good.write_text("file_name,caption,duration\na.wav,a dog barks,10\nb.wav,rain,10\n")
    cs = load_captions(good, limit=1)
    assert cs.name == "mine" and cs.rows == (("a.wav", "a dog barks"),)
    assert len(load_captions("audiocaps").rows) == 300


def test_shard_assignment_balances_cost_and_covers_everything():
    costs = [200, 150, 100, 50, 25, 10] * 5
    shards = distributed.assign(costs, 2, cost=float)
    assert sorted(i for s in shards for i in s) == list(range(len(costs)))
    loads = [sum(costs[i] for i in s) for s in shards]
    assert abs(loads[0] - loads[1]) <= max(costs)
    assert distributed.assign(costs, 2, cost=float) == shards  # every rank computes the same split
    assert distributed.context_from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).is_distributed


# --- resume rules -------------------------------------------------------------------------------------------
def row(cid: str, repeat: int, status: str = "ok", warmup: bool = False,
        ts: str = "2025-01-01T00:00:00") -> dict:
    r = schema.empty_row()
    r.update(source="tta-energy", run_id="r", experiment="steps", config_id=cid, repeat=repeat,
             is_warmup=warmup, model="audioldm", weights="random", size="tiny", dtype="float32",
             status=status, timestamp=ts,
             gpu_energy_method="unavailable", cpu_energy_method="unavailable", rank=0)
    return r


def test_done_pairs_and_error_retry(tmp_path):
    out = tmp_path / "steps.csv"
    for r in [row("a", 0), row("a", 1, "oom"), row("b", 0, "error"), row("c", 0, "nan_audio"),
              row("d", 0, warmup=True)]:
        schema.append_row(out, r)
    df = resume.read_table(out)
    assert resume.done_pairs([df]) == {("a", 0), ("a", 1), ("c", 0)}
    assert ("b", 0) in resume.done_pairs([df], keep_errors=True)
    assert resume.drop_errors(out) == 1
    after = schema.read_runs(out)
    assert len(after) == 4 and "error" not in set(after["status"])


def test_half_written_and_header_only_tables(tmp_path):
    out = tmp_path / "steps.csv"
    out.write_text("source,run_")  # killed while writing the header
    assert resume.read_table(out) is None
    out.unlink()
    schema.append_row(out, row("a", 0))
    with open(out, "a") as fh:
        fh.write("tta-energy,r,steps,b,0")  # killed mid-row
    assert resume.done_pairs([resume.read_table(out)]) == {("a", 0)}
    schema.append_row(out, row("b", 0))  # the next append removes the broken tail
    assert list(schema.read_runs(out)["config_id"]) == ["a", "b"]


def test_merge_shards_deduplicates_sorts_and_removes_shards(tmp_path):
    out = tmp_path / "steps.csv"
    schema.append_row(out, row("a", 0))
    schema.append_row(resume.shard_path(out, 0), row("b", 1, ts="2025-01-01T00:00:02"))
    schema.append_row(resume.shard_path(out, 0), row("w", 0, warmup=True))
    schema.append_row(resume.shard_path(out, 1), row("b", 0, "error", ts="2025-01-01T00:00:01"))
    schema.append_row(resume.shard_path(out, 1), row("b", 0, ts="2025-01-01T00:00:03"))
    schema.append_row(resume.shard_path(out, 1), row("a", 0))  # duplicate of a row already merged
    assert [p.name for p in resume.shard_paths(out)] == ["steps.rank0.csv", "steps.rank1.csv"]
    merged = resume.merge_shards(out)
    assert resume.shard_paths(out) == []
    df = schema.read_runs(out)
    # warm-ups first, then by repeat and configuration; of (b, 0) the ok row beats the earlier error
    expected = [("w", 0, True, "ok", "2025-01-01T00:00:00"), ("a", 0, False, "ok", "2025-01-01T00:00:00"),
                ("b", 0, False, "ok", "2025-01-01T00:00:03"), ("b", 1, False, "ok", "2025-01-01T00:00:02")]
    columns = ["config_id", "repeat", "is_warmup", "status", "timestamp"]
    for table in (df, merged):  # the file and the returned frame
        assert [tuple(r) for r in table[columns].itertuples(index=False)] == expected


def test_merge_into_combines_tables_of_separate_calls(tmp_path):
    dest, call1, call2 = tmp_path / "steps.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    schema.append_row(call1, row("a", 0))
    schema.append_row(call2, row("b", 0))
    schema.append_row(call2, row("a", 0))  # the same pair again (a re-run that carried call 1's table)
    resume.merge_into(dest, [call1])
    resume.merge_into(dest, [call2])
    df = schema.read_runs(dest)
    assert sorted(zip(df["config_id"], df["repeat"], strict=True)) == [("a", 0), ("b", 0)]
