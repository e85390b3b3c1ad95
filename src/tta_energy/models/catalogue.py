"""The model catalogue: the one list of models, with everything known about each without building it.

Every list of models, label, plotting order, script name and help text in the package is derived from
:func:`entries`: the seven built-in rows (:data:`BUILTIN_MODELS`, the models of arXiv 2505.07615) followed by
the rows other installed distributions declare under the entry-point group :data:`ENTRY_POINT_GROUP` (each
entry point names a :class:`ModelEntry`; they are read once, when a list of models is first needed). It
imports nothing heavy (no torch), so the analysis, the plots and the command line's early checks can read it
cheaply. Adding a model means one adapter module, its configs and one row, here or in another package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tta_energy.errors import ModelError, TtaError, first_line, positive_number
from tta_energy.models.spacing import denoiser_iterations, steps_problem
from tta_energy.study import STUDY_DURATION_S, STUDY_STEPS

SIZES: tuple[str, ...] = ("full", "tiny")


def check_size(size: str, error: type[TtaError] = ModelError, where: str = "") -> str:
    """``size`` when it is one of :data:`SIZES`, else one line (``where``: what named it, e.g. a file)."""
    if size not in SIZES:
        raise error(f"{where}unknown size {size!r}: use {' or '.join(SIZES)}")
    return size
#: When a sampler runs classifier-free guidance's unconditional branch, by its scale: ``above-1`` as the
#: diffusers pipelines and Tango decide (``guidance_scale > 1``), ``not-1`` as Make-An-Audio's original DDIM
#: sampler does (it skips the branch only at a scale of exactly 1).
GUIDANCE_RULES: tuple[str, ...] = ("above-1", "not-1")


@dataclass(frozen=True)
class ModelDefaults:
    """The settings the study used for a model (all overridable per request)."""

    dtype: str = "float16"
    negative_prompt: str | None = "Low quality."
    guidance_scale: float = 3.0
    duration_s: float = STUDY_DURATION_S
    max_duration_s: float = 10.0
    fixed_duration_s: float | None = None  # Tango always makes 10.24 s
    #: the output's sample rate, Hz: the Make-An-Audio adapters and the tiny Stable Audio VAE take it from
    #: here; the diffusers-based adapters read their checkpoint's vocoder or VAE config, which the tests
    #: check against it (tests/test_models_sample_rate.py)
    sample_rate: int = 16000
    steps: int = STUDY_STEPS
    step_spacing: str = "diffusers"  # how the sampler spaces its steps (models.spacing): which counts run
    guidance_rule: str = "above-1"  # which scales run classifier-free guidance (GUIDANCE_RULES)
    train_timesteps: int = 1000
    #: the tiny replica's own audio lengths where its smaller latent differs from the full model's
    tiny_max_duration_s: float | None = None
    tiny_fixed_duration_s: float | None = None

    def __post_init__(self) -> None:
        if self.guidance_rule not in GUIDANCE_RULES:
            raise ValueError(f"unknown guidance rule {self.guidance_rule!r}: expected one of "
                             f"{', '.join(GUIDANCE_RULES)}")

    def runs_guidance(self, scale: float) -> bool:
        """Whether the sampler runs classifier-free guidance (a denoiser batch of 2B) at ``scale``."""
        return scale != 1.0 if self.guidance_rule == "not-1" else scale > 1.0

    def denoiser_iterations(self, steps: int) -> int:
        """Denoiser iterations the sampler runs for ``steps`` nominal steps, by its step spacing (LDM's
        uniform DDIM of Make-An-Audio 1/2 runs 167 for 150; the diffusers and Tango schedulers ``steps``)."""
        return denoiser_iterations(self.step_spacing, steps, self.train_timesteps)

    def guidance_off_text(self) -> str:
        """Which scales turn guidance off, for messages."""
        return "1 turns guidance off" if self.guidance_rule == "not-1" else "<= 1 turns guidance off"

    def at_size(self, size: str) -> ModelDefaults:
        """The settings of a replica of ``size``: at tiny size its own duration limits, and its default
        duration the longest it can make (its fixed clip, or the study's 10 s cut to its maximum)."""
        if size != "tiny":
            return self
        longest = self.max_duration_s if self.tiny_max_duration_s is None else self.tiny_max_duration_s
        fixed = self.fixed_duration_s if self.tiny_fixed_duration_s is None else self.tiny_fixed_duration_s
        default = fixed if fixed is not None else min(self.duration_s, longest)
        return replace(self, max_duration_s=longest, fixed_duration_s=fixed, duration_s=default)


@dataclass(frozen=True)
class LeverTargets:
    """What the levers experiment expects of a model and what its sweep costs. Reductions are of the whole
    generation (10 s, 100 steps, batch 1) against ``none`` of the same run."""

    #: energy reduction of the best configuration that is lossless at the study's precision (x)
    reduction: float | None = None
    #: energy reduction of the best configuration at any precision, for the models the study ran in fp32 (x)
    any_precision_reduction: float | None = None
    ceiling_fraction: float = 0.4  # FLOP per joule of the best configuration, as a fraction of the GPU's
    #: FLOP per joule of the best float8 configuration (TFLOP/J), for the models with an fp8 lever
    fp8_tflop_per_J: float | None = None
    #: relative cost of the model's levers sweep (measured order of magnitude on an H200), used only to share
    #: a call's time budget between its models
    cost: float = 1.0


@dataclass(frozen=True)
class ModelEntry:
    """One row of the catalogue.

    ``name`` is the canonical name used on the command line and in every table; ``adapter`` is
    ``"module:Class"`` (imported only when the model is built); ``label`` is how figures and reports print
    it; ``script`` is the file name of its thin script (``inferences/<script>.py`` for a built-in model, the
    program name :func:`tta_energy.experiments.scripts.run_model_script` shows); ``levers`` holds the levers
    experiment's targets; the row's position in :func:`entries` is the plotting order.
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

#: The built-in models, in plotting order: the seven models the study measured.
BUILTIN_MODELS: tuple[ModelEntry, ...] = (
    ModelEntry("audioldm", "tta_energy.models.audioldm:AudioLDMAdapter", "AudioLDM", "audioldm",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=2.5,
                             max_duration_s=_AUDIOLDM_MAX_DURATION_S, sample_rate=16000),
               LeverTargets(reduction=4.5, cost=1.0)),
    ModelEntry("audioldm2", "tta_energy.models.audioldm2:AudioLDM2Adapter", "AudioLDM 2", "audioldm2",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=3.5,
                             max_duration_s=_AUDIOLDM_MAX_DURATION_S, sample_rate=16000),
               LeverTargets(reduction=4.5, cost=1.4)),
    ModelEntry("stable-audio-open", "tta_energy.models.stable_audio:StableAudioOpenAdapter",
               "Stable Audio Open", "stable_audio_open",
               ModelDefaults(dtype="float16", negative_prompt="Low quality.", guidance_scale=7.0,
                             max_duration_s=47.55, sample_rate=44100,
                             tiny_max_duration_s=_TINY_STABLE_AUDIO_WINDOW_S),
               LeverTargets(reduction=1.8, ceiling_fraction=0.65, fp8_tflop_per_J=0.8, cost=1.6)),
    ModelEntry("tango", "tta_energy.models.tango:TangoAdapter", "Tango", "tango",
               ModelDefaults(dtype="float32", negative_prompt="", guidance_scale=3.0,
                             max_duration_s=10.24, fixed_duration_s=10.24, sample_rate=16000,
                             tiny_fixed_duration_s=_TINY_TANGO_CLIP_S),
               LeverTargets(reduction=1.3, any_precision_reduction=4.5, ceiling_fraction=0.5,
                            cost=1.9)),
    ModelEntry("tango2", "tta_energy.models.tango:Tango2Adapter", "Tango 2", "tango2",
               ModelDefaults(dtype="float32", negative_prompt="", guidance_scale=3.0,
                             max_duration_s=10.24, fixed_duration_s=10.24, sample_rate=16000,
                             tiny_fixed_duration_s=_TINY_TANGO_CLIP_S),
               LeverTargets(reduction=1.3, any_precision_reduction=4.5, ceiling_fraction=0.5,
                            cost=1.9)),
    ModelEntry("make-an-audio", "tta_energy.models.make_an_audio:MakeAnAudioAdapter", "Make-An-Audio",
               "make_an_audio",
               ModelDefaults(dtype="float32", negative_prompt=None, guidance_scale=3.0,
                             max_duration_s=30.0, sample_rate=16000, step_spacing="ldm-uniform",
                             guidance_rule="not-1"),
               LeverTargets(reduction=1.5, any_precision_reduction=4.5, cost=1.0)),
    ModelEntry("make-an-audio-2", "tta_energy.models.make_an_audio_2:MakeAnAudio2Adapter", "Make-An-Audio 2",
               "make_an_audio_2",
               ModelDefaults(dtype="float32", negative_prompt=None, guidance_scale=3.0,
                             max_duration_s=26.8, sample_rate=16000, step_spacing="ldm-uniform",
                             guidance_rule="not-1"),
               LeverTargets(reduction=1.3, any_precision_reduction=2.5, cost=0.7)),
)


#: every model described at both sizes and 10 s (``python -m tta_energy.models.describe`` writes it; the tests
#: count again and compare), so that ``tta-energy describe`` answers without importing torch or building
DESCRIBE_TABLE = "configs/describe_10s.json"
#: the clip length that table is for: the study's
DESCRIBE_DURATION_S = STUDY_DURATION_S


def precomputed_description(name: str, size: str, duration_s: float) -> dict | None:
    """The stored description of ``name`` at ``size`` for the stored duration (10 s), else None."""
    if duration_s != DESCRIBE_DURATION_S:
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


class PluginError(ModelError):
    """A model plugin that cannot be used; the message names its entry point and distribution."""


#: The entry-point group other distributions add models through: ``name = "module:ROW"``, where ``ROW`` is a
#: :class:`ModelEntry` whose ``name`` is the entry point's name (its module should import no torch).
ENTRY_POINT_GROUP = "tta_energy.models"

#: Canonical names of the built-in models, in plotting order.
BUILTIN_NAMES: tuple[str, ...] = tuple(e.name for e in BUILTIN_MODELS)


def _plugin_origin(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    where = f"distribution {dist.name} {dist.version}" if dist is not None else "an unknown distribution"
    return f"model plugin '{ep.name} = {ep.value}' ({where})"


@functools.cache
def plugin_entries() -> tuple[ModelEntry, ...]:
    """The rows of the installed model plugins, sorted by name; read once (``plugin_entries.cache_clear()``
    reads them again). Raises :class:`PluginError` for an entry point that does not load, does not name a
    :class:`ModelEntry` under its own name, or takes a name already taken (built-in models keep theirs)."""
    from importlib.metadata import entry_points

    taken = {name: "a built-in model" for name in BUILTIN_NAMES}
    rows: list[ModelEntry] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda p: (p.name, p.value)):
        origin = _plugin_origin(ep)
        if ep.name in taken:
            raise PluginError(f"{origin}: the name {ep.name!r} is taken by {taken[ep.name]}; "
                              "rename the model")
        try:
            row = ep.load()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {first_line(exc, '')}"
            raise PluginError(f"{origin} does not load: {reason}") from None
        if not isinstance(row, ModelEntry):
            raise PluginError(f"{origin} names a {type(row).__name__}, not a "
                              "tta_energy.models.catalogue.ModelEntry")
        if row.name != ep.name:
            raise PluginError(f"{origin} names the model {row.name!r}: the entry point must carry the "
                              "model's name")
        module, _, cls = row.adapter.partition(":")
        if not (module and cls):
            raise PluginError(f"{origin}: adapter {row.adapter!r} is not 'module:Class'")
        taken[ep.name] = origin
        rows.append(row)
    return tuple(rows)


def entries() -> tuple[ModelEntry, ...]:
    """Every model's row: the built-in ones, then the plugins' (plotting order)."""
    return BUILTIN_MODELS + plugin_entries()


def model_names() -> tuple[str, ...]:
    """Canonical names, in catalogue (plotting) order."""
    return tuple(e.name for e in entries())


def _find(name: str) -> ModelEntry | None:
    """The row of ``name``; the plugins are read only for a name that is not built in."""
    for e in BUILTIN_MODELS:
        if e.name == name:
            return e
    return next((e for e in plugin_entries() if e.name == name), None)


def _unknown_model(name: str, what: str = "") -> str:
    """The one line that refuses a model name outside the catalogue (``what``: where it was named)."""
    where = f" in {what}" if what else ""
    return f"unknown model {name!r}{where}: choose one of {', '.join(model_names())}"


def entry(name: str) -> ModelEntry:
    """The catalogue row of ``name``; one clear line naming the allowed models otherwise."""
    found = _find(name)
    if found is None:
        raise UnknownModelError(_unknown_model(name))
    return found


def check_models(names: Iterable[str], error: type[Exception], what: str) -> tuple[ModelEntry, ...]:
    """The catalogue rows of ``names``, in their order; the first name outside the catalogue raises ``error``
    with :func:`entry`'s line, naming ``what`` (the option or file that named it). The one rule every list of
    model names a command, file or options object takes is checked by."""
    rows = []
    for name in names:
        found = _find(name)
        if found is None:
            raise error(_unknown_model(name, what))
        rows.append(found)
    return tuple(rows)


def runs_guidance(name: str, scale: float) -> bool:
    """Whether model ``name`` runs classifier-free guidance at ``scale``, by its row's rule (a model outside
    the catalogue: the diffusers pipelines' rule, scale > 1)."""
    found = _find(name)
    return (found.defaults if found is not None else ModelDefaults()).runs_guidance(scale)


def label(name: str) -> str:
    """How figures print ``name`` (the name itself for a model outside the catalogue)."""
    found = _find(name)
    return found.label if found is not None else name


def ordered(names: object) -> list[str]:
    """``names`` in catalogue order; names outside the catalogue follow, sorted."""
    present = set(names)  # type: ignore[arg-type]
    known = [n for n in model_names() if n in present]
    return known + sorted(present - set(known))


def help_text() -> str:
    """The models as a help text lists them: ``a, b or c`` (the built-in ones and a note when a plugin does
    not load: the error itself comes when a model is looked up)."""
    note = ""
    try:
        names = model_names()
    except PluginError as exc:
        names, note = BUILTIN_NAMES, f" (plugins not loaded: {exc})"
    return ", ".join(names[:-1]) + " or " + names[-1] + note


#: The most waveforms one generation call may make (prompts x waveforms per prompt): about 100 times the
#: study's largest call (10 clips). Nothing else bounds the count before the model runs, and one far beyond
#: this is a typo rather than a measurement: it would run until the out-of-memory killer stops it.
MAX_WAVEFORMS_PER_CALL = 1024


def check_waveforms(waveforms_per_prompt: int, prompts: int = 1) -> None:
    """``waveforms_per_prompt`` for each of ``prompts`` prompts in one call: at least 1, and at most
    :data:`MAX_WAVEFORMS_PER_CALL` in all; else :class:`ModelError` with one line. The one bound ``generate``
    and ``levers run`` apply (a sweep's batch grid is bounded by its own forms, 10 clips per repeat)."""
    if waveforms_per_prompt < 1:
        raise ModelError(f"batch (waveforms per prompt) must be >= 1, got {waveforms_per_prompt}")
    total = prompts * waveforms_per_prompt
    if total > MAX_WAVEFORMS_PER_CALL:
        made = f"{prompts} prompts x {waveforms_per_prompt} = {total}" if prompts > 1 else str(total)
        raise ModelError(f"batch (waveforms per call) must be <= {MAX_WAVEFORMS_PER_CALL}, got {made}: "
                         "make several calls instead")


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
    check_waveforms(waveforms_per_prompt, prompts=len(prompts))
    if guidance_scale is not None:
        try:
            positive_number(guidance_scale, "guidance scale", allow_zero=True, error=ModelError)
        except ModelError as exc:
            raise ModelError(f"{exc} ({defaults.guidance_off_text()})") from None
    d = duration_s
    if d is not None:
        positive_number(d, "duration", unit="seconds", error=ModelError)
        sized = defaults.at_size(size)
        at_size = "" if size == "full" else f" ({size} size)"
        fixed = sized.fixed_duration_s
        # a fixed-length model takes its own length or the study's 10 s (which it then makes at its length)
        if fixed is not None and abs(d - fixed) > 1e-6 and abs(d - defaults.duration_s) > 1e-6:
            raise ModelError(f"{name}{at_size} always generates {fixed:g} s of audio; duration {d} s is not "
                             "possible")
        if d > sized.max_duration_s + 1e-9:
            raise ModelError(f"duration {d} s exceeds {name}'s maximum of {round(sized.max_duration_s, 2)} s"
                             f"{at_size}")
