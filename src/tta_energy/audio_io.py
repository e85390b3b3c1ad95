"""Writing generated audio: WAV files written atomically (temp file in the same folder + ``os.replace``).

A crash or a bad input never leaves a half-written WAV behind: the file appears complete or not at all.
Samples are written as 32-bit float, as the study's scripts did (``scipy.io.wavfile.write`` of float32).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

from tta_energy.errors import TtaError
from tta_energy.fileio import atomic_path, output_file_folder

WAV_SUBTYPE = "FLOAT"


def nonfinite_audio(waveforms: np.ndarray) -> str | None:
    """What is wrong with generated audio that holds NaN or infinite samples (``N of M audio samples are
    NaN/Inf``), or None when every sample is finite: the rule by which a sweep records ``nan_audio`` and
    ``generate`` refuses to write."""
    finite = np.isfinite(np.asarray(waveforms))
    if finite.all():
        return None
    return f"{int((~finite).sum())} of {finite.size} audio samples are NaN/Inf"


def check_wav_path(path: str | Path) -> Path:
    """``path`` when a WAV can be written there: a ``.wav`` name, in a folder that exists, and not itself a
    folder; else :class:`TtaError` with one line naming the path and what is expected (a file in the
    folder's place, or above it, is named as a file)."""
    path = Path(path)
    if path.suffix.lower() != ".wav":
        raise TtaError(f"output file {path} must end in .wav")
    output_file_folder(path)
    if path.is_dir():
        raise TtaError(f"output file {path} is a folder: a file is expected")
    return path


def write_wav(path: str | Path, waveform: np.ndarray, sample_rate: int, subtype: str = WAV_SUBTYPE) -> Path:
    """Write one clip, ``(samples,)`` or ``(channels, samples)``, to ``path`` atomically."""
    path = check_wav_path(path)
    data = np.asarray(waveform, dtype=np.float32)
    if data.ndim == 2:
        data = data.T  # soundfile wants (frames, channels)
    elif data.ndim != 1:
        raise TtaError(f"a waveform must be (samples,) or (channels, samples), got shape {data.shape}")
    if sample_rate <= 0:
        raise TtaError(f"sample rate must be > 0, got {sample_rate}")
    with atomic_path(path, suffix=".wav.tmp") as tmp:
        soundfile.write(tmp, data, int(sample_rate), subtype=subtype, format="WAV")
    return path


def clip_paths(path: str | Path, n_clips: int) -> list[Path]:
    """``FILE.wav`` for one clip; ``FILE_0.wav``, ``FILE_1.wav``, ... for several."""
    path = Path(path)
    if n_clips == 1:
        return [path]
    return [path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n_clips)]


def write_clips(path: str | Path, waveforms: np.ndarray, sample_rate: int) -> list[Path]:
    """Write ``(n_clips, channels, samples)`` waveforms as one WAV per clip (see :func:`clip_paths`)."""
    waveforms = np.asarray(waveforms)
    if waveforms.ndim != 3:
        raise TtaError(f"waveforms must be (clips, channels, samples), got shape {waveforms.shape}")
    paths = clip_paths(path, waveforms.shape[0])
    for p, clip in zip(paths, waveforms, strict=True):
        write_wav(p, clip, sample_rate)
    return paths
