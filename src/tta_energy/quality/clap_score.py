"""CLAP score: mean cosine similarity between each caption's text embedding and its clip's audio embedding.

Captions come as the study's files (``file_name, caption, duration``, e.g.
``inferences/quality_metrics/CLAP/audiocaps_captions.csv``) and are matched to generated clips by file name,
as the study did (stable-audio-metrics looks each clip up by its id). A clip matches a caption when its file
name equals the caption's ``file_name``, when its stem equals the caption's stem (``105040.flac`` for
``105040.wav``), or when it is named as the study's scripts named clips, ``<anything>-<file_name>``
(``AudioLDM_10-steps-105040.wav``). Every caption needs exactly one clip and every clip one caption; anything
else is an error naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from tta_energy.errors import TtaError

CAPTION_COLUMNS = ("file_name", "caption")
#: The caption sets bundled in ``tta_energy/data/`` by the name the commands accept: the study's 300 AudioCaps
#: and 300 Clotho captions (``inferences/quality_metrics/CLAP/`` of its repository).
BUNDLED_CAPTIONS: tuple[str, ...] = ("audiocaps", "clotho")


def bundled_captions(name: str) -> Path | None:
    """The bundled caption file ``name`` (one of :data:`BUNDLED_CAPTIONS`, any case) names, else None."""
    if name.lower() not in BUNDLED_CAPTIONS:
        return None
    path = Path(str(resources.files("tta_energy").joinpath("data", f"{name.lower()}_captions.csv")))
    return path if path.is_file() else None


class CaptionError(TtaError):
    """A caption file that cannot be read or does not match the audio."""


@dataclass(frozen=True)
class CaptionMatch:
    caption_id: str  # the caption's file_name
    caption: str
    audio: Path


def read_captions(path: Path) -> pd.DataFrame:
    """A caption table (``file_name, caption[, duration]``) with unique, non-empty file names and captions."""
    path = Path(path)
    if path.is_dir():
        raise CaptionError(f"caption file {path} is a folder: give a CSV file (file_name, caption, duration)")
    if not path.is_file():
        raise CaptionError(f"{path}: caption file not found")
    try:
        df = pd.read_csv(path, dtype={"file_name": str, "caption": str}, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CaptionError(f"{path}: unreadable caption file ({str(exc).splitlines()[0]})") from exc
    missing = [c for c in CAPTION_COLUMNS if c not in df.columns]
    if missing:
        raise CaptionError(
            f"{path}: missing column(s) {', '.join(missing)} (expected file_name, caption, duration)"
        )
    if df.empty:
        raise CaptionError(f"{path}: no captions")
    df["file_name"] = df["file_name"].str.strip()
    empty = df[(df["file_name"] == "") | (df["caption"].str.strip() == "")]
    if not empty.empty:
        raise CaptionError(f"{path}: row {int(empty.index[0]) + 2} has an empty file_name or caption")
    dup = df["file_name"][df["file_name"].duplicated()]
    if not dup.empty:
        raise CaptionError(f"{path}: file_name {dup.iloc[0]!r} appears more than once")
    check_caption_file_names(df, path)
    check_caption_durations(df, path)
    return df.reset_index(drop=True)


def bare_file_name(name: str) -> bool:
    """Whether ``name`` names a file in a folder, not a path: no folder part (``/`` or ``\\``), not ``.`` or
    ``..``, not absolute."""
    return PurePosixPath(name).name == name and "\\" not in name and name not in (".", "..")


def check_caption_file_names(df: pd.DataFrame, path: Path) -> None:
    """Every ``file_name`` is a bare file name: the quality sweep writes each clip as
    ``<audio-dir>/<model>/<dataset>/<steps>/<file_name>`` and ``score`` reads it from the same place, so a
    path there (``../x.wav``, ``a/b.wav``, an absolute one) would point outside that folder."""
    for i, name in enumerate(df["file_name"]):
        if not bare_file_name(name):
            raise CaptionError(f"{path}: row {i + 2} has file_name {name!r}: a bare file name is expected "
                               "(no folder, '..' or absolute path): each clip lives at "
                               "<audio-dir>/<model>/<dataset>/<steps>/<file_name>")


def check_caption_durations(df: pd.DataFrame, path: Path) -> None:
    """The optional ``duration`` column holds seconds > 0 (a blank cell is allowed: the value is informative),
    so a typo is named rather than silently ignored."""
    if "duration" not in df.columns:
        return
    for i, (file_name, value) in enumerate(zip(df["file_name"], df["duration"], strict=True)):
        text = str(value).strip()
        if text == "" or (isinstance(value, float) and value != value):  # blank, read as text or as NaN
            continue
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
        if not 0 < seconds < float("inf"):
            raise CaptionError(f"{path}: row {i + 2} (file_name {str(file_name).strip()!r}): column duration "
                               f"is {text!r}; give seconds > 0 or leave it blank")


def match_captions(
    captions: pd.DataFrame,
    audio_files: list[Path],
    *,
    captions_path: Path | None = None,
    limit: int | None = None,
) -> list[CaptionMatch]:
    """Pair each caption with exactly one audio file, in caption order.

    ``limit`` is the ``--caption-limit`` the captions were cut to (named in the errors). A folder holding the
    clips of only the first captions is what ``sweep --caption-limit N`` writes, so that error says which
    ``--caption-limit`` fits.
    """
    where = f"{captions_path}: " if captions_path else ""
    by_name = {p.name: p for p in audio_files}
    by_stem: dict[str, list[Path]] = {}
    for p in audio_files:
        by_stem.setdefault(p.stem, []).append(p)
    matches: list[CaptionMatch] = []
    used: dict[Path, str] = {}
    for file_name, caption in zip(captions["file_name"], captions["caption"], strict=True):
        found = _find(file_name, by_name, by_stem, audio_files)
        if not found:
            folder = audio_files[0].parent if audio_files else "the audio folder"
            raise CaptionError(
                f"{where}no audio file for caption {file_name!r} in {folder}"
                + _limit_hint(len(matches), len(captions), len(audio_files), limit)
            )
        if len(found) > 1:
            raise CaptionError(
                f"{where}caption {file_name!r} matches several audio files: "
                f"{', '.join(p.name for p in found)}"
            )
        audio = found[0]
        if audio in used:
            raise CaptionError(f"{where}{audio} matches captions {used[audio]!r} and {file_name!r}")
        used[audio] = file_name
        matches.append(CaptionMatch(file_name, caption, audio))
    extra = [p for p in audio_files if p not in used]
    if extra:
        raise CaptionError(
            f"{where}no caption for audio file {extra[0]}"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            + (
                f"; --caption-limit {limit} keeps only the first {limit} captions of the caption file (leave "
                "it out to score every caption)"
                if limit is not None
                else ""
            )
        )
    return matches


def _find(
    file_name: str, by_name: dict[str, Path], by_stem: dict[str, list[Path]], audio_files: list[Path]
) -> list[Path]:
    if file_name in by_name:
        return [by_name[file_name]]
    stem = Path(file_name).stem
    if stem in by_stem:
        return by_stem[stem]
    return [p for p in audio_files if p.name.endswith(f"-{file_name}") or p.stem.endswith(f"-{stem}")]


def _limit_hint(matched: int, n_captions: int, n_audio: int, limit: int | None) -> str:
    """When every clip belongs to the first ``matched`` captions and the rest have none (what
    ``sweep --caption-limit`` writes), the ``--caption-limit`` that scores the folder; otherwise nothing."""
    if not 0 < matched == n_audio:
        return ""
    kept = f" --caption-limit {limit} keeps" if limit is not None else ""
    return (
        f" (the folder holds the clips of the first {matched} of the {n_captions} captions{kept} only: "
        f"for a sweep run with --caption-limit {matched}, score with --caption-limit {matched})"
    )


def cosine_similarities(text_embeddings: np.ndarray, audio_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity (float64) of two (n, d) arrays."""
    t = np.asarray(text_embeddings, dtype=np.float64)
    a = np.asarray(audio_embeddings, dtype=np.float64)
    if t.shape != a.shape or t.ndim != 2:
        raise ValueError(
            f"text and audio embeddings must have the same (n, d) shape, got {t.shape} and {a.shape}"
        )
    norms = np.linalg.norm(t, axis=1) * np.linalg.norm(a, axis=1)
    if (norms == 0).any():
        raise ValueError("a zero embedding has no cosine similarity")
    return (t * a).sum(axis=1) / norms


def clip_embedding(window_embeddings: np.ndarray) -> np.ndarray:
    """One unit vector per clip: the normalised mean of its window embeddings (one window for <= 10 s)."""
    mean = np.asarray(window_embeddings, dtype=np.float64).mean(axis=0)
    return mean / np.linalg.norm(mean)
