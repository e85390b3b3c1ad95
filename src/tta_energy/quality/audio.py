"""Audio as CLAP wants it: mono, 48 kHz, optional peak normalisation, int16 round-trip, <= 10 s windows.

* Decoding: soundfile (WAV, FLAC, OGG, ...). Unreadable, empty, zero-length or non-finite audio is an
  :class:`AudioError` naming the file.
* Channels: mean of all channels (what ``librosa.load(mono=True)`` and ``sox -c 1`` do).
* Rate: soxr "HQ" (the SoX resampler behind fadtk's conversion and librosa's default) to 48 kHz.
* Level: stable-audio-metrics peak-normalises every file to -1 dBFS before the CLAP score; fadtk does not
  normalise for FAD. Both are settings (:attr:`AudioPrep.peak_dbfs`). Silence stays silence.
* Quantisation: both peers store/round-trip the audio as int16 (clip to [-1, 1], x * 32767 truncated, /
  32767).
* Length: CLAP takes at most 10 s (480,000 samples) and repeat-pads shorter input itself. How a clip becomes
  windows is :attr:`AudioPrep.windowing` (chosen by the metric profile, :mod:`tta_energy.quality.profiles`):
  ``"end-aligned"`` cuts clips longer than a window into windows starting every ``hop_s`` seconds, the last
  one aligned with the end of the clip (every window is real audio, no random crop); ``"fadtk"`` starts a
  window every ``hop_s`` seconds up to the end and zero-pads each to the full window (fadtk's
  ``clap-laion-audio``); ``"whole"`` passes the clip whole and lets the model crop it, seeded by
  ``crop_seed`` (stable-audio-metrics' CLAP score).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import soxr

from tta_energy.errors import TtaError, first_line

#: CLAP's input: mono audio at 48 kHz in windows of 10 s (the embedders' defaults, :mod:`.embeddings`)
CLAP_SAMPLE_RATE = 48_000
CLAP_WINDOW_S = 10.0
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")
Windowing = Literal["end-aligned", "fadtk", "whole"]
WINDOWINGS: tuple[str, ...] = ("end-aligned", "fadtk", "whole")


class AudioError(TtaError):
    """An audio file that cannot be scored (unreadable, empty, zero-length, NaN)."""


@dataclass(frozen=True)
class AudioPrep:
    """How a file becomes model input; part of the embedding cache key."""

    sample_rate: int = CLAP_SAMPLE_RATE
    peak_dbfs: float | None = None
    int16_roundtrip: bool = True
    window_s: float = CLAP_WINDOW_S
    hop_s: float = CLAP_WINDOW_S
    windowing: Windowing = "end-aligned"
    crop_seed: int | None = None  # "whole": seeds the model's crop of clips longer than a window

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.window_s <= 0 or self.hop_s <= 0:
            raise TtaError(f"audio preparation: sample rate, window and hop must be positive ({self})")
        if self.windowing not in WINDOWINGS:
            raise TtaError(f"audio preparation: windowing {self.windowing!r} is not one of {WINDOWINGS}")
        if self.windowing != "whole" and self.hop_s > self.window_s:
            raise TtaError(
                f"audio preparation: a hop of {self.hop_s} s would skip audio between "
                f"{self.window_s} s windows"
            )

    def key(self) -> str:
        """Short stable hash of the settings (embedding cache key)."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def list_audio_files(folder: Path) -> list[Path]:
    """Audio files directly in ``folder`` (sorted by name); an error when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioError(f"{folder}: not a folder")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in AUDIO_SUFFIXES
    )
    if not files:
        raise AudioError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return files


def check_audio_file(path: Path) -> float:
    """Read the header only; return the duration in seconds. Raises AudioError naming the file when it is
    unreadable, empty, or a WAV holding fewer frames than its header declares (a copy or a write cut short:
    libsndfile would quietly decode what is there, and the score would be of a few milliseconds of audio)."""
    path = Path(path)
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError depending on version
        raise AudioError(f"{path}: unreadable audio ({first_line(exc)})") from exc
    declared = wav_declared_frames(path)
    if declared is not None and info.frames < declared:
        raise AudioError(f"{path} is truncated: its header declares {declared} frames, {info.frames} are "
                         "there (a copy or a write cut short)")
    if info.frames <= 0 or info.samplerate <= 0:
        raise AudioError(f"{path}: zero-length audio")
    return info.frames / info.samplerate


#: the data size a streaming WAV writer leaves when it cannot go back to fill it in: no length declared
_OPEN_WAV_SIZES = (0, 0xFFFFFFFF)


def wav_declared_frames(path: Path) -> int | None:
    """The frames a RIFF WAV file's header declares (its ``data`` chunk's size over the ``fmt`` block size),
    which libsndfile does not compare with what the file holds; None for another format, a header cut before
    its ``data`` chunk (libsndfile names that one) or a size a streaming writer left open."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        while len(chunk := fh.read(8)) == 8:
            name, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if name == b"data":
                return size // block_align if block_align and size not in _OPEN_WAV_SIZES else None
            if name == b"fmt ":
                fmt = fh.read(size)
                block_align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                fh.seek(size & 1, 1)
            else:
                fh.seek(size + (size & 1), 1)  # chunks are padded to an even size
    return None


def load_audio(path: Path, prep: AudioPrep) -> np.ndarray:
    """Decode, downmix, resample, normalise and quantise one file: float32 mono at ``prep.sample_rate``."""
    path = Path(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{path}: unreadable audio ({first_line(exc)})") from exc
    if data.size == 0:
        raise AudioError(f"{path}: zero-length audio")
    if not np.isfinite(data).all():
        raise AudioError(f"{path}: audio contains NaN or Inf samples")
    return prepare_waveform(data, rate, prep)


def prepare_waveform(data: np.ndarray, rate: int, prep: AudioPrep) -> np.ndarray:
    """``data`` (samples,) or (samples, channels) at ``rate`` -> float32 mono at ``prep.sample_rate``."""
    data = np.asarray(data, dtype=np.float32)
    mono = data.mean(axis=1) if data.ndim == 2 else data
    if rate != prep.sample_rate:
        mono = soxr.resample(mono, rate, prep.sample_rate, quality="HQ").astype(np.float32)
    if prep.peak_dbfs is not None:
        peak = float(np.abs(mono).max()) if mono.size else 0.0
        if peak > 0.0:
            mono = mono * np.float32(10.0 ** (prep.peak_dbfs / 20.0) / peak)
    if prep.int16_roundtrip:
        mono = int16_roundtrip(mono)
    return np.ascontiguousarray(mono, dtype=np.float32)


def int16_roundtrip(x: np.ndarray) -> np.ndarray:
    """Quantise to int16 and back as LAION-CLAP's helpers do (clip, x * 32767 truncated, / 32767)."""
    q = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
    return (q / 32767.0).astype(np.float32)


def split_windows(x: np.ndarray, prep: AudioPrep) -> list[np.ndarray]:
    """The model inputs of a prepared waveform, as ``prep.windowing`` says.

    ``"end-aligned"``: a clip no longer than one window is one window (CLAP repeat-pads it); a longer clip
    gives windows starting at 0, hop, 2 hop, ... and, when they do not reach the end, one more aligned with
    the end.
    ``"fadtk"``: a window starts at every multiple of the hop before the end of the clip, and every window
    shorter than ``window_s`` is zero-padded to it (``ceil(length / hop)`` windows: 10 for a 10-s clip with
    1-s hops, 11 for 10.24 s), as fadtk 1.1.0's ``CLAPLaionModel._get_embedding``
    (github.com/microsoft/fadtk, ``fadtk/model_loader.py``) does. ``"whole"``: the clip itself.
    """
    window = int(round(prep.window_s * prep.sample_rate))
    hop = max(1, int(round(prep.hop_s * prep.sample_rate)))
    n = len(x)
    if prep.windowing == "whole":
        return [x]
    if prep.windowing == "fadtk":
        return [np.pad(x[s : s + window], (0, max(0, window - (n - s)))) for s in range(0, n, hop)]
    if n <= window:
        return [x]
    starts = list(range(0, n - window + 1, hop))
    if starts[-1] + window < n:
        starts.append(n - window)
    return [x[s : s + window] for s in starts]


def file_sha256(path: Path) -> str:
    """Content hash of a file (the embedding cache key: content, not path)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
