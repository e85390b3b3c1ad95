"""The guidance sweep's premise: with guidance off (scale 1) each adapter runs its denoiser on half the
batch; below 1, what each adapter does is what its catalogue row's guidance rule says (the analysis reads
the rows' scales by that rule).

Checked on each tiny model by watching the batch of the first tensor the denoiser receives.
"""

from __future__ import annotations

import pytest
import torch

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.catalogue import entry, model_names, runs_guidance
from tta_energy.models.registry import build_model


def denoiser_batches(adapter, request: GenerationRequest) -> list[int]:
    batches: list[int] = []

    def hook(module, args, kwargs):
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        tensors += [v for v in kwargs.values() if isinstance(v, torch.Tensor)]
        batches.append(int(tensors[0].shape[0]))

    handle = adapter.denoiser.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        out = adapter.generate(request)
    finally:
        handle.remove()
    assert out.denoiser_calls == len(batches)
    return batches


@pytest.mark.parametrize("model", model_names())
def test_guidance_off_halves_the_denoiser_batch(model):
    torch.manual_seed(0)
    adapter = build_model(model, size="tiny", device="cpu", dtype="float32")
    request = GenerationRequest(prompts=["a dog barks"], steps=2, duration_s=1.0)
    try:
        adapter.check_request(request)
    except ModelError:
        request.duration_s = None  # a fixed-length model (Tango): its own duration
    on = denoiser_batches(adapter, request)
    request.guidance_scale = 1.0
    off = denoiser_batches(adapter, request)
    assert len(on) == len(off) == 2
    assert on == [2, 2] and off == [1, 1], f"{model}: CFG on {on}, off {off}"


@pytest.mark.parametrize("model", model_names())
def test_below_one_each_adapter_guides_as_its_catalogue_row_says(model):
    adapter = build_model(model, size="tiny", device="cpu", dtype="float32")
    request = GenerationRequest(prompts=["a dog barks"], steps=1, duration_s=1.0, guidance_scale=0.5)
    try:
        adapter.check_request(request)
    except ModelError:
        request.duration_s = None  # a fixed-length model (Tango): its own duration
    guided = runs_guidance(model, 0.5)
    assert denoiser_batches(adapter, request) == [2 if guided else 1]
    assert guided is (entry(model).defaults.guidance_rule == "not-1")


def test_the_rule_outside_the_catalogue_and_a_bad_rule():
    from tta_energy.models.catalogue import ModelDefaults

    assert runs_guidance("a-model-outside-the-catalogue", 3.0)
    assert not runs_guidance("a-model-outside-the-catalogue", 0.5)  # the diffusers pipelines' rule
    with pytest.raises(ValueError, match="unknown guidance rule 'sometimes'"):
        ModelDefaults(guidance_rule="sometimes")
