"""Model adapters: one module per family, behind :mod:`tta_energy.models.registry`."""

from tta_energy.models.base import (
    GenerationOutput,
    GenerationRequest,
    ModelAdapter,
    ModelDefaults,
    ModelError,
)
from tta_energy.models.registry import MODEL_NAMES, adapter_class, build_model

__all__ = ["GenerationOutput", "GenerationRequest", "ModelAdapter", "ModelDefaults", "ModelError",
           "MODEL_NAMES", "adapter_class", "build_model"]
