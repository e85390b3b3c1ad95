"""The interface every model adapter implements, whatever its family.

An adapter wraps one model family (its diffusers/transformers components, or this project's own
modules where none exist) and exposes:

* ``build(size, weights, device, dtype)``: a replica with random weights from the bundled configs
  (``weights="random"``) or the real model from a local directory / hub id;
* ``generate(request, phases)``: waveforms + sample rate, reporting each phase of the generation
  (text encoding, denoising loop, latent decoding, vocoder) through ``phases`` so that a meter can
  measure them separately;
* ``save_pretrained(path)``: writes the model in the real checkpoint's layout (for round-trip tests);
* ``components()``: name -> ``torch.nn.Module``, used by ``describe``;
* ``denoiser``: a read/write attribute holding the denoiser module. ``generate`` calls the denoiser only
  through it, so that the energy levers can swap in a compiled / CUDA-graph version.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from tta_energy.errors import ModelError
from tta_energy.models.catalogue import ModelDefaults, check_generation, check_size
from tta_energy.models.common import cast_module, resolve_device, seeded_init
from tta_energy.precision import default_precision, torch_dtype
from tta_energy.study import STUDY_STEPS


class MetaDeviceError(ModelError):
    """A request refused only because the model is on the meta device (every other check passed)."""


#: A phase hook: ``with phases("denoising"): ...``. The default does nothing.
PhaseHook = Callable[[str], contextlib.AbstractContextManager]


def no_phases(name: str) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


@dataclass
class ModuleCall:
    """One forward call of a component with example inputs, for parameter and FLOP counts."""

    name: str
    module: torch.nn.Module
    args: tuple = ()
    kwargs: dict[str, object] = field(default_factory=dict)
    method: str = "forward"  # e.g. "decode" for a VAE, "get_text_features" for CLAP


@dataclass
class GenerationRequest:
    prompts: list[str]
    steps: int = STUDY_STEPS
    waveforms_per_prompt: int = 1
    duration_s: float | None = None  # None: the model's default (10 s in the study)
    guidance_scale: float | None = None  # None: the model's default
    negative_prompt: str | None = None  # None: the model's default; "" for none
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)  # model-specific (e.g. MAA2 structured captions)

    @property
    def n_clips(self) -> int:
        return len(self.prompts) * self.waveforms_per_prompt


@dataclass
class GenerationOutput:
    waveforms: np.ndarray  # (n_clips, channels, samples), float32
    sample_rate: int
    denoiser_calls: int
    latents: torch.Tensor | None = None  # final latents, for equivalence checks

    @property
    def audio_seconds(self) -> float:
        return float(self.waveforms.shape[0] * self.waveforms.shape[-1] / self.sample_rate)


#: a diffusers UNet's repeated blocks: its ResNet blocks and its transformers (norm, projections, attention
#: and feed-forward layers)
UNET_BLOCKS: tuple[str, ...] = ("ResnetBlock2D", "Transformer2DModel")


class ModelAdapter(ABC):
    """One model family behind the common interface; each is listed once in :mod:`.catalogue`."""

    name: ClassVar[str]
    defaults: ClassVar[ModelDefaults]

    def __init__(self, *, size: str, weights: str, device: torch.device, dtype: torch.dtype) -> None:
        self.size = size
        self.weights = weights
        self.device = device
        self.dtype = dtype

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(cls, size: str = "full", weights: str = "random", device: str | torch.device = "cpu",
              dtype: str | torch.dtype | None = None) -> ModelAdapter:
        """A replica (``weights="random"``) or the real model (a directory or hub id).

        The one construction path of every adapter: the arguments are checked and resolved once
        (:meth:`_build_args`), then a replica comes from :meth:`_build_random` with deterministic weights
        (seed 0, the caller's random state untouched) and a checkpoint from :meth:`_load_weights`. An adapter
        implements those two hooks; one that overrides ``build`` itself keeps working."""
        dev, torch_dtype = cls._build_args(size, device, dtype, weights)
        if weights == "random":
            with seeded_init(dev):
                return cls._build_random(size, dev, torch_dtype)
        return cls._load_weights(weights, size, dev, torch_dtype)

    @classmethod
    def _build_random(cls, size: str, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
        """A replica of ``size`` with random weights, built from the bundled configs on ``device``."""
        raise NotImplementedError(f"{cls.__name__} implements neither build nor _build_random")

    @classmethod
    def _load_weights(cls, weights: str, size: str, device: torch.device, dtype: torch.dtype) -> ModelAdapter:
        """The real model from ``weights`` (a local folder or a hub id), on ``device`` in ``dtype``."""
        raise NotImplementedError(f"{cls.__name__} implements neither build nor _load_weights")

    @abstractmethod
    def save_pretrained(self, path: str | Path) -> None:
        """Write the model in the real checkpoint's layout, loadable by ``build(weights=path)``."""

    @abstractmethod
    def components(self) -> dict[str, torch.nn.Module]:
        """Name -> module, for parameter counts and FLOPs."""

    @classmethod
    def _build_args(cls, size: str, device: str | torch.device, dtype: str | torch.dtype | None,
                    weights: str = "random") -> tuple[torch.device, torch.dtype]:
        """Check ``size`` (and that real ``weights`` are not asked for on the meta device, which holds no
        values) and resolve the device and dtype (when None, :func:`tta_energy.precision.default_precision`:
        the model's study dtype, float32 on a CPU)."""
        check_size(size)
        dev = resolve_device(device)
        if weights != "random" and dev.type == "meta":
            raise ModelError("real weights cannot be loaded on the meta device; use --weights random")
        chosen = dtype if dtype is not None else default_precision(cls.defaults.dtype, dev.type)
        return dev, torch_dtype(chosen)

    def set_dtype(self, dtype: torch.dtype) -> None:
        """Change the precision of every component as ``from_pretrained(torch_dtype=...)`` would (modules a
        model keeps in float32, such as T5's ``wo``, stay float32 in float16)."""
        for module in self.components().values():
            cast_module(module, None, dtype)
        self.dtype = dtype

    # -- the denoiser, read/write so that the levers can swap in a compiled / graphed version --------
    @property
    def denoiser(self) -> torch.nn.Module:
        """The denoiser as ``generate`` calls it; assign a callable with the same signature to replace it."""
        return self._denoiser

    @denoiser.setter
    def denoiser(self, module: torch.nn.Module) -> None:
        self._denoiser = module

    # -- generation ---------------------------------------------------------------------------
    @abstractmethod
    def generate(self, request: GenerationRequest, phases: PhaseHook = no_phases) -> GenerationOutput:
        """Generate ``request.n_clips`` waveforms, wrapping each phase in ``phases(name)``."""

    #: key of the denoiser in :meth:`components`
    denoiser_name: ClassVar[str] = "unet"
    #: class names of the denoiser's repeated blocks, which the ``compile-blocks`` lever compiles one by one
    #: (blocks of one class and shape share one compiled graph); the outermost match wins
    repeated_blocks: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def denoiser_call(self, duration_s: float = 10.0, batch: int = 1) -> ModuleCall:
        """One denoising step's call with CFG (batch ``2 * batch``), inputs on the model's device/dtype."""

    @abstractmethod
    def per_generation_calls(self, duration_s: float = 10.0, batch: int = 1) -> list[ModuleCall]:
        """The calls made once per generation (text encoders, decoder, vocoder), with example inputs."""

    def denoiser_calls(self, steps: int) -> int:
        """Denoiser forward calls made for ``steps`` nominal steps (one per step unless overridden)."""
        return steps

    def latent_seconds(self, duration_s: float) -> float:
        """Seconds of audio the denoiser computes per clip for ``duration_s`` asked (``latent_seconds``):
        the catalogue's fixed length where the model has one, else the duration asked. Adapters whose
        denoiser computes another length (Stable Audio Open's window, Tango's clip) override it."""
        fixed = self.defaults.fixed_duration_s
        return float(fixed) if fixed is not None else float(duration_s)

    def check_request(self, request: GenerationRequest) -> None:
        """Reject bad parameters with one clear line (adapters add their own checks)."""
        self.check_request_basics(request)

    def check_request_basics(self, request: GenerationRequest) -> None:
        """The checks that need no built model: the catalogue's rules, which the early checks apply too."""
        check_generation(self.name, self.defaults, prompts=request.prompts, steps=request.steps,
                         waveforms_per_prompt=request.waveforms_per_prompt, duration_s=request.duration_s,
                         guidance_scale=request.guidance_scale, size=self.size)

    def check_not_meta(self) -> None:
        """A model on the meta device (built for counts) holds no values, so it cannot generate."""
        if self.device.type == "meta":
            raise MetaDeviceError("cannot generate on the meta device (it holds no weights); use cpu or cuda")

    # -- helpers ------------------------------------------------------------------------------
    def resolved(self, request: GenerationRequest) -> GenerationRequest:
        """The request with every None replaced by the model's default (at this replica's size: a tiny one's
        default duration is its own, :meth:`ModelDefaults.at_size`)."""
        d = self.defaults.at_size(self.size)
        return GenerationRequest(
            prompts=list(request.prompts),
            steps=request.steps,
            waveforms_per_prompt=request.waveforms_per_prompt,
            duration_s=d.duration_s if request.duration_s is None else request.duration_s,
            guidance_scale=d.guidance_scale if request.guidance_scale is None else request.guidance_scale,
            negative_prompt=((d.negative_prompt or "") if request.negative_prompt is None
                             else request.negative_prompt),
            seed=request.seed,
            extra=dict(request.extra),
        )

    def generator(self, seed: int) -> torch.Generator:
        """A generator on the model's device: the same seed gives the same noise on CPU and CUDA runs."""
        return torch.Generator(device=self.device).manual_seed(seed)

    def parameter_counts(self) -> dict[str, int]:
        return {k: sum(p.numel() for p in m.parameters()) for k, m in self.components().items()}


@contextlib.contextmanager
def inference_mode() -> Iterator[None]:
    with torch.inference_mode():
        yield
