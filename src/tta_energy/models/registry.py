"""The registry: canonical name -> adapter class, imported lazily from the catalogue's rows."""

from __future__ import annotations

import contextlib
import importlib

import torch

from tta_energy.models.base import GenerationRequest, MetaDeviceError, ModelAdapter, ModelError
from tta_energy.models.catalogue import UnknownModelError, check_size, entry


def adapter_path(name: str) -> str:
    """``"module:Class"`` of ``name``'s adapter; a :class:`ModelError` for an unknown name."""
    try:
        return entry(name).adapter
    except UnknownModelError as exc:
        raise ModelError(str(exc)) from None


def adapter_class(name: str) -> type[ModelAdapter]:
    module_name, cls_name = adapter_path(name).split(":")
    return getattr(importlib.import_module(module_name), cls_name)


def build_model(name: str, size: str = "full", weights: str = "random", device: str | torch.device = "cpu",
                dtype: str | torch.dtype | None = None) -> ModelAdapter:
    """Build model ``name``: a random-weight replica or the real model from ``weights``."""
    check_size(size)
    return adapter_class(name).build(size=size, weights=weights, device=device, dtype=dtype)


def check_request_shape(name: str, size: str, request: GenerationRequest) -> None:
    """The model's own checks of ``request`` (e.g. AudioLDM's one-latent-frame minimum) on a replica built on
    the meta device: a request the model would refuse is refused before its weights are built or loaded."""
    adapter = build_model(name, size=size, weights="random", device="meta", dtype="float32")
    with contextlib.suppress(MetaDeviceError):  # only the meta device itself refused: the request passed
        adapter.check_request(request)

