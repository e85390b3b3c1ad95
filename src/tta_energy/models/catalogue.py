"""The model catalogue: the one list of models, with everything known about each without building it.

Every list of models, label, plotting order, script name and help text in the package is derived from
:data:`CATALOGUE`. It imports nothing heavy (no torch), so the analysis, the plots and the command line's
early checks can read it cheaply. Adding a model means one adapter module, its bundled configs and one row
here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from tta_energy.errors import ModelError
from tta_energy.models.spacing import steps_problem

SIZES: tuple[str, ...] = ("full", "tiny")


@dataclass(frozen=True)
class ModelDefaults:
    """The settings the study used for a model (all overridable per request)."""

    dtype: str = "float16"
    negative_prompt: str | None = "Low quality."
    guidance_scale: float = 3.0
    duration_s: float = 10.0
    max_duration_s: float = 10.0
    fixed_duration_s: float | None = None  # Tango always makes 10.24 s
    sample_rate: int = 16000
    steps: int = 100
    step_spacing: str = "diffusers"  # how the sampler spaces its steps (models.spacing): which counts run
    train_timesteps: int = 1000
    #: the tiny replica's own audio lengths where its smaller latent differs from the full model's
    tiny_max_duration_s: float | None = None
    tiny_fixed_duration_s: float | None = None

    def at_size(self, size: str) -> ModelDefaults:
        """The settings of a replica of ``size``: at tiny size its own duration limits."""
        if size != "tiny":
            return self
        longest, fixed = self.tiny_max_duration_s, self.tiny_fixed_duration_s
        return replace(self, max_duration_s=self.max_duration_s if longest is None else longest,
                       fixed_duration_s=self.fixed_duration_s if fixed is None else fixed)


@dataclass(frozen=True)
class LeverTargets:
    """What the levers experiment expects of a model (whole generation, 10 s, 100 steps, batch 1, best
    lossless configuration against ``none``) and what its sweep costs."""

    reduction: float | None = None  # energy reduction the best lossless configuration should reach (x)
    ceiling_fraction: float = 0.4  # FLOP per joule of the best configuration, as a fraction of the GPU's
    #: relative cost of the model's levers sweep (measured order of magnitude on an H200), used only to share
    #: a call's time budget between its models
    cost: float = 1.0


@dataclass(frozen=True)
class ModelEntry:
    """One row of the catalogue.

    ``name`` is the canonical name used on the command line and in every table; ``adapter`` is
    ``"module:Class"`` (imported only when the model is built); ``label`` is how figures and reports print
    it; ``script`` is the file name of its thin script in ``inferences/``; ``levers`` holds the levers
    experiment's targets; the row's position in :data:`CATALOGUE` is the plotting order.
    """

    name: str
    adapter: str
    label: str
    script: str
    defaults: ModelDefaults
    levers: LeverTargets = LeverTargets()

    @property
    def study_dtype(self) -> str:
        """The precision the study ran the model in (its default here too)."""
        return self.defaults.dtype


#: Longest audio AudioLDM and AudioLDM 2 accept. Neither has a positional limit on the audio axis
#: (convolutions plus attention without position embeddings in UNet and VAE; the text length does not depend
#: on it; GPT-2's 1024 positions bound only AudioLDM 2's text side), so this cap is a choice: 3x the 10.24 s
#: clips the models were trained on; the VAE's mid-block attention over (duration/0.04 x 16) latent pixels
#: grows quadratically beyond it.
_AUDIOLDM_MAX_DURATION_S = 30.0
#: The tiny Stable Audio Open DiT's latent window: 32 frames x the Oobleck hop of 2048 samples at 44.1 kHz.
_TINY_STABLE_AUDIO_WINDOW_S = 32 * 2048 / 44100
#: The tiny Tango clip: 24 latent frames x 4 (VAE) x the vocoder hop of 160 samples at 16 kHz.
_TINY_TANGO_CLIP_S = 24 * 4 * 160 / 16000

CATALOGUE: tuple[ModelEntry, ...] = (
    ModelEntry("audioldm", "tta_energy.models.audioldm:AudioLDMAdapter", "AudioLDM", "audioldm",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=2.5,
                             max_duration_s=_AUDIOLDM_MAX_DURATION_S, sample_rate=16000),
               LeverTargets(reduction=4.0, cost=1.0)),
    ModelEntry("audioldm2", "tta_energy.models.audioldm2:AudioLDM2Adapter", "AudioLDM 2", "audioldm2",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=3.5,
                             max_duration_s=_AUDIOLDM_MAX_DURATION_S, sample_rate=16000),
               LeverTargets(reduction=4.0, cost=1.4)),
    ModelEntry("stable-audio-open", "tta_energy.models.stable_audio:StableAudioOpenAdapter",
               "Stable Audio Open", "stable_audio_open",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=7.0,
                             max_duration_s=47.55, sample_rate=44100,
                             tiny_max_duration_s=_TINY_STABLE_AUDIO_WINDOW_S),
               LeverTargets(reduction=1.6, ceiling_fraction=0.6, cost=1.6)),
    ModelEntry("tango", "tta_energy.models.tango:TangoAdapter", "Tango", "tango",
               ModelDefaults(dtype="float32", negative_prompt="", guidance_scale=3.0,
                             max_duration_s=10.24, fixed_duration_s=10.24, sample_rate=16000,
                             tiny_fixed_duration_s=_TINY_TANGO_CLIP_S),
               LeverTargets(reduction=1.5, ceiling_fraction=0.6, cost=1.9)),
    ModelEntry("tango2", "tta_energy.models.tango:Tango2Adapter", "Tango 2", "tango2",
               ModelDefaults(dtype="float32", negative_prompt="", guidance_scale=3.0,
                             max_duration_s=10.24, fixed_duration_s=10.24, sample_rate=16000,
                             tiny_fixed_duration_s=_TINY_TANGO_CLIP_S),
               LeverTargets(reduction=1.5, ceiling_fraction=0.6, cost=1.9)),
    ModelEntry("make-an-audio", "tta_energy.models.make_an_audio:MakeAnAudioAdapter", "Make-An-Audio",
               "make_an_audio",
               ModelDefaults(dtype="float32", negative_prompt=None, guidance_scale=3.0,
                             max_duration_s=30.0, sample_rate=16000, step_spacing="ldm-uniform"),
               LeverTargets(reduction=3.0, cost=1.0)),
    ModelEntry("make-an-audio-2", "tta_energy.models.make_an_audio_2:MakeAnAudio2Adapter", "Make-An-Audio 2",
               "make_an_audio_2",
               ModelDefaults(dtype="float32", negative_prompt=None, guidance_scale=3.0,
                             max_duration_s=26.8, sample_rate=16000, step_spacing="ldm-uniform"),
               LeverTargets(reduction=3.0, cost=0.7)),
)


#: every model described at both sizes and 10 s (``python -m tta_energy.models.describe`` writes it; the tests
#: count again and compare), so that ``tta-energy describe`` answers without importing torch or building
DESCRIBE_TABLE = "configs/describe_10s.json"


def precomputed_description(name: str, size: str, duration_s: float) -> dict | None:
    """The stored description of ``name`` at ``size`` for the stored duration (10 s), else None."""
    if duration_s != 10.0:
        return None
    import json
    from importlib import resources

    try:
        stored = resources.files("tta_energy.models") / DESCRIBE_TABLE
        table = json.loads(stored.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return table.get(size, {}).get(name)


class UnknownModelError(ValueError):
    """A model name that is not in the catalogue."""


def model_names() -> tuple[str, ...]:
    """Canonical names, in catalogue (plotting) order."""
    return tuple(e.name for e in CATALOGUE)


def entry(name: str) -> ModelEntry:
    """The catalogue row of ``name``; one clear line naming the allowed models otherwise."""
    for e in CATALOGUE:
        if e.name == name:
            return e
    raise UnknownModelError(f"unknown model {name!r}: choose one of {', '.join(model_names())}")


def label(name: str) -> str:
    """How figures print ``name`` (the name itself for a model outside the catalogue)."""
    for e in CATALOGUE:
        if e.name == name:
            return e.label
    return name


def ordered(names: object) -> list[str]:
    """``names`` in catalogue order; names outside the catalogue follow, sorted."""
    present = set(names)  # type: ignore[arg-type]
    known = [n for n in model_names() if n in present]
    return known + sorted(present - set(known))


def help_text() -> str:
    """The models as a help text lists them: ``a, b or c``."""
    names = model_names()
    return ", ".join(names[:-1]) + " or " + names[-1]


def check_generation(name: str, defaults: ModelDefaults, *, prompts: Sequence[str], steps: int,
                     waveforms_per_prompt: int, duration_s: float | None, guidance_scale: float | None,
                     size: str = "full", train_timesteps: int | None = None) -> None:
    """What a model of ``size`` can generate, checked from its catalogue row alone (no model built, no torch).

    ``defaults`` are the row's (full size; :meth:`ModelDefaults.at_size` gives a tiny replica its own duration
    limits); ``duration_s`` None means the default. Raises :class:`ModelError` with one line naming the
    problem and what is allowed.
    """
    if not prompts or any(not str(p).strip() for p in prompts):
        raise ModelError("the prompt is empty: give a text describing the sound")
    problem = steps_problem(defaults.step_spacing, steps, train_timesteps or defaults.train_timesteps)
    if problem is not None:
        raise ModelError(f"{name}: {problem}")
    if waveforms_per_prompt < 1:
        raise ModelError(f"batch (waveforms per prompt) must be >= 1, got {waveforms_per_prompt}")
    if guidance_scale is not None and not guidance_scale >= 0:
        raise ModelError(f"guidance scale must be >= 0 (<= 1 turns guidance off), got {guidance_scale}")
    d = duration_s
    if d is not None:
        if not d > 0:
            raise ModelError(f"duration must be > 0 s, got {d}")
        sized = defaults.at_size(size)
        at_size = "" if size == "full" else f" ({size} size)"
        fixed = sized.fixed_duration_s
        if fixed is not None and abs(d - fixed) > 1e-6 and abs(d - sized.duration_s) > 1e-6:
            raise ModelError(f"{name}{at_size} always generates {fixed:g} s of audio; duration {d} s is not "
                             "possible")
        if d > sized.max_duration_s + 1e-9:
            raise ModelError(f"duration {d} s exceeds {name}'s maximum of {round(sized.max_duration_s, 2)} s"
                             f"{at_size}")
