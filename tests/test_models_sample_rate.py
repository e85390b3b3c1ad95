"""Each built-in adapter's output sample rate is its catalogue entry's (``ModelDefaults.sample_rate``)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

from tta_energy.models.base import GenerationRequest
from tta_energy.models.catalogue import BUILTIN_NAMES, entry
from tta_energy.models.registry import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_the_output_sample_rate_is_the_catalogues(name: str) -> None:
    adapter = build_model(name, size="tiny", dtype="float32")
    tiny = adapter.defaults.at_size("tiny")
    duration = tiny.fixed_duration_s or 1.0
    out = adapter.generate(GenerationRequest(prompts=["a dog barks"], steps=2, duration_s=duration, seed=0))
    assert out.sample_rate == entry(name).defaults.sample_rate
    # the waveform is as long as asked at that rate
    assert out.waveforms.shape[-1] == pytest.approx(duration * out.sample_rate, abs=1)
