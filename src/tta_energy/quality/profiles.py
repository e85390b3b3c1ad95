"""Metric profiles: which tool's procedure a score reproduces, named after that tool.

A profile fixes everything between a folder of audio files and a number that the metric itself leaves open:
how a clip becomes model inputs (windows, hop, padding, random crops), how embeddings are stored, and how
FAD-inf samples. The defaults are the study's tools (arXiv 2505.07615 scored FAD-inf with fadtk's
``clap-laion-audio`` and the CLAP score with stable-audio-metrics); ``per-clip`` keeps the project's own
deterministic procedure. A profile is parsed once from its name (:func:`parse_fad_profile`,
:func:`parse_clap_profile`) and travels as an object; its name goes into every score row.

======================  ===============================================  =====================================
                        ``fadtk`` (FAD, FAD-inf)                         ``per-clip``
======================  ===============================================  =====================================
windows                 one every 1 s up to the end of the clip          one per 10 s, last one end-aligned
padding                 every window zero-padded to 10 s                 clips <= 10 s repeat-padded by CLAP
embeddings              rounded to float16 (fadtk stores them so)        float32
statistics              per-file means in float16, pooled per file       float64 over all embeddings
FAD-inf sizes           ``linspace(500, N)`` even when N < 500           from N / 2 when N < 500
FAD-inf draws           ``RandomState(seed)`` (fadtk's global RNG)       ``default_rng(seed)``
======================  ===============================================  =====================================

The CLAP score: ``stable-audio-metrics`` passes each clip whole, so a clip longer than the model's window is
cropped by the model's feature extraction (fusion checkpoints: the whole clip shrunk plus three random 10-s
crops; others: one random 10-s crop), with numpy's generator seeded per clip from the profile's seed and the
file's content; ``per-clip`` averages the embeddings of end-aligned 10-s windows.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tta_energy.errors import TtaError

if TYPE_CHECKING:  # the CLI reads the names and defaults here without loading numpy or audio libraries
    from tta_energy.quality.audio import AudioPrep, Windowing
    from tta_energy.quality.frechet import FadInfProcedure

FAD_PROFILES = ("fadtk", "per-clip")
CLAP_PROFILES = ("stable-audio-metrics", "per-clip")
DEFAULT_FAD_PROFILE = "fadtk"
DEFAULT_CLAP_PROFILE = "stable-audio-metrics"
#: fadtk's ``clap-laion-audio`` starts a window every second.
FADTK_HOP_S = 1.0


class ProfileError(TtaError):
    """An unknown profile name or a setting the profile does not take."""


@dataclass(frozen=True)
class _Profile:
    name: str
    windowing: Windowing
    hop_s: float | None  # seconds between window starts; None: one window length

    def audio_prep(self, base: AudioPrep, *, sample_rate: int, window_s: float) -> AudioPrep:
        """``base`` (level, quantisation) with the model's rate and window and this profile's windows."""
        return replace(
            base,
            sample_rate=sample_rate,
            window_s=window_s,
            hop_s=self.hop_s or window_s,
            windowing=self.windowing,
            crop_seed=self.crop_seed,
        )

    @property
    def crop_seed(self) -> int | None:
        return None


@dataclass(frozen=True)
class FadProfile(_Profile):
    """How FAD and FAD-inf turn clips into embeddings and sample them."""

    float16: bool = False  # round embeddings to float16 and pool statistics per file, as fadtk does
    fad_inf: FadInfProcedure = "per-clip"


@dataclass(frozen=True)
class ClapProfile(_Profile):
    """How the CLAP score turns a clip into one audio embedding."""

    seed: int = 0  # "whole": seed of the model's random crops of clips longer than a window

    @property
    def crop_seed(self) -> int | None:
        return self.seed if self.windowing == "whole" else None


def parse_fad_profile(name: str, *, hop_s: float | None = None) -> FadProfile:
    """The FAD profile called ``name``; ``hop_s`` only for ``per-clip`` (fadtk's hop is 1 s)."""
    if name == "fadtk":
        if hop_s is not None:
            raise ProfileError("--hop-s applies to the per-clip profiles; fadtk starts a window every 1 s")
        return FadProfile("fadtk", "fadtk", FADTK_HOP_S, float16=True, fad_inf="fadtk")
    if name == "per-clip":
        _check_hop(hop_s)
        return FadProfile("per-clip", "end-aligned", hop_s, float16=False, fad_inf="per-clip")
    raise ProfileError(f"unknown FAD profile {name!r}: choose from {', '.join(FAD_PROFILES)}")


def parse_clap_profile(name: str, *, hop_s: float | None = None, seed: int = 0) -> ClapProfile:
    """The CLAP-score profile called ``name``; ``hop_s`` only for ``per-clip``, ``seed`` for the crops."""
    if name == "stable-audio-metrics":
        if hop_s is not None:
            raise ProfileError(
                "--hop-s applies to the per-clip profiles; stable-audio-metrics lets CLAP crop long clips"
            )
        return ClapProfile("stable-audio-metrics", "whole", None, seed=seed)
    if name == "per-clip":
        _check_hop(hop_s)
        return ClapProfile("per-clip", "end-aligned", hop_s)
    raise ProfileError(f"unknown CLAP-score profile {name!r}: choose from {', '.join(CLAP_PROFILES)}")


def clip_crop_seed(seed: int, content_sha256: str) -> int:
    """A clip's crop seed: from the profile's seed and the file's content, so batching and order do not
    matter and two copies of one file get the same crops."""
    digest = hashlib.sha256(f"{seed}:{content_sha256}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def _check_hop(hop_s: float | None) -> None:
    if hop_s is not None and not hop_s > 0:
        raise ProfileError(f"--hop-s {hop_s}: must be a positive number of seconds")
