"""CLAP score arithmetic, caption matching, audio preparation, cache and checkpoint lookup (no model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from tta_energy.intervals import half_sampling_interval, percentile_bootstrap_mean
from tta_energy.quality.audio import (
    AudioError,
    AudioPrep,
    int16_roundtrip,
    list_audio_files,
    load_audio,
    prepare_waveform,
    split_windows,
)
from tta_energy.quality.cache import EmbeddingCache
from tta_energy.quality.clap_score import (
    BUNDLED_CAPTIONS,
    CaptionError,
    bundled_captions,
    clip_embedding,
    cosine_similarities,
    match_captions,
    read_captions,
)
from tta_energy.quality.embeddings import (
    STUDY_CLAP_SCORE_CHECKPOINT,
    STUDY_FAD_CHECKPOINT,
    CheckpointError,
    ClapEmbedder,
    detect_backend,
    load_embedder,
    resolve_checkpoint,
)
from tta_energy.quality.frechet import frechet_distance_embeddings
from tta_energy.quality.profiles import ProfileError, clip_crop_seed, parse_clap_profile, parse_fad_profile
from tta_energy.quality.score import discover_tree


def test_cosine_similarity_by_hand() -> None:
    text = np.array([[1.0, 0.0, 0.0], [0.0, 3.0, 4.0], [1.0, 1.0, 0.0]])
    audio = np.array([[0.6, 0.8, 0.0], [0.0, 0.0, 2.0], [-1.0, -1.0, 0.0]])
    # 0.6 / 1; (4 * 2) / (5 * 2) = 0.8; -2 / (sqrt2 * sqrt2) = -1
    np.testing.assert_allclose(cosine_similarities(text, audio), [0.6, 0.8, -1.0], rtol=1e-12)
    assert cosine_similarities(text, audio).mean() == pytest.approx((0.6 + 0.8 - 1.0) / 3)
    with pytest.raises(ValueError, match="zero embedding"):
        cosine_similarities(np.zeros((1, 3)), audio[:1])


def test_clip_embedding_is_normalised_mean_of_windows() -> None:
    windows = np.array([[1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(clip_embedding(windows), [np.sqrt(0.5), np.sqrt(0.5)])
    np.testing.assert_allclose(clip_embedding(windows[:1]), [1.0, 0.0])


def test_percentile_bootstrap_is_seeded_and_brackets_the_mean() -> None:
    values = np.random.default_rng(0).normal(0.3, 0.1, size=300)
    low, high = percentile_bootstrap_mean(values, n_resamples=2000, seed=3)
    assert (low, high) == percentile_bootstrap_mean(values, n_resamples=2000, seed=3)
    assert low < values.mean() < high
    # about +-1.96 standard errors
    assert high - low == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(300), rel=0.15)
    assert np.isnan(percentile_bootstrap_mean(values, n_resamples=0, seed=0)[0])


def test_half_sampling_interval_covers_fad_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    gen = [row[None, :] for row in rng.normal(size=(60, 8))]
    ref = [row[None, :] for row in rng.normal(size=(50, 8)) + 0.3]
    value = frechet_distance_embeddings(np.concatenate(gen), np.concatenate(ref))
    low, high = half_sampling_interval(gen, ref, frechet_distance_embeddings, value, n_resamples=200, seed=0)
    assert low < value < high
    assert (low, high) == half_sampling_interval(
        gen, ref, frechet_distance_embeddings, value, n_resamples=200, seed=0
    )
    assert np.isnan(
        half_sampling_interval(gen[:3], ref, frechet_distance_embeddings, value, n_resamples=10, seed=0)[0]
    )


def test_with_replacement_bootstrap_would_inflate_fad() -> None:
    # why FAD uses half-sampling: fewer clips than dimensions, repeated clips shrink the covariance rank and
    # push every with-replacement replicate above the estimate; the half-sampling interval brackets it
    rng = np.random.default_rng(2)
    gen, ref = rng.normal(size=(40, 64)), rng.normal(size=(40, 64)) + 0.05
    value = frechet_distance_embeddings(gen, ref)
    boot = [
        frechet_distance_embeddings(gen[rng.integers(0, 40, 40)], ref[rng.integers(0, 40, 40)])
        for _ in range(50)
    ]
    assert min(boot) > 1.2 * value
    low, high = half_sampling_interval(
        list(gen[:, None]), list(ref[:, None]), frechet_distance_embeddings, value, n_resamples=100, seed=0
    )
    assert low < value < high


def _captions(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "caps.csv"
    pd.DataFrame(
        {"file_name": names, "caption": [f"sound {i}" for i in range(len(names))], "duration": 10.0}
    ).to_csv(path, index=False)
    return path


def test_caption_matching_rules(tmp_path: Path) -> None:
    caps = read_captions(_captions(tmp_path, ["105040.wav", "sharp smashing ice.wav", "77.wav"]))
    files = [tmp_path / n for n in ("AudioLDM_10-steps-105040.wav", "sharp smashing ice.wav", "77.flac")]
    matches = match_captions(caps, files)
    assert [(m.caption_id, m.audio.name) for m in matches] == [
        ("105040.wav", "AudioLDM_10-steps-105040.wav"),
        ("sharp smashing ice.wav", "sharp smashing ice.wav"),
        ("77.wav", "77.flac"),
    ]
    with pytest.raises(CaptionError, match="several audio files"):
        match_captions(caps, [*files, tmp_path / "77.wav.flac", tmp_path / "77.ogg"])


def test_the_studys_caption_files_read(tmp_path: Path) -> None:
    for dataset in BUNDLED_CAPTIONS:
        df = read_captions(bundled_captions(dataset))
        assert len(df) == 300 and df["file_name"].is_unique
    assert bundled_captions("musiccaps") is None and bundled_captions("Clotho") == bundled_captions("clotho")
    # the one list of names is what the package ships
    shipped = bundled_captions("clotho").parent.glob("*_captions.csv")
    assert {p.name.removesuffix("_captions.csv") for p in shipped} == set(BUNDLED_CAPTIONS)
    dup = tmp_path / "dup.csv"
    dup.write_text("file_name,caption,duration\na.wav,x,1\na.wav,y,1\n")
    with pytest.raises(CaptionError, match="'a.wav' appears more than once"):
        read_captions(dup)
    with pytest.raises(CaptionError, match="caption file not found"):
        read_captions(tmp_path / "none.csv")


def test_audio_preparation(tmp_path: Path) -> None:
    rate = 44100
    t = np.arange(rate) / rate
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 1000 * t), 0.1 * np.sin(2 * np.pi * 1000 * t)], axis=1)
    out = prepare_waveform(stereo, rate, AudioPrep(peak_dbfs=None))
    assert out.dtype == np.float32 and out.shape == (48000,)
    assert np.abs(out).max() == pytest.approx(0.3, rel=0.01)  # mean of the channels
    # int16 grid: x * 32767 is an integer
    np.testing.assert_allclose(out * 32767.0, np.round(out * 32767.0), atol=1e-3)
    normalised = prepare_waveform(stereo, rate, AudioPrep(peak_dbfs=-1.0))
    assert np.abs(normalised).max() == pytest.approx(10 ** (-1 / 20), abs=1e-4)
    silence = prepare_waveform(np.zeros(1000), 48000, AudioPrep(peak_dbfs=-1.0))
    assert not silence.any()  # silence is not scaled into NaN
    np.testing.assert_array_equal(
        int16_roundtrip(np.array([2.0, -2.0, 0.5])), np.array([1.0, -1.0, 16383 / 32767], dtype=np.float32)
    )
    path = tmp_path / "clip.wav"
    sf.write(str(path), stereo, rate)
    np.testing.assert_allclose(load_audio(path, AudioPrep()), out, atol=2 / 32767)
    (tmp_path / ".hidden.wav").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    assert list_audio_files(tmp_path) == [path]
    with pytest.raises(AudioError, match="not a folder"):
        list_audio_files(tmp_path / "missing")


def test_windows_are_deterministic_and_cover_the_clip() -> None:
    prep = AudioPrep(sample_rate=10, window_s=10.0, hop_s=10.0)
    x = np.arange(250, dtype=np.float32)  # 25 s
    windows = split_windows(x, prep)
    assert [(int(w[0]), len(w)) for w in windows] == [
        (0, 100),
        (100, 100),
        (150, 100),
    ]  # last one end-aligned
    assert [int(w[0]) for w in split_windows(x[:100], prep)] == [0]
    assert len(split_windows(x[:40], prep)[0]) == 40  # short clips go to CLAP as they are (it repeat-pads)
    hop = AudioPrep(sample_rate=10, window_s=10.0, hop_s=5.0)
    assert [int(w[0]) for w in split_windows(x, hop)] == [0, 50, 100, 150]
    with pytest.raises(ValueError, match="skip audio"):
        AudioPrep(window_s=10.0, hop_s=12.0)


def test_cache_roundtrip_is_atomic_and_content_keyed(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    key = EmbeddingCache.key("audio", "abc", AudioPrep().key())
    assert key != EmbeddingCache.key("audio", "abc", AudioPrep(peak_dbfs=-1.0).key())
    assert cache.load("hf:m@1", "audio", key, 4) is None
    emb = np.arange(8, dtype=np.float64).reshape(2, 4)
    cache.store("hf:m@1", "audio", key, emb)
    got = cache.load("hf:m@1", "audio", key, 4)
    assert got.dtype == np.float32 and np.array_equal(got, emb.astype(np.float32))
    assert cache.load("hf:m@2", "audio", key, 4) is None  # another checkpoint, another entry
    assert cache.load("hf:m@1", "audio", key, 5) is None  # wrong width is a miss, not an error
    with pytest.raises(ValueError, match="non-finite"):
        cache.store("hf:m@1", "audio", EmbeddingCache.key("x"), np.full((1, 4), np.nan))
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.npy"]  # no temp files left
    cache.path("hf:m@1", "audio", key).write_bytes(b"garbage")
    assert cache.load("hf:m@1", "audio", key, 4) is None
    assert EmbeddingCache(None).load("m", "audio", key, 4) is None


def test_checkpoint_names_and_backends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (STUDY_FAD_CHECKPOINT, STUDY_CLAP_SCORE_CHECKPOINT) == (
        "630k-audioset-best",
        "630k-audioset-fusion-best",
    )
    folder = tmp_path / "ckpts"
    (folder / STUDY_FAD_CHECKPOINT).mkdir(parents=True)
    (folder / f"{STUDY_CLAP_SCORE_CHECKPOINT}.pt").write_bytes(b"")
    monkeypatch.setenv("TTA_ENERGY_CLAP_DIR", str(folder))
    monkeypatch.chdir(tmp_path)
    fad = resolve_checkpoint(STUDY_FAD_CHECKPOINT)
    clap = resolve_checkpoint(STUDY_CLAP_SCORE_CHECKPOINT)
    assert fad == folder / STUDY_FAD_CHECKPOINT and detect_backend(fad) == "hf"
    assert clap == folder / f"{STUDY_CLAP_SCORE_CHECKPOINT}.pt" and detect_backend(clap) == "laion"
    with pytest.raises(CheckpointError, match="larger_clap_general not found"):
        resolve_checkpoint("larger_clap_general")
    with pytest.raises(CheckpointError, match="config.json: missing"):
        load_embedder(fad)
    with pytest.raises(CheckpointError, match="unknown CLAP backend"):
        detect_backend(fad, "onnx")


def test_an_embedder_without_its_own_rate_and_window_prepares_audio_as_the_default() -> None:
    """CLAP's 48 kHz and 10 s windows: the audio preparation's defaults are the embedders' defaults."""
    prep = AudioPrep()
    assert (ClapEmbedder.sample_rate, ClapEmbedder.window_s) == (prep.sample_rate, prep.window_s) == (
        48_000, 10.0)


def test_laion_backend_is_optional(tmp_path: Path) -> None:
    pt = tmp_path / "630k-audioset-best.pt"
    pt.write_bytes(b"")
    try:
        import laion_clap  # noqa: F401
    except ImportError:
        with pytest.raises(CheckpointError, match=r"tta-energy\[laion\]"):
            load_embedder(pt)
    else:
        with pytest.raises(CheckpointError, match="cannot read"):
            load_embedder(pt, device="cpu")


def test_sweep_tree_discovery(tmp_path: Path) -> None:
    for rel in ("audioldm/audiocaps/10", "audioldm/audiocaps/100", "tango/clotho/25"):
        (tmp_path / rel).mkdir(parents=True)
    assert [(m, d, s) for m, d, s, _ in discover_tree(tmp_path)] == [
        ("audioldm", "audiocaps", 10),
        ("audioldm", "audiocaps", 100),
        ("tango", "clotho", 25),
    ]
    (tmp_path / "tango" / "clotho" / "final").mkdir()
    with pytest.raises(ValueError, match="steps folder"):
        discover_tree(tmp_path)


@pytest.mark.parametrize(
    ("seconds", "fadtk_windows", "per_clip_windows"),
    [(10.0, 10, 1), (10.24, 11, 2), (1.5, 2, 1), (0.4, 1, 1), (20.0, 20, 2)],
)
def test_windows_per_clip_length_by_profile(
    seconds: float, fadtk_windows: int, per_clip_windows: int
) -> None:
    # the real CLAP's 10 s windows at 48 kHz: fadtk starts one every second and zero-pads each to 10 s
    # (a 10 s generation gives 10 embeddings, Tango's 10.24 s 11); per-clip cuts end-aligned 10 s windows
    x = np.random.default_rng(0).uniform(0.1, 1.0, size=int(round(seconds * 48000))).astype(np.float32)
    fadtk = parse_fad_profile("fadtk").audio_prep(AudioPrep(), sample_rate=48000, window_s=10.0)
    windows = split_windows(x, fadtk)
    assert len(windows) == fadtk_windows == int(np.ceil(len(x) / 48000))
    assert all(len(w) == 480000 and w.dtype == np.float32 for w in windows)
    for i, w in enumerate(windows):
        real = min(480000, len(x) - i * 48000)
        np.testing.assert_array_equal(w[:real], x[i * 48000 : i * 48000 + real])
        assert not w[real:].any()  # zero padding, not repetition
    per_clip = parse_fad_profile("per-clip").audio_prep(AudioPrep(), sample_rate=48000, window_s=10.0)
    assert len(split_windows(x, per_clip)) == per_clip_windows
    whole = parse_clap_profile("stable-audio-metrics").audio_prep(
        AudioPrep(), sample_rate=48000, window_s=10.0
    )
    assert [len(w) for w in split_windows(x, whole)] == [len(x)]  # CLAP crops it itself


def test_profiles_parse_once_and_refuse_what_they_do_not_take() -> None:
    fadtk, per_clip = parse_fad_profile("fadtk"), parse_fad_profile("per-clip", hop_s=5.0)
    assert (fadtk.windowing, fadtk.hop_s, fadtk.float16, fadtk.fad_inf) == ("fadtk", 1.0, True, "fadtk")
    assert (per_clip.windowing, per_clip.hop_s, per_clip.float16) == ("end-aligned", 5.0, False)
    sam = parse_clap_profile("stable-audio-metrics", seed=4)
    assert sam.audio_prep(AudioPrep(), sample_rate=48000, window_s=10.0).crop_seed == 4
    assert (
        parse_clap_profile("per-clip").audio_prep(AudioPrep(), sample_rate=48000, window_s=10.0).crop_seed
        is None
    )
    # the preparation (windows, hop, crop seed) is part of the embedding cache key
    keys = {
        p.audio_prep(AudioPrep(), sample_rate=48000, window_s=10.0).key()
        for p in (
            fadtk,
            per_clip,
            parse_fad_profile("per-clip"),
            sam,
            parse_clap_profile("stable-audio-metrics"),
        )
    }
    assert len(keys) == 5
    with pytest.raises(ProfileError, match="unknown FAD profile 'fad': choose from fadtk, per-clip"):
        parse_fad_profile("fad")
    with pytest.raises(ProfileError, match="choose from stable-audio-metrics, per-clip"):
        parse_clap_profile("laion")
    with pytest.raises(ProfileError, match="--hop-s applies to the per-clip profiles"):
        parse_fad_profile("fadtk", hop_s=2.0)
    with pytest.raises(ProfileError, match="positive"):
        parse_clap_profile("per-clip", hop_s=0.0)


def test_crop_seed_depends_on_seed_and_content_only() -> None:
    # the value of every process and machine (a seed from Python's salted hash() would change between
    # processes, and the cached per-clip embeddings with it)
    assert clip_crop_seed(0, "ab" * 32) == 2288422621
    assert len({clip_crop_seed(s, h) for s in (0, 1) for h in ("ab" * 32, "cd" * 32)}) == 4
    assert 0 <= clip_crop_seed(7, "ef" * 32) < 2**32
