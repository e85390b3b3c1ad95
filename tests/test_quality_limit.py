"""``tta-energy score --caption-limit N``: score what ``tta-energy sweep -e quality --caption-limit N`` wrote.

The sweep generates clips for the first N captions of each caption file only, into
``<audio-dir>/<model>/<dataset>/<steps>/<file_name>``. The folders are laid out here with the sweep's own
configurations (:func:`tta_energy.experiments.grids.build_configs` and ``audio_path``), filled with short
synthetic clips, and scored with a tiny random-weight CLAP checkpoint (CPU, offline).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from tta_energy.cli.main import main  # noqa: E402
from tta_energy.errors import TtaError  # noqa: E402
from tta_energy.experiments.grids import GridRequest, audio_path, build_configs  # noqa: E402
from tta_energy.quality.clap_score import CaptionError, match_captions  # noqa: E402
from tta_energy.quality.replica import write_clap_checkpoint  # noqa: E402
from tta_energy.quality.score import ScoreSettings, sweep_captions  # noqa: E402

# the first captions of the bundled files, in file order (src/tta_energy/data/*_captions.csv)
AUDIOCAPS_FIRST = ["105040.wav", "106805.wav", "22816.wav"]
CLOTHO_FIRST = ["sharp smashing ice.wav", "Pasir Panjang Calm Ocean.wav"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clap_checkpoint(tmp_path_factory.mktemp("clap") / "tiny-fused", fusion=True, size="tiny")


def _sweep_tree(root: Path, limit: int | None, steps: str = "10") -> Path:
    """The WAVs ``sweep -m audioldm -e quality --grid <steps> --caption-limit <limit>`` writes (short
    noise)."""
    request = GridRequest(experiment="quality", model="audioldm", grid=[steps], limit=limit)
    rng = np.random.default_rng(0)
    for config in build_configs(request):
        path = audio_path(root, config)
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), 0.2 * rng.standard_normal(8000), 16000)
    return root


def _score(tree: Path, checkpoint: Path, out: Path, *extra: str, metrics: str = "clap") -> list[str]:
    return [
        "score", "--tree", str(tree), "--metrics", metrics, "--checkpoint", str(checkpoint),
        "--out", str(out), "--bootstrap", "0", "--no-cache", "--device", "cpu", "--quiet", *extra,
    ]  # fmt: skip


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_limit_scores_the_captions_a_limited_sweep_made_clips_for(tmp_path, checkpoint, capsys) -> None:
    tree = _sweep_tree(tmp_path / "outputs" / "audio", limit=2)
    out, per_clip = tmp_path / "scores.csv", tmp_path / "per_clip.csv"
    # without --caption-limit every caption of the file needs its clip: the error names the one that fits
    err = _one_error(capsys, _score(tree, checkpoint, out))
    assert "audiocaps_captions.csv: no audio file for caption '22816.wav'" in err
    assert ("the first 2 of the 300 captions only: for a sweep run with --caption-limit 2, score with "
            "--caption-limit 2") in err
    assert not out.exists()

    main(_score(tree, checkpoint, out, "--caption-limit", "2", "--per-clip", str(per_clip)))
    table = pd.read_csv(out)
    assert table[["model", "dataset", "steps", "metric", "n_generated"]].values.tolist() == [
        ["audioldm", "audiocaps", 10, "clap", 2],
        ["audioldm", "clotho", 10, "clap", 2],
    ]
    assert np.isfinite(table["value"]).all()
    clips = pd.read_csv(per_clip)
    assert clips[clips["dataset"] == "audiocaps"]["caption_id"].tolist() == AUDIOCAPS_FIRST[:2]
    assert clips[clips["dataset"] == "clotho"]["caption_id"].tolist() == CLOTHO_FIRST
    assert "scored 2 configuration(s) [clap]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("limit", "metrics", "expected"),
    [
        ("0", "clap",
         "--caption-limit must be >= 1 (the first N captions of each caption file, as in sweep), got 0"),
        ("2", "fad", "--caption-limit cuts the caption files of the CLAP score; add clap to --metrics"),
        (
            "1",
            "clap",
            "no caption for audio file {tree}/audioldm/audiocaps/10/106805.wav; --caption-limit 1 keeps only "
            "the first 1 captions of the caption file",
        ),
        (
            "5",
            "clap",
            "no audio file for caption '22816.wav' in {tree}/audioldm/audiocaps/10 (the folder holds the "
            "clips of the first 2 of the 5 captions --caption-limit 5 keeps only: for a sweep run with "
            "--caption-limit 2, score with --caption-limit 2)",
        ),
    ],
)
def test_bad_limit_is_one_clear_error(limit, metrics, expected, tmp_path, checkpoint, capsys) -> None:
    tree = _sweep_tree(tmp_path / "audio", limit=2)
    out = tmp_path / "scores.csv"
    err = _one_error(capsys, _score(tree, checkpoint, out, "--caption-limit", limit, metrics=metrics))
    assert expected.format(tree=tree) in err
    assert not out.exists()


def test_sweep_captions_cut_like_the_sweep(tmp_path) -> None:
    captions = tmp_path / "mine.csv"
    captions.write_text("file_name,caption,duration\nb.wav,second,\na.wav,first,\nc.wav,third,\n")
    assert sweep_captions(captions, 2)[["file_name", "caption"]].values.tolist() == [
        ["b.wav", "second"],
        ["a.wav", "first"],
    ]
    assert sweep_captions(captions, 10)["file_name"].tolist() == ["b.wav", "a.wav", "c.wav"]
    assert sweep_captions(captions)["file_name"].tolist() == ["b.wav", "a.wav", "c.wav"]
    request = GridRequest(experiment="quality", model="audioldm", grid=["10"], captions=[captions], limit=2)
    assert [c.caption_id for c in build_configs(request)] == ["b.wav", "a.wav"]
    with pytest.raises(TtaError, match="--caption-limit must be >= 1"):
        ScoreSettings(caption_limit=0)  # the Python API refuses it too


def test_limit_hint_only_when_the_clips_are_the_first_captions(tmp_path) -> None:
    captions = pd.DataFrame({"file_name": ["a.wav", "b.wav", "c.wav"], "caption": ["x", "y", "z"]})
    with pytest.raises(CaptionError, match=r"'b.wav' in \S+ \(the folder holds the clips of the first 1 of"):
        match_captions(captions, [tmp_path / "a.wav"])
    # clips of the first and the third caption: no --caption-limit makes that folder, so none is suggested
    with pytest.raises(CaptionError) as info:
        match_captions(captions, [tmp_path / "a.wav", tmp_path / "c.wav"])
    assert str(info.value) == f"no audio file for caption 'b.wav' in {tmp_path}"
    with pytest.raises(CaptionError) as info:  # not even the first caption has a clip
        match_captions(captions, [tmp_path / "z.wav"])
    assert str(info.value) == f"no audio file for caption 'a.wav' in {tmp_path}"
