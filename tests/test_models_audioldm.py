"""AudioLDM adapter: tiny replica on the CPU against diffusers' own pipeline call, round trip, bad input."""

from __future__ import annotations

import contextlib
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from model_helpers import assert_close_audio

from tta_energy.models.audioldm import CLAP_TOKEN_LENGTH, estimated_token_count
from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.catalogue import entry
from tta_energy.models.registry import build_model

MAX_DURATION_S = entry("audioldm").defaults.max_duration_s

PROMPT = "Water running out of a faucet, some hitting a sink bottom, and some water filling a cup"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    adapter = build_model("audioldm", size="tiny", dtype="float32")
    adapter.pipe.set_progress_bar_config(disable=True)
    return adapter


def request(**kwargs) -> GenerationRequest:
    values = {"prompts": [PROMPT], "steps": 3, "duration_s": 1.0, "seed": 7}
    values.update(kwargs)
    return GenerationRequest(**values)


def roberta_tokenizer():
    """A small real byte-level BPE tokenizer (RoBERTa special ids <s>=0, <pad>=1, </s>=2), trained here."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([PROMPT, "Low quality.", "A dog barks in the distance"], vocab_size=300,
                            min_frequency=1, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                            show_progress=False)
    return RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                model_max_length=CLAP_TOKEN_LENGTH)


def test_defaults_are_the_study_settings(tiny):
    d = tiny.defaults
    assert (d.dtype, d.negative_prompt, d.guidance_scale, d.duration_s, d.sample_rate) == (
        "float16", "Low quality.", 2.5, 10.0, 16000)
    assert d.max_duration_s == 30.0  # this project's cap (no limit in the model)
    assert estimated_token_count(PROMPT) == 19


def test_generate_equals_the_diffusers_pipeline_call(tiny):
    out = tiny.generate(request(waveforms_per_prompt=2))
    with torch.inference_mode():
        positive, negative = tiny.encode_text([PROMPT]), tiny.encode_text(["Low quality."])
    reference = tiny.pipe(prompt_embeds=positive, negative_prompt_embeds=negative, num_inference_steps=3,
                          audio_length_in_s=1.0, guidance_scale=2.5, num_waveforms_per_prompt=2,
                          generator=torch.Generator().manual_seed(7)).audios
    assert out.waveforms.shape == (2, 1, 16000) and out.waveforms.dtype == np.float32
    assert out.sample_rate == 16000 and out.denoiser_calls == 3
    assert_close_audio(out.waveforms[:, 0], reference)


def test_real_tokenizer_path_equals_the_pipeline_on_prompt_strings(tiny):
    tiny.pipe.register_modules(tokenizer=roberta_tokenizer())
    try:
        out = tiny.generate(request())
        reference = tiny.pipe(PROMPT, negative_prompt="Low quality.", num_inference_steps=3,
                              audio_length_in_s=1.0, generator=torch.Generator().manual_seed(7)).audios
    finally:
        tiny.pipe.register_modules(tokenizer=None)
    assert_close_audio(out.waveforms[:, 0], reference)


def test_phases_in_order_and_denoiser_called_through_the_attribute(tiny):
    seen: list[str] = []
    inputs: list[tuple[int, ...]] = []

    @contextlib.contextmanager
    def phases(name):
        seen.append(name)
        yield

    unet = tiny.denoiser

    def counting(sample, *args, **kwargs):
        inputs.append(tuple(sample.shape))
        return unet(sample, *args, **kwargs)

    tiny.denoiser = counting
    try:
        out = tiny.generate(request(steps=4), phases)
        tiny.generate(request(steps=2, guidance_scale=1.0))  # guidance off: batch B, not 2B
    finally:
        tiny.denoiser = unet
    assert seen == ["text_encoding", "denoising", "decoding", "vocoder"]
    assert out.denoiser_calls == 4
    assert inputs == [(2, 8, 25, 16)] * 4 + [(1, 8, 25, 16)] * 2


def test_seed_and_duration(tiny):
    a, b = tiny.generate(request(seed=1)), tiny.generate(request(seed=1))
    c = tiny.generate(request(seed=2))
    np.testing.assert_array_equal(a.waveforms, b.waveforms)
    assert not torch.equal(a.latents, c.latents)
    half = tiny.generate(request(duration_s=0.5, steps=1))
    # 0.5 s = 50 mel frames, rounded up to 52 (VAE factor 4) = 13 latent frames, cut back to 8000 samples
    assert half.latents.shape == (1, 8, 13, 16) and half.waveforms.shape == (1, 1, 8000)


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDMPipeline"
    assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = build_model("audioldm", size="tiny", weights=str(tmp_path), dtype="float32")
    assert loaded.weights == str(tmp_path)
    np.testing.assert_array_equal(loaded.generate(request()).waveforms, tiny.generate(request()).waveforms)


def test_a_hub_id_offline_loads_the_cached_snapshot_or_says_how_to_fill_the_cache(tiny, tmp_path,
                                                                                   monkeypatch):
    """With ``HF_HUB_OFFLINE=1`` a hub id is read from the local Hugging Face cache (the layout that
    ``hf download`` writes) as a folder is; one not cached is refused in one line saying how to fill it."""
    from huggingface_hub import constants

    cache, commit = tmp_path / "hub", "0" * 40
    repo = cache / "models--someone--audioldm-tiny"
    tiny.save_pretrained(repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    loaded = build_model("audioldm", size="tiny", weights="someone/audioldm-tiny", dtype="float32")
    np.testing.assert_array_equal(loaded.generate(request()).waveforms, tiny.generate(request()).waveforms)
    with pytest.raises(ModelError, match=r"'nobody/none' is neither a local folder nor a cached hub repo "
                                         r"\(HF_HUB_OFFLINE=1\).*\(hf download nobody/none\)"):
        build_model("audioldm", size="tiny", weights="nobody/none", dtype="float32")


def test_checkpoint_with_missing_keys_is_refused(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny.save_pretrained(tmp_path)
    files = list((tmp_path / "text_encoder").glob("*.safetensors"))
    state = load_file(files[0])
    dropped = next(k for k in state if "projection" in k)
    del state[dropped]
    save_file(state, files[0], metadata={"format": "pt"})
    with pytest.raises(ModelError, match="does not match text_encoder: missing"):
        build_model("audioldm", size="tiny", weights=str(tmp_path), dtype="float32")


def test_checkpoint_with_an_extra_key_is_left_to_diffusers(tiny, tmp_path):
    """Keys the model does not have are not refused here (diffusers and transformers rename older layouts
    and skip known leftovers themselves): the weights load and generate as saved."""
    import torch
    from safetensors.torch import load_file, save_file

    tiny.save_pretrained(tmp_path)
    files = list((tmp_path / "unet").glob("*.safetensors"))
    state = load_file(files[0])
    save_file({**state, "leftover.weight": torch.zeros(2)}, files[0], metadata={"format": "pt"})
    loaded = build_model("audioldm", size="tiny", weights=str(tmp_path), dtype="float32")
    np.testing.assert_array_equal(loaded.generate(request()).waveforms, tiny.generate(request()).waveforms)


@pytest.mark.parametrize(("change", "message"), [
    ({"steps": 0}, "steps must be >= 1"),
    ({"waveforms_per_prompt": 0}, "batch"),
    ({"duration_s": 0.0}, "duration must be > 0"),
    ({"duration_s": -2.0}, "duration must be > 0"),
    ({"duration_s": MAX_DURATION_S + 1}, "exceeds audioldm's maximum"),
    ({"duration_s": 0.01}, "below audioldm's minimum"),
    ({"prompts": []}, "prompt is empty"),
])
def test_bad_requests(tiny, change, message):
    with pytest.raises(ModelError, match=message) as info:
        tiny.generate(request(**change))
    assert "\n" not in str(info.value)


def test_bad_model_and_weights(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'audioldm3'"):
        build_model("audioldm3", size="tiny")
    with pytest.raises(ModelError, match="does not exist"):
        build_model("audioldm", size="tiny", weights=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="wrong layout: missing model_index.json"):
        build_model("audioldm", size="tiny", weights=str(tmp_path))
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "AudioLDM2Pipeline"}))
    for sub in ("text_encoder", "unet", "vae", "vocoder", "scheduler"):
        (tmp_path / sub).mkdir()
    with pytest.raises(ModelError, match="holds a AudioLDM2Pipeline checkpoint"):
        build_model("audioldm", size="tiny", weights=str(tmp_path))
    with pytest.raises(ModelError, match="unknown size"):
        build_model("audioldm", size="medium")
