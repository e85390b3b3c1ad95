"""One registry for every model family: canonical name -> adapter class, imported lazily."""

from __future__ import annotations

import importlib

import torch

from tta_energy.models.base import ModelAdapter, ModelError

#: canonical name -> "module:Class". Modules are imported only when the model is asked for.
_ADAPTERS: dict[str, str] = {
    "audioldm": "tta_energy.models.audioldm:AudioLDMAdapter",
    "audioldm2": "tta_energy.models.audioldm2:AudioLDM2Adapter",
    "stable-audio-open": "tta_energy.models.stable_audio:StableAudioOpenAdapter",
    "tango": "tta_energy.models.tango:TangoAdapter",
    "tango2": "tta_energy.models.tango:Tango2Adapter",
    "make-an-audio": "tta_energy.models.make_an_audio:MakeAnAudioAdapter",
    "make-an-audio-2": "tta_energy.models.make_an_audio_2:MakeAnAudio2Adapter",
}

MODEL_NAMES: tuple[str, ...] = tuple(_ADAPTERS)


def adapter_class(name: str) -> type[ModelAdapter]:
    if name not in _ADAPTERS:
        raise ModelError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    module_name, cls_name = _ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build_model(name: str, size: str = "full", weights: str = "random", device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None) -> ModelAdapter:
    """Build model ``name``: a random-weight replica or the real model from ``weights``."""
    if size not in ("full", "tiny"):
        raise ModelError(f"unknown size {size!r}: use full or tiny")
    return adapter_class(name).build(size=size, weights=weights, device=device, dtype=dtype)
