"""Make-An-Audio adapter: full-size numbers (meta device), configs, tiny generation on the CPU, bad input."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.common import load_config
from tta_energy.models.describe import count_flops, describe_adapter, unique_param_count
from tta_energy.models.make_an_audio import (
    MakeAnAudioAdapter,
    latent_width,
    ldm_unet_params,
    ldm_vae_params,
    unet_config_from_ldm,
    vae_config_from_ldm,
)
from tta_energy.models.registry import build_model

os.environ.setdefault("HF_HUB_OFFLINE", "1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def full() -> MakeAnAudioAdapter:
    return build_model("make-an-audio", size="full", device="meta")


@pytest.fixture(scope="module")
def tiny() -> MakeAnAudioAdapter:
    return MakeAnAudioAdapter.build("tiny")


def test_full_size_matches_the_reference_table(full: MakeAnAudioAdapter) -> None:
    components = full.components()
    assert unique_param_count(list(components.values())) / 1e6 == pytest.approx(452.7, rel=0.03)
    assert unique_param_count([components["unet"]]) / 1e6 == pytest.approx(160.2, abs=0.05)
    assert unique_param_count([components["vae"]]) / 1e6 == pytest.approx(69.0, abs=0.05)
    call = full.denoiser_call()
    assert tuple(call.args[0].shape) == (2, 4, 10, 80)
    assert tuple(call.kwargs["encoder_hidden_states"].shape) == (2, 77, 1024)
    assert count_flops(call) / 1e9 == pytest.approx(191.6, rel=0.01)
    assert full.defaults.dtype == "float32" and full.defaults.guidance_scale == 3.0
    assert full.defaults.negative_prompt is None  # unconditional text is ""


def test_150_steps_are_167_denoiser_calls(full: MakeAnAudioAdapter) -> None:
    assert full.denoiser_calls(150) == 167 and full.denoiser_calls(100) == 100
    with pytest.raises(ModelError, match="cannot run 3 steps"):
        full.denoiser_calls(3)


def test_bundled_yaml_converts_to_the_diffusers_equivalents_and_back() -> None:
    yaml_params = load_config("make-an-audio", "txt2audio_args.yaml")["model"]["params"]
    unet_json = load_config("make-an-audio", "unet_config.diffusers_equivalent.json")
    vae_json = load_config("make-an-audio", "vae_config.diffusers_equivalent.json")
    unet_params = yaml_params["unet_config"]["params"]
    first_stage = yaml_params["first_stage_config"]["params"]
    assert unet_config_from_ldm(unet_params) == unet_json
    assert vae_config_from_ldm(first_stage["embed_dim"], first_stage["ddconfig"]) == vae_json
    assert ldm_unet_params(unet_json, unet_params) == unet_params
    assert ldm_vae_params(vae_json, first_stage) == first_stage


def test_latent_width_follows_gen_wav() -> None:
    assert [latent_width(d) for d in (10, 1, 5, 30)] == [80, 8, 40, 236]


def _phase_log() -> tuple[list[str], object]:
    names: list[str] = []

    @contextlib.contextmanager
    def phases(name: str):
        names.append(name)
        yield

    return names, phases


class _CountingDenoiser(torch.nn.Module):
    """Wraps the denoiser to see how generate() calls it (through the adapter's ``denoiser`` attribute)."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.batches: list[int] = []

    def forward(self, x, *args, **kwargs):
        self.batches.append(x.shape[0])
        return self.inner(x, *args, **kwargs)


def test_tiny_generation(tiny: MakeAnAudioAdapter) -> None:
    names, phases = _phase_log()
    request = GenerationRequest(prompts=["a dog barks", "rain on a roof"], steps=5, duration_s=1.0, seed=3)
    original = tiny.denoiser
    counting = _CountingDenoiser(original)
    tiny.denoiser = counting
    try:
        out = tiny.generate(request, phases)
    finally:
        tiny.denoiser = original
    assert names == ["text_encoding", "denoising", "decoding", "vocoder"]
    assert out.waveforms.shape == (2, 1, 16000) and out.waveforms.dtype == np.float32
    assert np.isfinite(out.waveforms).all() and out.sample_rate == 16000
    assert out.denoiser_calls == 5 == tiny.denoiser_calls(5) and counting.batches == [4] * 5  # CFG batch 2n
    assert tuple(out.latents.shape) == (2, 4, 10, 8)
    again = tiny.generate(request)
    assert np.array_equal(again.waveforms, out.waveforms)
    other_seed = tiny.generate(GenerationRequest(prompts=request.prompts, steps=5, duration_s=1.0, seed=4))
    assert not np.array_equal(other_seed.waveforms, out.waveforms)


def test_guidance_one_skips_the_unconditional_branch(tiny: MakeAnAudioAdapter) -> None:
    original = tiny.denoiser
    tiny.denoiser = counting = _CountingDenoiser(original)
    try:
        out = tiny.generate(GenerationRequest(prompts=["wind"], steps=2, duration_s=1.0, guidance_scale=1.0))
    finally:
        tiny.denoiser = original
    assert counting.batches == [1, 1] and out.denoiser_calls == 2


def test_describe_works_on_the_tiny_size(tiny: MakeAnAudioAdapter) -> None:
    description = describe_adapter(tiny, duration_s=1.0)
    assert description["denoiser_input_shape"] == [2, 4, 10, 8]
    assert set(description["gflop_once_per_generation_by_call"]) == {
        "text_encoder",
        "text_encoder (unconditional)",
        "vae",
        "vocoder",
    }


@pytest.fixture(scope="module")
def tiny_models(tiny: MakeAnAudioAdapter) -> dict[str, object]:
    return {"make-an-audio": tiny, "make-an-audio-2": build_model("make-an-audio-2", size="tiny")}


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("make-an-audio", {"duration_s": 31.0}, "exceeds make-an-audio's maximum of 30.0 s"),
        ("make-an-audio", {"steps": 27}, "cannot run 27 steps"),
        ("make-an-audio", {"steps": 0}, "steps must be >= 1"),
        ("make-an-audio", {"duration_s": 0.1}, "too short for make-an-audio"),
        ("make-an-audio-2", {"duration_s": 26.9}, "maximum of 26.8 s"),
        ("make-an-audio-2", {"steps": 9}, "cannot run 9 steps"),
        ("make-an-audio-2", {"extra": {"struct_caption": 3}}, "struct_caption must be"),
    ],
)
def test_bad_requests_fail_with_one_line(tiny_models: dict, name: str, kwargs: dict, message: str) -> None:
    """Both Make-An-Audio models (one LatentAudioAdapter) refuse bad requests with one line."""
    with pytest.raises(ModelError, match=message) as info:
        tiny_models[name].generate(GenerationRequest(prompts=["x"], **kwargs))
    assert "\n" not in str(info.value)


def test_meta_device_cannot_generate(full: MakeAnAudioAdapter) -> None:
    with pytest.raises(ModelError, match="meta device"):
        full.generate(GenerationRequest(prompts=["x"], steps=10))
