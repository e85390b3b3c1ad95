"""A test-only eighth model: the tiny AudioLDM family under its own name, defaults and label.

Everything a new model needs is here and in its catalogue row (``ROW``, which the test's distribution names
through the entry point ``eighth-model = eighth_model:ROW``): the adapter reuses AudioLDM's bundled configs,
so no file of the package knows about it.
"""

from __future__ import annotations

from tta_energy.models.audioldm import AudioLDMAdapter
from tta_energy.models.catalogue import LeverTargets, ModelDefaults, ModelEntry

NAME = "eighth-model"
LABEL = "Eighth Model"
DEFAULTS = ModelDefaults(dtype="float32", negative_prompt="Quiet.", guidance_scale=2.0, max_duration_s=5.0,
                         sample_rate=16000)


class EighthModelAdapter(AudioLDMAdapter):
    """AudioLDM's architecture and configs under another name and other study defaults."""

    name = NAME
    defaults = DEFAULTS


ROW = ModelEntry(NAME, "eighth_model:EighthModelAdapter", LABEL, "eighth_model", DEFAULTS,
                 LeverTargets(reduction=2.0))
