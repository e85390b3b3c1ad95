"""The study's data -> run-record rows and score tables (tta_energy.analysis.study_import)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import REPO, build_full_tree, load_paper_data, require_paper_data

from tta_energy import schema
from tta_energy.analysis import study_import as si
from tta_energy.analysis import study_tree as st
from tta_energy.cli.main import main as cli_main
from tta_energy.fileio import read_csv_exact

STEP_GRID = [10, 25, 50, 100, 150, 200]


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory) -> Path:
    return build_full_tree(tmp_path_factory.mktemp("study") / "repo", quality_rows=60)


@pytest.fixture(scope="module")
def full_data(full_tree):
    return si.load_study(full_tree)


def test_model_names_map_to_the_registry_names():
    from tta_energy.models.catalogue import model_names

    assert set(si.CANONICAL_MODELS) == set(model_names())
    spellings = {
        "AudioLDM": "audioldm",
        "AudioLDM2": "audioldm2",
        "Make-an-Audio": "make-an-audio",
        "MAA": "make-an-audio",
        "Make-an-Audio-2": "make-an-audio-2",
        "MAA2": "make-an-audio-2",
        "Stable Audio Open": "stable-audio-open",
        "SAO": "stable-audio-open",
        "Tango": "tango",
        "Tango2": "tango2",
        "AudioLDM2sanity": "audioldm2",
        "SAOsanity": "stable-audio-open",
    }
    assert {k: st.canonical_model(k) for k in spellings} == spellings
    with pytest.raises(st.StudyFormatError, match="unknown model name 'Riffusion'"):
        st.canonical_model("Riffusion")


def test_denoiser_calls_follow_each_sampler():
    # LDM DDIM: integer stride 1000 // steps, so 150 steps run len(range(0, 1000, 6)) = 167 iterations
    assert [st.denoiser_iterations("make-an-audio", s) for s in STEP_GRID] == [10, 25, 50, 100, 167, 200]
    assert [st.denoiser_iterations("make-an-audio-2", s) for s in STEP_GRID] == [10, 25, 50, 100, 167, 200]
    for model in ("audioldm", "audioldm2", "stable-audio-open", "tango", "tango2"):
        assert [st.denoiser_iterations(model, s) for s in STEP_GRID] == STEP_GRID
    # Tango's generate_for_batch makes 10 waveforms as 8 + 2: two passes of the whole loop
    assert st.denoiser_calls("tango", 100, 10) == 200
    assert st.denoiser_calls("tango2", 100, 5) == 100
    assert st.denoiser_calls("audioldm2", 100, 10) == 100


def test_paper_data_rows_counts_and_units():
    data = load_paper_data()
    steps, batch, quality = data.runs["steps"], data.runs["batch"], data.runs["quality"]
    assert (len(steps), len(batch), len(quality)) == (3 * 6 * 5, 3 * 5 * (10 + 5 + 2 + 1), 3 * 2 * 300 * 6)
    assert "quality_full" not in data.runs  # the subset has no sanitycheck/Emissions
    for df in data.runs.values():
        schema.validate(df[list(schema.COLUMN_NAMES)], "imported")
        assert set(df["model"]) == {"audioldm", "audioldm2", "stable-audio-open"}
        assert (df["source"] == "study").all() and (df["gpu_name"] == "NVIDIA A40").all()
        assert (df["gpu_energy_method"] == "study_codecarbon").all()
        assert (df["cpu_energy_method"] == "study_codecarbon").all()
        # joules are the kWh columns x 3.6e6 in float64
        assert np.array_equal(df["gpu_energy_J"].to_numpy(), df["gpu_energy"].to_numpy() * 3.6e6)
        assert np.array_equal(df["cpu_energy_J"].to_numpy(), df["cpu_energy"].to_numpy() * 3.6e6)
        assert np.array_equal(df["co2_kg"].to_numpy(), df["emissions"].to_numpy())
        assert (df["codecarbon_version"] == "2.7.2").all()
        assert not df["is_warmup"].any()
    assert sorted(steps["repeat"].unique()) == [0, 1, 2, 3, 4]
    assert sorted(steps["steps"].unique()) == STEP_GRID
    assert (steps.groupby(["model", "steps"]).size() == 5).all()
    assert sorted(batch["n_clips"].unique()) == [1, 2, 5, 10]
    assert set(batch.loc[batch["model"] == "audioldm", "weights"]) == {"cvssp/audioldm"}
    assert set(steps.loc[steps["model"] == "audioldm", "weights"]) == {"cvssp/audioldm-s-full-v2"}
    assert (quality.groupby(["model", "dataset", "steps"]).size() == 300).all()


def test_kwh_values_are_kept_bit_for_bit():
    root = require_paper_data()
    raw = root / "results" / "inference_steps" / "Stable Audio Open" / "Stable Audio Open-emissions-run3.csv"
    with open(raw, newline="") as fh:
        rows = list(csv.DictReader(fh))
    steps = load_paper_data().runs["steps"]
    ours = steps[(steps["model"] == "stable-audio-open") & (steps["repeat"] == 2)]
    assert list(ours["gpu_energy"]) == [float(r["gpu_energy"]) for r in rows]
    assert list(ours["energy_consumed"]) == [float(r["energy_consumed"]) for r in rows]
    assert list(ours["timestamp"]) == [r["timestamp"] for r in rows]
    assert list(ours["steps"]) == [int(r["project_name"].split("_")[1].split("-")[0]) for r in rows]


def test_quality_rows_carry_caption_ids_and_prompts():
    root = require_paper_data()
    quality = load_paper_data().runs["quality"]
    for dataset in ("audiocaps", "clotho"):
        captions = pd.read_csv(root / "inferences" / "quality_metrics" / "CLAP" / f"{dataset}_captions.csv")
        rows = quality[quality["dataset"] == dataset]
        assert set(rows["caption_id"]) == set(captions["file_name"])
        lookup = dict(zip(captions["file_name"], captions["caption"], strict=True))
        assert (rows["prompt"] == rows["caption_id"].map(lookup)).all()
    # a caption file stem with spaces survives the project_name parsing
    assert "Pasir Panjang Calm Ocean.wav" in set(quality["caption_id"])


def test_scores_are_tidy_and_joined_by_key():
    scores = load_paper_data().scores
    assert list(scores.columns) == list(si.SCORE_COLUMNS)
    subset = scores[scores["scope"] == "subset"]
    assert len(subset) == 3 * 2 * 2 * 6 and len(scores[scores["scope"] == "full"]) == 2 * 2 * 6
    # FAD files list Clotho first, CLAP files AudioCaps first: the values must land on the right data set
    fad = subset[(subset["metric"] == "fad") & (subset["model"] == "audioldm")].set_index(
        ["dataset", "steps"]
    )
    assert fad.loc[("clotho", 10), "value"] == pytest.approx(0.6231807065184898, rel=0, abs=0)
    assert fad.loc[("audiocaps", 10), "value"] == pytest.approx(0.332962824045821, rel=0, abs=0)
    clap = subset[(subset["metric"] == "clap") & (subset["model"] == "audioldm")].set_index(
        ["dataset", "steps"]
    )
    assert clap.loc[("audiocaps", 150), "value"] == 0.40749508142471313
    assert clap.loc[("clotho", 150), "value"] == 0.3405739367008209


def test_the_full_published_tree_with_all_seven_models(full_data):
    for experiment in ("steps", "batch", "quality"):
        assert set(full_data.runs[experiment]["model"]) == set(si.CANONICAL_MODELS), experiment
    steps = full_data.runs["steps"]
    maa = steps[steps["model"].isin(["make-an-audio", "make-an-audio-2"])]
    assert set(maa.loc[maa["steps"] == 150, "denoiser_calls"]) == {167}
    assert set(maa.loc[maa["steps"] == 200, "denoiser_calls"]) == {200}
    batch = full_data.runs["batch"]
    tango10 = batch[(batch["model"].isin(["tango", "tango2"])) & (batch["n_clips"] == 10)]
    assert set(tango10["denoiser_calls"]) == {200}
    assert set(batch.loc[batch["model"] == "make-an-audio", "weights"]) == {
        "Text-to-Audio/Make-An-Audio:useful_ckpts/maa1_full.ckpt"
    }
    quality = full_data.runs["quality"]
    maa2 = quality[quality["model"] == "make-an-audio-2"]
    assert maa2["prompt"].str.match(r"^<.+ & all>$").all()
    assert set(maa2["dataset"]) == {"audiocaps", "clotho"}
    full = full_data.runs["quality_full"]
    assert set(full["model"]) == {"audioldm2"} and set(full["experiment"]) == {"quality_full"}
    scores = full_data.scores
    assert set(scores.loc[scores["scope"] == "subset", "model"]) == set(si.CANONICAL_MODELS)
    assert set(scores.loc[scores["scope"] == "full", "model"]) == {"audioldm2", "stable-audio-open"}
    assert len(full_data.published_sanity) == 4


def test_results_folder_alone_is_a_study_tree(full_tree):
    tree = st.locate_study(full_tree / "results")
    assert tree.results == full_tree / "results"
    assert tree.sanitycheck == full_tree / "sanitycheck"
    assert tree.quality_inferences == full_tree / "inferences" / "quality_metrics"


def _tiny_tree(tmp_path: Path) -> Path:
    """A study tree with one model's steps experiment only, for the bad-input tests."""
    root = tmp_path / "tiny"
    src = require_paper_data() / "results" / "inference_steps" / "AudioLDM"
    dst = root / "results" / "inference_steps" / "AudioLDM"
    dst.mkdir(parents=True)
    for f in src.glob("AudioLDM-emissions-run*.csv"):
        shutil.copy(f, dst / f.name)
    return root


def _cli(args: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        cli_main(args)
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize(
    "damage, message",
    [
        ("drop_column", r"AudioLDM-emissions-run2\.csv: missing column\(s\) gpu_energy"),
        (
            "text_energy",
            r"AudioLDM-emissions-run2\.csv: column 'gpu_energy' holds non-numeric 'n/a' \(data row 3\)",
        ),
        ("empty_energy", r"AudioLDM-emissions-run2\.csv: column 'energy_consumed' holds an empty value"),
        ("header_only", r"AudioLDM-emissions-run2\.csv: no rows"),
        (
            "no_steps",
            r"AudioLDM-emissions-run2\.csv: column 'project_name' value 'AudioLDM-inference' has no",
        ),
        (
            "empty_folder",
            r"results/inference_steps/Tango: no <Model>-emissions-run<k>\.csv files \(empty experiment\)",
        ),
        ("unknown_model", r"unknown model name 'Riffusion'"),
        ("score_not_utf8", r"results/quality_metrics/FAD/AudioLDM_fad_scores\.csv: not a readable UTF-8 CSV"),
    ],
)
def test_bad_input_is_one_clear_error_and_nothing_is_written(tmp_path, capsys, damage, message):
    root = _tiny_tree(tmp_path)
    target = root / "results" / "inference_steps" / "AudioLDM" / "AudioLDM-emissions-run2.csv"
    df = pd.read_csv(target, dtype=str, keep_default_na=False)
    if damage == "drop_column":
        df.drop(columns=["gpu_energy"]).to_csv(target, index=False)
    elif damage == "text_energy":
        df.loc[2, "gpu_energy"] = "n/a"
        df.to_csv(target, index=False)
    elif damage == "empty_energy":
        df.loc[0, "energy_consumed"] = ""
        df.to_csv(target, index=False)
    elif damage == "header_only":
        df.iloc[:0].to_csv(target, index=False)
    elif damage == "no_steps":
        df.loc[1, "project_name"] = "AudioLDM-inference"
        df.to_csv(target, index=False)
    elif damage == "empty_folder":
        (root / "results" / "inference_steps" / "Tango").mkdir()
    elif damage == "score_not_utf8":
        scores = root / "results" / "quality_metrics" / "FAD"
        scores.mkdir(parents=True)
        (scores / "AudioLDM_fad_scores.csv").write_bytes(b"model,steps\n\xff\xfe\n")
    elif damage == "unknown_model":
        (root / "results" / "inference_steps" / "AudioLDM").rename(
            root / "results" / "inference_steps" / "Riffusion"
        )
    out = tmp_path / "out"
    code, err = _cli(["import-study", str(root), "--out-dir", str(out)], capsys)
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert pytest.importorskip("re").search(message, err), err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging folder left behind
    code, err = _cli(["analyze", "--study", str(root), "--out-dir", str(out)], capsys)
    assert code == 2 and err.startswith("error: ") and not out.exists()


def test_an_out_folder_that_cannot_be_made_is_named_as_given(tmp_path, capsys, proc_looks_writable):
    root = _tiny_tree(tmp_path)
    out = proc_looks_writable / "tta-energy-out"  # its parent exists, but nothing can be written in it
    # the output folder is checked before the study is read: a study that is not there is never reached
    for command in (["import-study", str(root)], ["analyze", "--study", str(root)],
                    ["import-study", str(tmp_path / "no-study")]):
        code, err = _cli([*command, "--out-dir", str(out)], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith(f"error: --out-dir {out} cannot be written: its file system makes no new file "
                              "there"), err


def test_a_folder_that_is_not_a_study(tmp_path, capsys):
    (tmp_path / "something").mkdir()
    out = ["--out-dir", str(tmp_path / "out")]
    code, err = _cli(["import-study", str(tmp_path / "something"), *out], capsys)
    assert code == 2 and "not a study tree" in err and "results/inference_steps" in err
    code, err = _cli(["import-study", str(tmp_path / "missing"), *out], capsys)
    assert code == 2 and "not a folder" in err
    assert not (tmp_path / "out").exists()


def test_import_writes_all_or_nothing_and_never_replaces_foreign_folders(tmp_path, capsys):
    root = _tiny_tree(tmp_path)
    out = tmp_path / "imported"
    assert cli_main(["import-study", str(root), "--out-dir", str(out)]) is None
    assert sorted(p.name for p in out.iterdir()) == ["IMPORT.md", "scores.csv", "steps.csv"]
    steps = schema.read_runs(out / "steps.csv")
    assert len(steps) == 30 and set(steps["model"]) == {"audioldm"}
    (out / "stale.csv").write_text("left from an older import\n")
    cli_main(["import-study", str(root), "--out-dir", str(out)])  # re-import replaces the whole folder
    assert not (out / "stale.csv").exists()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("keep me")
    code, err = _cli(["import-study", str(root), "--out-dir", str(foreign)], capsys)
    assert code == 2 and "holds files that import-study did not write (it would hold IMPORT.md)" in err
    assert (foreign / "mine.txt").read_text() == "keep me"


def test_committed_data_study_is_the_import_of_the_paper_data():
    committed = REPO / "data" / "study"
    if not committed.is_dir():
        pytest.skip("data/study not present")
    data = load_paper_data()
    for name, fresh in data.runs.items():
        table = schema.read_runs(committed / f"{name}.csv")
        cols = [c for c in schema.COLUMN_NAMES if c in table.columns]
        expected = schema.validate(fresh[list(schema.COLUMN_NAMES)], name)[cols].reset_index(drop=True)
        pd.testing.assert_frame_equal(
            table[cols].reset_index(drop=True),
            expected,
            check_dtype=False,
            rtol=0,
            atol=0,
            obj=f"data/study/{name}.csv",
        )
    scores = read_csv_exact(committed / "scores.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(scores, data.scores.fillna(""), check_dtype=False, rtol=0, atol=0)
