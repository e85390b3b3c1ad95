"""Make-An-Audio 2 adapter: full-size numbers (meta device), text encoders, tiny generation, bad input."""

from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest
import torch

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.describe import count_flops, unique_param_count
from tta_energy.models.make_an_audio_2 import (
    MakeAnAudio2Adapter,
    latent_width,
    struct_captions,
)
from tta_energy.models.registry import build_model
from tta_energy.study import STUDY_PROMPT, STUDY_STRUCT_CAPTION

os.environ.setdefault("HF_HUB_OFFLINE", "1")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def full() -> MakeAnAudio2Adapter:
    return build_model("make-an-audio-2", size="full", device="meta")


@pytest.fixture(scope="module")
def tiny() -> MakeAnAudio2Adapter:
    return MakeAnAudio2Adapter.build("tiny")


def test_full_size_matches_the_reference_table(full: MakeAnAudio2Adapter) -> None:
    components = full.components()
    assert unique_param_count(list(components.values())) / 1e6 == pytest.approx(937.3, rel=0.03)
    assert unique_param_count([components["transformer"]]) / 1e6 == pytest.approx(159.6, abs=0.05)
    assert unique_param_count([components["t5_encoder"]]) / 1e6 == pytest.approx(341.2, abs=0.05)
    assert unique_param_count([components["text_encoder"]]) / 1e6 == pytest.approx(111.3, abs=0.05)
    assert unique_param_count([components["vae"]]) / 1e6 == pytest.approx(213.0, abs=0.05)
    call = full.denoiser_call()
    x, _, context = call.args
    assert tuple(x.shape) == (2, 20, 316) and tuple(context.shape) == (2, 154, 1024)
    assert 1 + context.shape[1] + x.shape[2] == 471  # tokens inside the DiT
    assert count_flops(call) / 1e9 == pytest.approx(303.9, rel=0.01)
    assert full.denoiser_calls(150) == 167


def test_t5_is_t5_v1_1_large(full: MakeAnAudio2Adapter) -> None:
    config = full.t5_encoder.config
    assert (config.num_layers, config.d_model, config.d_ff, config.num_heads) == (24, 1024, 2816, 16)
    # v1.1 (and flan) use a gated-GELU FFN; their untied LM head has no effect on the encoder
    assert config.is_gated_act and config.dense_act_fn == "gelu_new"


def test_structured_captions_follow_the_study() -> None:
    assert struct_captions([STUDY_PROMPT, "A Cat Meows"], {}) == [STUDY_STRUCT_CAPTION, "<a cat meows & all>"]
    assert struct_captions(["a", "b"], {"struct_caption": "<x & all>"}) == ["<x & all>"] * 2
    assert struct_captions(["a", "b"], {"struct_caption": ["<a & all>", "<b & all>"]}) == [
        "<a & all>",
        "<b & all>",
    ]
    with pytest.raises(ModelError, match="one string per prompt"):
        struct_captions(["a", "b"], {"struct_caption": ["<a & all>"]})


def test_latent_width_follows_gen_wav() -> None:
    assert [latent_width(d) for d in (10, 1, 26.8)] == [316, 32, 844]


def test_tiny_generation(tiny: MakeAnAudio2Adapter) -> None:
    names: list[str] = []

    @contextlib.contextmanager
    def phases(name: str):
        names.append(name)
        yield

    request = GenerationRequest(
        prompts=[STUDY_PROMPT], steps=4, waveforms_per_prompt=2, duration_s=1.0, seed=1
    )
    out = tiny.generate(request, phases)
    assert names == ["text_encoding", "denoising", "decoding", "vocoder"]
    assert out.waveforms.shape == (2, 1, 16000) and out.waveforms.dtype == np.float32
    assert np.isfinite(out.waveforms).all() and out.denoiser_calls == 4
    assert tuple(out.latents.shape) == (2, 20, 32)
    again = tiny.generate(request)
    assert np.array_equal(again.waveforms, out.waveforms)
    other = tiny.generate(
        GenerationRequest(
            prompts=[STUDY_PROMPT],
            steps=4,
            waveforms_per_prompt=2,
            duration_s=1.0,
            seed=1,
            extra={"struct_caption": "<water & all>"},
        )
    )
    assert not np.array_equal(other.waveforms, out.waveforms)  # the T5 branch sees the structured caption


def test_encode_text_concatenates_clap_and_t5_tokens(tiny: MakeAnAudio2Adapter) -> None:
    with torch.inference_mode():
        context = tiny.encode_text(["a dog"], {}, unconditional=False)
        empty = tiny.encode_text(["a dog"], {}, unconditional=True)
    assert tuple(context.shape) == (1, 154, 32)
    # unconditional=True blanks the structured caption (T5 half); the CLAP half follows the captions passed
    assert torch.equal(context[:, :77], empty[:, :77]) and not torch.equal(context[:, 77:], empty[:, 77:])


def test_longest_duration_fits_the_positional_table(tiny: MakeAnAudio2Adapter) -> None:
    tiny.check_request(GenerationRequest(prompts=["x"], duration_s=26.8))
    assert tiny.transformer.max_latent_frames(154) == 845 >= latent_width(26.8)
