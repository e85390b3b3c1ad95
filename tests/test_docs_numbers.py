"""The numbers the docs quote are regenerated from data/: the committed docs match, a changed number fails."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from tta_energy.analysis import docs_numbers
from tta_energy.errors import TtaError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data() -> docs_numbers.DocData:
    return docs_numbers.DocData(ROOT / "data")


def _copy_docs(tmp_path: Path) -> Path:
    for relative in docs_numbers.DOC_FILES:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, tmp_path / relative)
    return tmp_path


def _table_row(text: str, name: str) -> list[str]:
    """The cells of the first Markdown table row of ``text`` that starts with ``name`` (a model's label)."""
    row = next((line for line in text.splitlines() if line.startswith(f"| {name} |")), None)
    assert row is not None, f"no table row for {name!r} in {text!r}"
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_committed_docs_match_the_tables(data: docs_numbers.DocData) -> None:
    stale = docs_numbers.stale_blocks(ROOT, data)
    assert stale == [], f"run `make reproduce` (or docs_numbers.update_docs): stale blocks {stale}"


def test_every_block_is_used_and_quotes_numbers() -> None:
    used = set()
    for relative in docs_numbers.DOC_FILES:
        for match in docs_numbers.BLOCK.finditer((ROOT / relative).read_text(encoding="utf-8")):
            used.add(match["name"])
            assert re.search(r"\d", match["body"]), f"{relative}: block {match['name']} quotes no number"
    assert used == set(docs_numbers.BLOCKS)


def test_a_changed_number_is_caught_in_every_block(tmp_path: Path, data: docs_numbers.DocData) -> None:
    root = _copy_docs(tmp_path)
    for relative in docs_numbers.DOC_FILES:
        path = root / relative
        original = path.read_text(encoding="utf-8")
        for match in docs_numbers.BLOCK.finditer(original):
            digit = re.search(r"\d", match["body"])
            at = match.start("body") + digit.start()
            changed = original[:at] + str((int(original[at]) + 1) % 10) + original[at + 1 :]
            path.write_text(changed, encoding="utf-8")
            assert docs_numbers.stale_blocks(root, data) == [f"{relative}: {match['name']}"]
        path.write_text(original, encoding="utf-8")
    assert docs_numbers.stale_blocks(root, data) == []


def test_update_rewrites_a_stale_block(tmp_path: Path, data: docs_numbers.DocData) -> None:
    root = _copy_docs(tmp_path)
    readme = root / "README.md"
    text = readme.read_text(encoding="utf-8")
    readme.write_text(re.sub(r"up to \+\d+%", "up to +77%", text), encoding="utf-8")
    assert docs_numbers.stale_blocks(root, data) == ["README.md: study-warmup"]
    assert docs_numbers.update_docs(root, data) == [readme]
    assert readme.read_text(encoding="utf-8") == text


def test_the_quoted_facts_follow_the_tables(data: docs_numbers.DocData) -> None:
    """The facts the docs once got wrong, recomputed here from the tables with plain pandas."""
    from tta_energy.models.catalogue import label

    warm = docs_numbers.study_warmup(data.study_steps).set_index(["model", "steps"])
    assert warm.loc[("audioldm2", 10), "excess"] == pytest.approx(0.98, abs=0.01)  # the study's own data
    observations = docs_numbers.block_observations(data)
    steps_block = docs_numbers.block_steps(data)
    steps = data.steps
    for model, rows in steps.groupby("model"):
        rel = rows["gpu_energy_J"] / rows.groupby("steps")["gpu_energy_J"].transform("mean") - 1
        assert f"{label(model)} {rel.min():+.0%}/{rel.max():+.0%}" in observations
        # the steps table's last column: the same spread, in a column headed [%]
        spread = f"{rel.min():+.0%}/{rel.max():+.0%}".replace("%", "")
        cells = _table_row(steps_block, label(model))
        assert cells[-1] == spread, (model, cells)
        n = rows.groupby("steps").size()
        assert cells[3] == (f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"), (model, cells)
        power = rows["gpu_energy_J"] / rows["wall_s"]
        assert f"{label(model)} {power.mean():.0f} W ({power.min():.0f}–{power.max():.0f} W)" in observations
    batch = data.batch
    distinct = batch[batch["n_prompts"] == 10].groupby("model")["gpu_energy_J"].mean() / 10
    same = batch[(batch["n_prompts"] == 1) & (batch["waveforms_per_prompt"] == 10)].groupby("model")[
        "gpu_energy_J"].mean() / 10
    text = docs_numbers.block_batch(data)
    for model in distinct.index.intersection(same.index):
        change = round(distinct[model] / same[model] - 1, 3)
        cells = _table_row(text, label(model))
        # the last two columns: both energies per clip, and the change in a column headed [%]
        assert cells[-2] == f"{distinct[model]:.1f} vs {same[model]:.1f}", (model, cells)
        assert cells[-1] == ("0.0" if change == 0 else f"{change:+.1%}".removesuffix("%")), (model, cells)
    assert "| -0.0 |" not in text and "| +0.0 |" not in text


def test_the_cell_intervals_block_quotes_the_committed_table(data: docs_numbers.DocData) -> None:
    """data/README.md's median half-widths per model are those of figures/tables/cell_intervals_h200.csv."""
    import pandas as pd

    from tta_energy.models.catalogue import label

    table = pd.read_csv(ROOT / "figures" / "tables" / "cell_intervals_h200.csv")
    steps = table[table["experiment"] == "steps"]
    text = docs_numbers.block_cell_intervals(data)
    assert steps["model"].nunique() == 7  # every model's steps cells are in the table
    for model, rows in steps.groupby("model"):
        quoted = (f"{label(model)} ±{rows['ci95_half_width_rel_repeats'].median():.1%} → "
                  f"+{rows['ci95_half_width_rel_processes'].median():.1%}")
        assert quoted in text


def test_the_model_table_quotes_the_committed_analysis_tables(data: docs_numbers.DocData) -> None:
    """README's per-model table: the H200's mean energy at 100 steps is steps_summary.csv's, the FLOP per
    joule efficiency.csv's and the busy fraction host_summary.csv's, one row per model measured."""
    import pandas as pd

    from tta_energy.models.catalogue import label

    tables = ROOT / "figures" / "tables"
    summary = pd.read_csv(tables / "steps_summary.csv")
    h200 = summary[(summary["gpu_name"] == "NVIDIA H200") & (summary["steps"] == 100)].set_index("model")
    flops = pd.read_csv(tables / "efficiency.csv")
    flops = flops[flops["gpu_name"] == "NVIDIA H200"].set_index("model")
    host = pd.read_csv(tables / "host_summary.csv").set_index("model")
    rows = [line for line in docs_numbers.block_model_table(data).splitlines() if line.startswith("| ")][1:]
    assert len(rows) == len(h200)
    for model in h200.index:
        row = next(r for r in rows if r.startswith(f"| {label(model)} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2].startswith(docs_numbers._j(h200.loc[model, "gpu_energy_J_mean"]) + " (")
        assert cells[5].startswith(docs_numbers._tflop(flops.loc[model, "denoiser_tflop_per_J"]))
        busy = host.loc[model]
        assert cells[6].startswith(f"{busy['gpu_busy_fraction_mean']:.0%} (")
        assert cells[6].endswith(f"n = {int(busy['n_generations'])})")


def test_the_process_spread_block_quotes_the_committed_table(data: docs_numbers.DocData) -> None:
    """data/README.md's between/within-process SDs are the steps rows of figures/tables/spread_h200.csv."""
    import pandas as pd

    from tta_energy.models.catalogue import label

    table = pd.read_csv(ROOT / "figures" / "tables" / "spread_h200.csv")
    steps = table[table["experiment"] == "steps"]
    assert set(steps["model"]) == set(data.steps["model"])
    text = docs_numbers.block_process_spread(data)
    for row in steps.itertuples():
        if pd.isna(row.between_process_share):
            assert f"{label(row.model)} not separable ({row.reason})" in text
            continue
        quoted = (f"{label(row.model)} {row.between_process_sd_pct:.1f}% / {row.within_process_sd_pct:.1f}% "
                  f"(between-process share {row.between_process_share:.0%}")
        assert quoted in text
        low, high = row.between_process_share_ci_low, row.between_process_share_ci_high
        assert low <= row.between_process_share <= high


def test_an_unknown_block_is_one_clear_error(data: docs_numbers.DocData) -> None:
    with pytest.raises(TtaError, match="unknown generated block 'nope'"):
        docs_numbers.render("<!-- generated:nope -->1<!-- /generated:nope -->", data)


def test_summaries_give_the_units_the_field_compares(data: docs_numbers.DocData) -> None:
    from tta_energy.analysis import summaries

    steps = summaries.steps_summary(data.steps)
    assert steps["gpu_energy_Wh_per_1000_clips_mean"].to_numpy() == pytest.approx(
        steps["gpu_energy_J_mean"].to_numpy() / 3.6
    )
    batch = summaries.batch_summary(data.batch)
    per_clip = batch["gpu_energy_J_per_clip_mean"].to_numpy()
    assert batch["gpu_energy_Wh_per_1000_clips_mean"].to_numpy() == pytest.approx(per_clip / 3.6)
    assert batch["gpu_energy_J_per_audio_s_mean"].to_numpy() == pytest.approx(per_clip / 10, rel=0.05)


def test_measurements_quote_numbers_only_from_generated_blocks() -> None:
    """README's measurements and docs/results.md: every number inside a block the tables rewrite."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Measurements so far", 1)[1].split("\n## ", 1)[0].split("\n", 1)[1]
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8").split("\n", 1)[1]
    for prose in (section, results):
        # code, headings and GPU names (H200, A40) are not numbers
        prose = re.sub(r"`[^`]*`|^#.*$|\b[AH]\d+s?\b", "", docs_numbers.BLOCK.sub("", prose), flags=re.M)
        assert not re.search(r"\d", prose), f"a number outside a generated block: {prose!r}"



def test_the_analysis_pages_spot_values_follow_the_study_tables() -> None:
    """docs/analysis.md's spot values of the study, recomputed from data/study with the package's tables."""
    import pandas as pd

    from tta_energy import schema
    from tta_energy.analysis import sanity, summaries

    text = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8")
    kwh = 3.6e6
    runs = schema.read_runs(ROOT / "data" / "study" / "steps.csv")
    audioldm = runs[(runs["model"] == "audioldm") & (runs["steps"] == 10)]["gpu_energy_J"]
    mean, std = audioldm.mean(), audioldm.std()
    assert f"{mean / kwh:.4e} ± {std / kwh:.1e} kWh = {mean:.1f} ± {std:.1f} J" in text
    batch = summaries.batch_summary(schema.read_runs(ROOT / "data" / "study" / "batch.csv"))
    sao = batch[(batch["model"] == "stable-audio-open") & (batch["n_clips"] == 10)].iloc[0]
    assert f"{sao['gpu_energy_J_per_10_clips_mean'] / kwh:.4e} ± {sao['study_error_J'] / kwh:.1e} kWh" in text
    table = sanity.sanity_table(pd.read_csv(ROOT / "data" / "study" / "scores.csv"))
    clap = table[(table["metric"] == "clap") & (table["dataset"] == "audiocaps")].iloc[0]
    quoted = re.search(r"CLAP\s+AudioCaps r = ([\d.]+), interaction p = ([\d.]+)", text)
    assert quoted, "docs/analysis.md should quote the CLAP AudioCaps sanity statistics"
    assert float(quoted[1]) == pytest.approx(clap["pearson_r"], rel=1e-13, abs=0)
    assert float(quoted[2]) == pytest.approx(clap["ancova_p"], rel=1e-13, abs=0)


def test_the_study_fronts_are_as_stable_as_the_analysis_page_says() -> None:
    """docs/analysis.md: on the committed study data every configuration is on its front in 0 % or 100 %."""
    import pandas as pd

    pareto = pd.read_csv(ROOT / "figures" / "tables" / "pareto.csv")
    frequencies = set(pareto.loc[pareto["source"] == "study", "front_frequency"].dropna())
    text = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8")
    models = pareto.loc[pareto["source"] == "study", "model"].nunique()
    claim = (f"on the {models}-model subset every configuration is on the front in 0 % or 100 % "
             "of the resamples")
    assert (claim in " ".join(text.split())) == (frequencies <= {0.0, 1.0})


def test_the_h100_levers_paragraph_follows_its_table(data: docs_numbers.DocData) -> None:
    """Each model of data/h100/levers.csv at 100 steps, batch 1, recomputed with plain pandas: each lossless
    configuration at the study's precision in the run, among those holding it and `none`, with the most
    repeats of `none` (the latest of equals); the largest reduction of these; models without one, and those
    not measured, named."""
    from tta_energy.intervals import ratio_interval
    from tta_energy.levers.report import study_dtype
    from tta_energy.models.catalogue import BUILTIN_NAMES, label

    levers = pd.read_csv(ROOT / "data" / "h100" / "levers.csv")
    cell = levers[(levers["steps"] == 100) & (levers["waveforms_per_prompt"] == 1)]
    text = docs_numbers.levers_paragraph(data, "h100")
    assert "`data/h100/levers.csv`" in text and "`data/h100/levers_summary.md`" in text
    for model in BUILTIN_NAMES:
        rows = cell[cell["model"] == model]
        if rows.empty:
            assert _table_row(text, label(model))[1] == "not measured at 100 steps, batch 1", model
            continue
        tuned = rows[rows["lossless"].astype(bool) & ~rows["optimize"].isin(["none", "fp32"])
                     & (rows["dtype"] == study_dtype(model))]
        nones = rows[rows["optimize"] == "none"].set_index("run_id")
        pairs = []  # (reduction, energy, configuration's row, its run's none) per configuration
        for _, runs_of_spec in tuned.groupby("optimize"):
            held = nones[nones.index.isin(runs_of_spec["run_id"])].reset_index()
            if held.empty:
                continue
            run = held.sort_values(["n_runs", "run_id"]).iloc[-1]
            row = runs_of_spec[runs_of_spec["run_id"] == run["run_id"]].iloc[0]
            ratio = run["gpu_energy_J_per_clip"] / row["gpu_energy_J_per_clip"]
            pairs.append((ratio, row["gpu_energy_J_per_clip"], row, run))
        if not pairs:
            said = _table_row(text, label(model))[1]
            assert "without a lossless configuration beside `none`" in said, model
            continue
        ratio, _, best, run = sorted(pairs, key=lambda p: (-p[0], p[1]))[0]
        low, high = ratio_interval(run["gpu_energy_J"], run["gpu_energy_J_std"], run["n_runs"],
                                   best["gpu_energy_J"], best["gpu_energy_J_std"], best["n_runs"])
        _, spec, none_J, _, reduction, n = _table_row(text, label(model))
        assert spec == f"`{best['optimize']}`", (model, spec)
        assert none_J.startswith(f"{run['gpu_energy_J_per_clip']:.0f} ("), (model, none_J)
        assert reduction == f"{ratio:.1f} ({low:.1f}–{high:.1f})", (model, reduction)
        assert n == f"{run['n_runs']} and {best['n_runs']}", (model, n)
    parts = (ROOT / "data" / "h100" / "levers").glob("part*/levers_ceiling.csv")
    ceilings = pd.concat(pd.read_csv(p) for p in parts)
    bf16 = ceilings[ceilings["precision"].fillna("bf16") == "bf16"]["tflop_per_J"]
    assert f"({bf16.mean():.2f} TFLOP/J," in text


def test_the_eager_fp8_sentence_pairs_each_run_with_its_own_default(tmp_path: Path) -> None:
    from tta_energy.analysis.docs_numbers_docs import block_levers_fp8_eager_h100

    d = docs_numbers.DocData(tmp_path)
    assert block_levers_fp8_eager_h100(d) == "no `levers.csv` committed yet (0 rows)"
    rows = [("r1", "none", 1500.0), ("r1", "fp8", 3000.0), ("r2", "fp8", 2000.0),  # r2: no default of its own
            ("r3", "none", 1000.0), ("r3", "fp8", 1500.0)]
    (tmp_path / "h100").mkdir()
    table = pd.DataFrame([{"run_id": run, "model": "stable-audio-open", "optimize": spec, "steps": 100,
                           "waveforms_per_prompt": 1, "gpu_energy_J_per_clip": joules}
                          for run, spec, joules in rows])
    table.to_csv(tmp_path / "h100" / "levers.csv", index=False)
    assert block_levers_fp8_eager_h100(d) == ("3000 J per clip against 1500 J for `none` (2.00x); "
                                              "1500 J per clip against 1000 J for `none` (1.50x)")


def test_the_compile_cache_sentence_counts_the_calls_that_returned_it(tmp_path: Path) -> None:
    """A plan log without `compile cache not returned` returned its cache; a packed one that did not gives
    its size and, with du's folder sizes, how much gzip shrank it; one too large to pack counts as not
    returned and gives its unpacked size."""
    from tta_energy.analysis.docs_numbers_docs import block_levers_compile_cache_h100

    d = docs_numbers.DocData(tmp_path)
    assert block_levers_compile_cache_h100(d).startswith("no `log-levers-plan-*.txt` committed yet")
    logs = tmp_path / "h100" / "logs"
    logs.mkdir(parents=True)
    (logs / "log-levers-plan-1.txt").write_text("levers part plan-1 finished in 400 s (exit 0)\n")
    (logs / "log-levers-plan-2.txt").write_text(
        "compile cache not returned: 20 MiB > 8 MiB (the next call compiles anew)\n"
        "100M\t.cache/compile/inductor/\n40M\t.cache/compile/triton/\n")
    (logs / "log-levers-plan-3.txt").write_text(
        "compile cache not returned: 50 MiB > 8 MiB (the next call compiles anew)\n"
        "0.2G\t.cache/compile/inductor/\n104.8M\t.cache/compile/triton/\n")
    (logs / "log-levers-plan-4.txt").write_text(
        "compile cache not returned: 700 MiB unpacked, more than 10 x 8 MiB (the next call compiles anew)\n")
    (logs / "log-levers-4.txt").write_text("not a plan call's log\n")
    assert block_levers_compile_cache_h100(d) == (
        "the compile cache came back from 1 of 4 calls; 2 others packed Inductor's and Triton's files to 20 "
        "to 50 MiB, 6.2-7.0x less than unpacked; 1 left them unpacked at 700 to 700 MiB")


def test_the_quality_drift_compares_captions_of_one_step_count() -> None:
    """The campaign adds captions at 100 steps after the 10-step sweep: they must not enter its drift."""
    ten = [{"model": "audioldm", "steps": 10, "timestamp": f"2026-01-01T00:00:{i:02d}",
            "gpu_energy_J": 50.0 + i, "energy_text_encoding_J": 5.0} for i in range(4)]
    hundred = [{"model": "audioldm", "steps": 100, "timestamp": f"2026-01-02T00:00:{i:02d}",
                "gpu_energy_J": 500.0, "energy_text_encoding_J": 5.0} for i in range(2)]
    drift = docs_numbers.quality_drift(pd.DataFrame(ten + hundred), n=2)
    row = drift.set_index("model").loc["audioldm"]
    assert (row["first_J"], row["last_J"], row["steps"]) == (50.5, 52.5, 10)


def test_the_tf32_sentence_pairs_each_model_with_the_default_of_its_run(data: docs_numbers.DocData) -> None:
    """Recomputed with plain pandas from data/h100/levers.csv: `compile-graphs,tf32` and `none` of one run."""
    from tta_energy.analysis.docs_numbers_docs import TF32_MODELS, block_levers_tf32_h100
    from tta_energy.models.catalogue import label

    levers = pd.read_csv(ROOT / "data" / "h100" / "levers.csv")
    cell = levers[(levers["steps"] == 100) & (levers["waveforms_per_prompt"] == 1)]
    text = block_levers_tf32_h100(data)
    assert TF32_MODELS  # the sentence names at least one model
    for model in TF32_MODELS:
        tf32 = cell[(cell["model"] == model) & (cell["optimize"] == "compile-graphs,tf32")]
        assert len(tf32) >= 1, model  # the table holds the tf32 run the sentence quotes
        nones = cell[(cell["model"] == model) & (cell["optimize"] == "none")].set_index("run_id")
        for row in tf32.itertuples():
            none_J = nones.loc[row.run_id, "gpu_energy_J_per_clip"]
            ratio = none_J / row.gpu_energy_J_per_clip
            assert (f"{label(model)} {row.gpu_energy_J_per_clip:.0f} J per clip against {none_J:.0f} J for "
                    f"`none` of the same run ({ratio:.2f}x;") in text


def test_the_fp8_batch_sentence_gives_each_batch_size_measured(data: docs_numbers.DocData) -> None:
    """Recomputed with plain pandas from data/h100/levers.csv: Stable Audio Open's `compile-graphs,fp8` FLOP
    per joule at each batch size, its range over runs."""
    from tta_energy.analysis.docs_numbers_docs import block_levers_fp8_batch_h100

    levers = pd.read_csv(ROOT / "data" / "h100" / "levers.csv")
    rows = levers[(levers["model"] == "stable-audio-open") & (levers["optimize"] == "compile-graphs,fp8")
                  & (levers["steps"] == 100)]
    text = block_levers_fp8_batch_h100(data)
    assert text.endswith("TFLOP/J against the FP8 target of 0.8 (`data/h100/levers.csv`)")
    for batch, group in rows.groupby("waveforms_per_prompt"):
        tflop = sorted(group["tflop_per_J"])
        said = f"{tflop[0]:.3f}" if len(tflop) == 1 else f"{tflop[0]:.3f}-{tflop[-1]:.3f} ({len(tflop)} runs)"
        assert f"batch {batch}: {said}" in text


def test_the_targets_sentence_counts_each_kind_and_names_each_miss(tmp_path: Path) -> None:
    from tta_energy.levers.summary import TARGET_COLUMNS

    rows = [("lossless reduction", "audioldm", "max", "float16", 100, 1, 5.2, 4.5, True),
            ("lossless reduction", "tango", "graphs", "float32", 100, 1, 1.06, 1.3, False),
            ("lossless reduction", "tango2", None, None, None, None, float("nan"), 1.3, None),
            ("fraction of the ceiling", "tango", "max", "float16", 100, 10, 0.161, 0.5, False),
            ("fp8 TFLOP per joule", "stable-audio-open", "compile-graphs,fp8", "float16", 100, 16, 0.7718,
             0.8, False)]
    data = tmp_path / "data"
    (data / "h100").mkdir(parents=True)
    pd.DataFrame(rows, columns=TARGET_COLUMNS).to_csv(data / "h100" / "levers_targets.csv", index=False)
    assert docs_numbers.targets_sentence(data, "h100") == (
        "Against the targets (`data/h100/levers_targets.csv`), per kind of target: how many of the models "
        "measured meet it, and each miss with its value against the target:\n\n"
        "| target | met of measured | missed (value against target) |\n"
        "|---|---|---|\n"
        "| lossless reduction | 1 of 2 | Tango 1.06× against 1.30× |\n"
        "| fraction of the ceiling | 0 of 1 | Tango 16% against 50% |\n"
        "| fp8 TFLOP per joule | 0 of 1 | Stable Audio Open 0.772 against 0.800 |\n\n"
        "Not measured yet: Tango 2 (lossless reduction).")
    assert docs_numbers.targets_sentence(data, "h200").startswith("No targets table yet")
    # with the card's plan file beside data/: how far its table is, first (no call folder yet: 0 cells)
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "h100_levers.toml").write_text(
        '[levers]\nmodels = ["tango"]\nspecs = ["none", "compile"]\nsteps = [100]\nbatches = [1]\n'
        'repeats = 3\nduration_s = 10.0\nseed = 0\n', encoding="utf-8")
    assert docs_numbers.targets_sentence(data, "h100").startswith(
        "The table holds 0 of the 2 cells `campaigns/h100_levers.toml` declares, so a target missed here "
        "may still be met by a configuration not measured yet. Against the targets "
        "(`data/h100/levers_targets.csv`")


def test_a_targets_table_of_other_columns_is_one_clear_error(tmp_path: Path) -> None:
    from tta_energy.levers.spec import LeverError
    from tta_energy.levers.summary import read_targets

    path = tmp_path / "levers_targets.csv"
    path.write_text("target,model,value\nlossless reduction,tango,1.1\n", encoding="utf-8")
    with pytest.raises(LeverError, match="columns target, model, value; a levers targets table has target"):
        read_targets(path)
