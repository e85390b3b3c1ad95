"""The whole ``tta-energy score`` path on synthetic audio with tiny random-weight CLAP checkpoints (CPU).

The checkpoints are real ``transformers.ClapModel`` folders written with ``save_pretrained`` (model,
feature extractor, a RoBERTa tokenizer built offline from a small vocabulary; see
:mod:`tta_energy.quality.replica`), loaded back through the same code that loads laion/clap-htsat-*
folders. Their feature extractor uses 2 s windows to stay fast; the code takes the window length from the
checkpoint, so clips over 2 s exercise the long-clip windowing and cropping.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tta_energy.cli.main import main  # noqa: E402
from tta_energy.quality import score as sc  # noqa: E402
from tta_energy.quality.audio import AudioPrep, file_sha256, load_audio, split_windows  # noqa: E402
from tta_energy.quality.cache import EmbeddingCache  # noqa: E402
from tta_energy.quality.clap_score import clip_embedding  # noqa: E402
from tta_energy.quality.embeddings import load_embedder  # noqa: E402
from tta_energy.quality.frechet import (  # noqa: E402
    fadtk_pooled_statistics,
    statistics_distance,
)
from tta_energy.quality.profiles import clip_crop_seed, parse_fad_profile  # noqa: E402
from tta_energy.quality.replica import write_clap_checkpoint  # noqa: E402

CAPTIONS = {
    "tone.wav": "a steady high beep",
    "noise.wav": "loud static noise from a radio",
    "silence.wav": "nothing at all, quiet room",
    "chirp.wav": "a rising whistle",
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("clap")
    return {
        "fad": write_clap_checkpoint(root / "tiny-unfused", fusion=False, size="tiny", seed=0),
        "clap": write_clap_checkpoint(root / "tiny-fused", fusion=True, size="tiny", seed=1),
    }


def _write(path: Path, data: np.ndarray, rate: int, subtype: str = "PCM_16") -> Path:
    if path.suffix == ".flac" and subtype == "FLOAT":
        subtype = "PCM_24"  # FLAC has no float samples
    sf.write(str(path), data, rate, subtype=subtype)
    return path


def _synthetic_set(folder: Path, seed: int, names: list[str] | None = None) -> Path:
    """Tone 16 kHz mono, stereo noise 44.1 kHz (3 s: two windows), silence 22.05 kHz, float chirp 48 kHz."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = names or list(CAPTIONS)
    t16 = np.arange(16000) / 16000
    _write(folder / names[0], 0.5 * np.sin(2 * np.pi * (440 + 40 * seed) * t16), 16000)
    _write(folder / names[1], 0.3 * rng.standard_normal((3 * 44100, 2)), 44100)
    _write(folder / names[2], np.zeros(int(1.5 * 22050)), 22050)
    t48 = np.arange(24000) / 48000
    _write(folder / names[3], 0.4 * np.sin(2 * np.pi * (300 + 3000 * t48) * t48), 48000, subtype="FLOAT")
    for extra in names[4:]:
        _write(folder / extra, 0.2 * rng.standard_normal(8000), 8000)
    return folder


@pytest.fixture()
def inputs(tmp_path: Path) -> dict[str, Path]:
    captions = tmp_path / "captions.csv"
    pd.DataFrame({"file_name": list(CAPTIONS), "caption": list(CAPTIONS.values()), "duration": 10.0}).to_csv(
        captions, index=False
    )
    return {
        "generated": _synthetic_set(tmp_path / "gen", 0),
        "reference": _synthetic_set(tmp_path / "ref", 1, ["r1.wav", "r2.wav", "r3.wav", "r4.flac", "r5.wav"]),
        "captions": captions,
        "cache": tmp_path / "cache",
        "out": tmp_path / "scores.csv",
        "tmp": tmp_path,
    }


def _cli(inputs: dict[str, Path], checkpoints: dict[str, Path], *extra: str) -> list[str]:
    return [
        "score",
        "--generated",
        str(inputs["generated"]),
        "--reference",
        str(inputs["reference"]),
        "--captions",
        str(inputs["captions"]),
        "--checkpoint",
        str(checkpoints["clap"]),
        "--fad-checkpoint",
        str(checkpoints["fad"]),
        "--cache",
        str(inputs["cache"]),
        "--out",
        str(inputs["out"]),
        "--bootstrap",
        "40",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def _cached_files(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.npy")) if cache.exists() else []


def test_score_cli_end_to_end(inputs, checkpoints, capsys) -> None:
    per_clip = inputs["tmp"] / "per_clip.csv"
    main(
        _cli(
            inputs,
            checkpoints,
            "--model",
            "tiny",
            "--dataset",
            "synthetic",
            "--steps",
            "25",
            "--per-clip",
            str(per_clip),
        )
    )
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith("scored 1 configuration(s)")
    table = pd.read_csv(inputs["out"])
    assert list(table.columns) == list(sc.TABLE_COLUMNS)
    assert list(table["metric"]) == ["fad", "fad_inf", "clap"]
    assert (table["model"] == "tiny").all() and (table["dataset"] == "synthetic").all()
    assert (table["steps"] == 25).all() and (table["n_generated"] == 4).all()
    assert list(table["n_reference"].fillna(-1)) == [5, 5, -1]
    assert list(table["profile"]) == ["fadtk", "fadtk", "stable-audio-metrics"]
    fad, fad_inf, clap = (table.set_index("metric").loc[m] for m in ("fad", "fad_inf", "clap"))
    assert fad["embedding"].startswith("hf:tiny-unfused@") and clap["embedding"].startswith("hf:tiny-fused@")
    assert fad["value"] > 0 and fad["ci_low"] <= fad["value"] <= fad["ci_high"]
    assert (
        "half-sampling" in fad["ci_method"] and np.isfinite(fad_inf["value"]) and 0 <= fad_inf["fit_r2"] <= 1
    )
    assert -1 <= clap["ci_low"] <= clap["value"] <= clap["ci_high"] <= 1

    clips = pd.read_csv(per_clip)
    assert sorted(clips["caption_id"]) == sorted(CAPTIONS) and len(clips) == 4
    assert clips["value"].mean() == pytest.approx(clap["value"], rel=1e-9)

    # one clip by hand (stable-audio-metrics): the 3-s clip whole, cropped by the 2-s fusion model under the
    # clip's crop seed, against the caption's embedding
    embedder = load_embedder(checkpoints["clap"], device="cpu")
    prep = AudioPrep(peak_dbfs=-1.0, window_s=embedder.window_s, windowing="whole", crop_seed=0)
    noise = inputs["generated"] / "noise.wav"
    whole = split_windows(load_audio(noise, prep), prep)
    assert len(whole) == 1 and len(whole[0]) == 3 * 48000
    audio = clip_embedding(embedder.embed_windows(whole, [clip_crop_seed(0, file_sha256(noise))]))
    text = embedder.embed_texts([CAPTIONS["noise.wav"]])[0]
    expected = float(audio @ text / np.linalg.norm(text))
    assert clips.set_index("caption_id").loc["noise.wav", "value"] == pytest.approx(expected, abs=1e-5)
    assert (clips["profile"] == "stable-audio-metrics").all()

    # FAD by hand (fadtk): 2-s windows every second, zero-padded, float16, statistics pooled per file
    fad_model = load_embedder(checkpoints["fad"], device="cpu")
    fad_prep = AudioPrep(window_s=fad_model.window_s, hop_s=1.0, windowing="fadtk")

    def fadtk_embeddings(folder: Path) -> list[np.ndarray]:
        windows = [split_windows(load_audio(f, fad_prep), fad_prep) for f in sorted(folder.iterdir())]
        return [fad_model.embed_windows(w).astype(np.float16) for w in windows]

    gen, ref = fadtk_embeddings(inputs["generated"]), fadtk_embeddings(inputs["reference"])
    # chirp 0.5 s, silence 1.5 s, noise 3 s, tone 1 s (name order): ceil(seconds) windows
    assert [len(g) for g in gen] == [1, 3, 2, 1]
    by_hand = statistics_distance(fadtk_pooled_statistics(gen), fadtk_pooled_statistics(ref))
    assert fad["value"] == pytest.approx(by_hand, rel=1e-6)

    # everything came from the cache the second time, with the same numbers
    n_cached = len(_cached_files(inputs["cache"]))
    # FAD audio (4 generated + 5 reference, of which the two silences are the same bytes: one entry, keyed by
    # content), CLAP audio (4) and captions (4)
    assert n_cached == 4 + 4 + 4 + 4
    main(_cli(inputs, checkpoints, "--model", "tiny", "--dataset", "synthetic", "--steps", "25"))
    assert "0 computed" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(inputs["out"]), table)
    assert len(_cached_files(inputs["cache"])) == n_cached


def test_sweep_tree_and_fad_inf_variants(inputs, checkpoints, tmp_path) -> None:
    tree = tmp_path / "tree"
    for model, steps in (("m1", 10), ("m1", 50), ("m2", 10)):
        _synthetic_set(tree / model / "synthetic" / str(steps), steps)
    out = tmp_path / "tree.csv"
    main(
        [
            "score",
            "--tree",
            str(tree),
            "--reference",
            f"synthetic={inputs['reference']}",
            "--captions",
            f"synthetic={inputs['captions']}",
            "--checkpoint",
            str(checkpoints["clap"]),
            "--fad-checkpoint",
            str(checkpoints["fad"]),
            "--no-cache",
            "--out",
            str(out),
            "--bootstrap",
            "0",
            "--metrics",
            "fad,fad_inf,fad_inf_without_replacement",
            "--device",
            "cpu",
            "-q",
        ]
    )
    table = pd.read_csv(out)
    assert (
        list(zip(table["model"], table["steps"], strict=True))
        == [("m1", 10)] * 3 + [("m1", 50)] * 3 + [("m2", 10)] * 3
    )
    assert set(table["metric"]) == {"fad", "fad_inf", "fad_inf_without_replacement"}
    assert table["ci_low"].isna().all()  # --bootstrap 0
    # the same clips (m1/10 and m2/10 were written with the same seed) give the same scores
    m1, m2 = (table[(table["model"] == m) & (table["steps"] == 10)]["value"].to_numpy() for m in ("m1", "m2"))
    np.testing.assert_array_equal(m1, m2)


def test_python_api_deterministic_and_batch_independent(inputs, checkpoints) -> None:
    job = sc.ScoreJob("tiny", "synthetic", 10, inputs["generated"], inputs["reference"], inputs["captions"])
    settings = sc.ScoreSettings(n_resamples=30, progress=False)
    planned = sc.plan_jobs([job], settings)
    fad = load_embedder(checkpoints["fad"], device="cpu", batch_size=1)
    clap = load_embedder(checkpoints["clap"], device="cpu", batch_size=1)
    first = sc.score_jobs(planned, settings, cache=EmbeddingCache(None), fad_embedder=fad, clap_embedder=clap)
    fad.batch_size = clap.batch_size = 7  # batching several windows (fusion included) changes nothing
    again = sc.score_jobs(
        planned,
        sc.ScoreSettings(n_resamples=30, progress=False, batch_windows=7),
        cache=EmbeddingCache(None),
        fad_embedder=fad,
        clap_embedder=clap,
    )
    pd.testing.assert_frame_equal(first.table.drop(columns="fit_r2"), again.table.drop(columns="fit_r2"),
                                  rtol=1e-5)
    # the FAD-inf fit's R^2 is near 0 where FAD hardly moves with the sample size, and there the last bits of
    # batched embeddings move it by more than 1e-5 of itself (0.015503 against 0.015510 with torch 2.13):
    # compared on its own scale, [0, 1]
    np.testing.assert_allclose(first.table["fit_r2"], again.table["fit_r2"], rtol=0, atol=1e-4)
    assert first.computed == 4 + 4 + 4 + 4 and first.cached == 0  # the two silences share one embedding


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "unreadable",
        "zero_length",
        "missing_audio",
        "extra_audio",
        "missing_checkpoint",
        "bad_captions",
    ],
)
def test_bad_input_is_one_clear_error(case, inputs, checkpoints, capsys) -> None:
    args = _cli(inputs, checkpoints)
    gen = inputs["generated"]
    if case == "empty":
        for p in gen.iterdir():
            p.unlink()
        expected = f"{gen}: no audio files"
    elif case == "unreadable":
        (gen / "tone.wav").write_bytes(b"RIFF not really a wave file")
        expected = f"{gen / 'tone.wav'}: unreadable audio"
    elif case == "zero_length":
        _write(gen / "tone.wav", np.zeros(0), 16000)
        expected = f"{gen / 'tone.wav'}: zero-length audio"
    elif case == "missing_audio":
        with open(inputs["captions"], "a") as fh:
            fh.write("whistle.wav,a kettle whistles,10.0\n")
        expected = "no audio file for caption 'whistle.wav'"
    elif case == "extra_audio":
        _write(gen / "stray.wav", np.zeros(100), 16000)
        expected = f"no caption for audio file {gen / 'stray.wav'}"
    elif case == "missing_checkpoint":
        args[args.index("--fad-checkpoint") + 1] = str(inputs["tmp"] / "nowhere")
        expected = f"CLAP checkpoint {inputs['tmp'] / 'nowhere'} not found"
    else:
        inputs["captions"].write_text("name,text\nx.wav,hello\n")
        expected = f"{inputs['captions']}: missing column(s) file_name, caption"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0]
    assert not inputs["out"].exists()
    assert _cached_files(inputs["cache"]) == []


def test_bad_audio_found_while_embedding_caches_nothing_of_it(inputs, checkpoints) -> None:
    # a header that passes the check but samples that do not: NaN in a float WAV
    bad = inputs["generated"] / "chirp.wav"
    _write(bad, np.array([0.1, np.nan, 0.2] * 1000, dtype=np.float32), 48000, subtype="FLOAT")
    fad = load_embedder(checkpoints["fad"], device="cpu")
    job = sc.ScoreJob("tiny", "synthetic", None, inputs["generated"], inputs["reference"], inputs["captions"])
    settings = sc.ScoreSettings(metrics=("fad",), n_resamples=0, progress=False, batch_windows=64)
    cache = EmbeddingCache(inputs["cache"])
    with pytest.raises(sc.AudioError, match=f"{bad}: audio contains NaN"):
        sc.score_jobs(sc.plan_jobs([job], settings), settings, cache=cache, fad_embedder=fad)
    assert _cached_files(inputs["cache"]) == []  # the batch holding it was never embedded


def test_per_clip_profiles_keep_the_deterministic_windows(inputs, checkpoints) -> None:
    main(_cli(inputs, checkpoints, "--fad-profile", "per-clip", "--clap-profile", "per-clip", "--hop-s", "1"))
    table = pd.read_csv(inputs["out"]).set_index("metric")
    assert (table["profile"] == "per-clip").all()
    # per-clip CLAP: the 3-s noise as end-aligned 2-s windows every second, their embeddings averaged
    embedder = load_embedder(checkpoints["clap"], device="cpu")
    prep = AudioPrep(peak_dbfs=-1.0, window_s=embedder.window_s, hop_s=1.0)
    windows = split_windows(load_audio(inputs["generated"] / "noise.wav", prep), prep)
    assert [len(w) for w in windows] == [96000, 96000]  # [0, 2] and [1, 3]
    job = sc.ScoreJob("tiny", "synthetic", None, inputs["generated"], inputs["reference"], inputs["captions"])
    settings = sc.ScoreSettings(
        metrics=("fad", "fad_inf"),
        n_resamples=0,
        progress=False,
        fad_profile=parse_fad_profile("per-clip", hop_s=1.0),
    )
    fad = load_embedder(checkpoints["fad"], device="cpu")
    result = sc.score_jobs(
        sc.plan_jobs([job], settings), settings, cache=EmbeddingCache(None), fad_embedder=fad
    )
    np.testing.assert_allclose(result.table["value"], table.loc[["fad", "fad_inf"], "value"], rtol=1e-6)
    # the study's profile embeds and samples differently, so it gives other numbers on the same audio
    fadtk = sc.score_jobs(
        sc.plan_jobs([job], sc.ScoreSettings(metrics=("fad", "fad_inf"), n_resamples=0, progress=False)),
        sc.ScoreSettings(metrics=("fad", "fad_inf"), n_resamples=0, progress=False),
        cache=EmbeddingCache(None),
        fad_embedder=fad,
    )
    assert not np.allclose(fadtk.table["value"], result.table["value"])


def test_long_clip_crops_are_seeded_and_leave_numpy_alone(checkpoints) -> None:
    clap = load_embedder(checkpoints["clap"], device="cpu")
    plain = load_embedder(checkpoints["fad"], device="cpu")
    rng = np.random.default_rng(0)
    long_clip = (0.3 * rng.standard_normal(int(5.5 * 48000))).astype(np.float32)  # 5.5 s, 2-s model windows
    short = (0.3 * rng.standard_normal(48000)).astype(np.float32)
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    for model in (clap, plain):  # fusion: 3 random mel crops + shrunk clip; non-fusion: one random crop
        a = model.embed_windows([long_clip, short], [7, 0])
        b = model.embed_windows([short, long_clip], [0, 7])
        np.testing.assert_allclose(a[0], b[1], atol=1e-6)  # same seed, same crops, whatever the batch
        np.testing.assert_allclose(a[1], b[0], atol=1e-6)
        c = model.embed_windows([long_clip], [8])
        assert not np.allclose(a[0], c[0], atol=1e-4)  # another seed, other crops
        with pytest.raises(ValueError, match="crop seed is needed"):
            model.embed_windows([long_clip])
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # numpy's global state restored
    # the crop is the one the feature extraction takes after numpy.random.seed(seed), as in a peer's process
    np.random.seed(7)
    feats = clap.extractor([long_clip], sampling_rate=48000, truncation="fusion", return_tensors="pt")
    assert bool(feats["is_longer"][0])
    with torch.inference_mode():
        out = clap.model.get_audio_features(
            input_features=feats["input_features"], is_longer=feats["is_longer"].to(torch.bool)
        )
    expected = torch.nn.functional.normalize(getattr(out, "pooler_output", out).float(), dim=-1).numpy()
    np.testing.assert_allclose(clap.embed_windows([long_clip], [7]), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--fad-profile", "fad"), "unknown FAD profile 'fad': choose from fadtk, per-clip"),
        (("--clap-profile", "laion"), "choose from stable-audio-metrics, per-clip"),
        (("--hop-s", "1"), "--hop-s applies to the per-clip profiles"),
        (("--hop", "1"), "--hop-s applies to the per-clip profiles"),  # --hop: the name it had before
    ],
)
def test_bad_profile_is_one_clear_error(extra, expected, inputs, checkpoints, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(_cli(inputs, checkpoints, *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]
    assert not inputs["out"].exists()


def test_captions_may_name_a_bundled_data_set(inputs, checkpoints, capsys) -> None:
    """``--captions clotho`` is the bundled Clotho file, as in ``sweep --captions``: it is read and matched
    against the folder (whose four synthetic clips are not Clotho's, so the match is refused)."""
    args = _cli(inputs, checkpoints)
    args[args.index("--captions") + 1] = "clotho"
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clotho_captions.csv: no audio file for caption" in err[0]
    assert not inputs["out"].exists()
