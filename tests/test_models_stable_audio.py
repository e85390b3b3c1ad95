"""Stable Audio Open adapter: full-size shapes/FLOPs (meta), tiny generation, pipeline equality, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_helpers import small_t5_tokenizer

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.catalogue import entry
from tta_energy.models.describe import describe_adapter
from tta_energy.models.registry import build_model

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning"),
              pytest.mark.usefixtures("hf_offline")]  # tests/conftest.py


@pytest.fixture(scope="module")
def full():
    return build_model("stable-audio-open", "full", device="meta", dtype="float32")


@pytest.fixture(scope="module")
def tiny():
    return build_model("stable-audio-open", "tiny", dtype="float32")


def request(**kw) -> GenerationRequest:
    base = {"prompts": ["a dog barks in the distance"], "steps": 3, "duration_s": 1.0, "seed": 7}
    return GenerationRequest(**{**base, **kw})


def test_full_size_matches_the_published_architecture(full):
    d = describe_adapter(full)
    assert d["total_params"] == pytest.approx(1323.1e6, rel=0.01)
    assert d["denoiser_params"] == pytest.approx(1056.9e6, rel=0.01)
    assert d["components"]["vae"] == pytest.approx(156.1e6, rel=0.01)
    assert d["components"]["text_encoder"] == pytest.approx(109.6e6, rel=0.01)
    # the DiT runs on 1024 latent frames (47.55 s) even for 10 s
    assert d["denoiser_input_shape"] == [2, 64, 1024]
    assert d["gflop_per_step"] == pytest.approx(4544.1, rel=0.01)
    # Oobleck decode of 47.55 s stereo ~5163 GFLOP, T5-base x 128 tokens x 2 ~45 GFLOP
    assert d["gflop_once_per_generation_by_call"]["vae"] == pytest.approx(5163, rel=0.01)
    t5 = d["gflop_once_per_generation_by_call"]["text_encoder"] * 2
    assert t5 == pytest.approx(45, rel=0.02)
    assert d["denoiser"].endswith("(StableAudioDiTModel)")
    assert d["notes"]["latent_frames"] == 1024 and d["notes"]["t5_tokens"] == 128


def test_defaults_are_the_study_settings(full):
    assert full.dtype == torch.float32  # asked for; the default is fp16
    defaults = type(full).defaults
    assert defaults.dtype == "float16" and defaults.negative_prompt == "Low quality."
    assert defaults.guidance_scale == 7.0
    assert (defaults.duration_s, defaults.sample_rate) == (10.0, 44100)
    assert full.max_duration_s == pytest.approx(47.55, abs=0.01)
    assert full.latent_length == 1024


def test_tiny_generates_one_second_of_stereo(tiny):
    seen: list[str] = []

    def phases(name):
        seen.append(name)
        return torch.autograd.profiler.record_function(name)

    out = tiny.generate(request(), phases)
    assert out.waveforms.shape == (1, 2, 44100)
    assert out.waveforms.dtype == np.float32
    assert np.isfinite(out.waveforms).all() and np.abs(out.waveforms).max() > 0
    assert out.sample_rate == 44100 and out.denoiser_calls == 3
    # the Oobleck decoder is the waveform decoder: no separate vocoder phase
    assert seen == ["text_encoding", "denoising", "decoding"]
    # the tiny DiT, like the full one, denoises its whole window (32 frames), not just the 1 s
    assert tuple(out.latents.shape) == (1, 8, 32)


def test_float16_keeps_t5_wo_in_float32_like_from_pretrained():
    half = build_model("stable-audio-open", "tiny", dtype="float16")
    ff = half.text_encoder.encoder.block[0].layer[1].DenseReluDense
    assert ff.wo.weight.dtype == torch.float32 and ff.wi.weight.dtype == torch.float16
    assert half.denoiser.proj_in.weight.dtype == torch.float16
    out = half.generate(request(steps=1))
    assert out.waveforms.dtype == np.float32 and np.isfinite(out.waveforms).all()
    half.set_dtype(torch.bfloat16)  # the precision lever's hook: bf16 has no fp32 exception
    assert ff.wo.weight.dtype == torch.bfloat16 and half.dtype == torch.bfloat16


def test_seed_decides_the_noise(tiny):
    a = tiny.generate(request(seed=1)).waveforms
    b = tiny.generate(request(seed=1)).waveforms
    c = tiny.generate(request(seed=2)).waveforms
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def _pipeline_reference(adapter, req: GenerationRequest, negative: str | None) -> np.ndarray:
    """StableAudioPipeline.__call__ on the adapter's components, through its prompt_embeds path."""
    pipe = adapter.pipeline()
    pipe.set_progress_bar_config(disable=True)
    ids, mask = adapter.text.tokenize(req.prompts, "max_length", adapter.device)
    kwargs = {}
    with torch.no_grad():
        embeds = adapter.text_encoder(ids, attention_mask=mask)[0]
        if negative is not None:
            n_ids, n_mask = adapter.text.tokenize([negative] * len(req.prompts), "max_length", adapter.device)
            n_embeds = adapter.text_encoder(n_ids, attention_mask=n_mask)[0]
            # what the pipeline does to a negative prompt it tokenises itself
            n_embeds = torch.where(n_mask.bool().unsqueeze(2), n_embeds, 0.0)
            kwargs = {"negative_prompt_embeds": n_embeds, "negative_attention_mask": n_mask}
    audio = pipe(prompt_embeds=embeds, attention_mask=mask, num_inference_steps=req.steps,
                 guidance_scale=req.guidance_scale, audio_end_in_s=req.duration_s,
                 num_waveforms_per_prompt=req.waveforms_per_prompt,
                 generator=torch.Generator().manual_seed(req.seed), **kwargs).audios
    return audio.float().numpy()


@pytest.mark.parametrize("negative", ["Low quality.", ""])
def test_generate_equals_stable_audio_pipeline(tiny, negative):
    req = request(prompts=["a dog barks", "rain on a tin roof, heavy"], waveforms_per_prompt=2, steps=4,
                  negative_prompt=negative, guidance_scale=7.0, seed=3)
    ours = tiny.generate(req).waveforms
    reference = _pipeline_reference(tiny, req, negative or None)
    assert ours.shape == reference.shape == (4, 2, 44100)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())


def test_generate_calls_the_swappable_denoiser(tiny):
    calls = []
    original = tiny.denoiser

    class Counting(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner
            self.config = inner.config

        def forward(self, sample, *args, **kwargs):
            calls.append(tuple(sample.shape))
            return self.inner(sample, *args, **kwargs)

    tiny.denoiser = Counting(original)
    try:
        out = tiny.generate(request(steps=2, waveforms_per_prompt=2))
    finally:
        tiny.denoiser = original
    assert calls == [(4, 8, 32)] * 2 and out.denoiser_calls == 2


def test_latent_length_is_one_parameter(tiny):
    """A lever may run the DiT on only the frames the duration needs; the crop stays the same."""
    frames = tiny.latent_frames_for(1.0)
    assert frames == 22
    tiny.latent_length = frames
    try:
        out = tiny.generate(request(steps=2))
        call = tiny.denoiser_call()
    finally:
        tiny.latent_length = tiny.denoiser.config.sample_size
    assert out.waveforms.shape == (1, 2, 44100) and tuple(out.latents.shape) == (1, 8, 22)
    assert tuple(call.args[0].shape) == (2, 8, 22)


def test_save_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "sao")
    assert (tmp_path / "sao" / "model_index.json").is_file()
    loaded = build_model("stable-audio-open", "tiny", weights=str(tmp_path / "sao"), dtype="float32")
    assert loaded.weights == str(tmp_path / "sao")
    req = request(negative_prompt="Low quality.", steps=3)
    assert np.array_equal(tiny.generate(req).waveforms, loaded.generate(req).waveforms)


def test_real_tokenizer_path_equals_the_pipeline_on_prompts(tiny, tmp_path):
    """A checkpoint with a tokenizer: generate equals StableAudioPipeline called with the prompt strings."""
    prompts = ["a dog barks in the distance", "rain on a tin roof, heavy"]
    tiny.text.tokenizer = small_t5_tokenizer(prompts + ["Low quality."], 128)
    try:
        tiny.save_pretrained(tmp_path / "sao")
    finally:
        tiny.text.tokenizer = None
    assert (tmp_path / "sao" / "tokenizer" / "tokenizer.json").is_file()
    loaded = build_model("stable-audio-open", "tiny", weights=str(tmp_path / "sao"), dtype="float32")
    assert not loaded.text.synthetic
    req = request(prompts=prompts, negative_prompt="Low quality.", steps=3, seed=11)
    pipe = loaded.pipeline()
    pipe.set_progress_bar_config(disable=True)
    reference = pipe(prompts, negative_prompt=["Low quality."] * 2, num_inference_steps=3, audio_end_in_s=1.0,
                     generator=torch.Generator().manual_seed(11)).audios.numpy()
    ours = loaded.generate(req).waveforms
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6 * np.abs(reference).max())


def test_mismatched_checkpoint_lists_the_keys(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny.save_pretrained(tmp_path / "sao")
    file = tmp_path / "sao" / "transformer" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(file))
    state.pop("proj_out.weight")
    state["extra_head.weight"] = torch.zeros(2)
    save_file(state, str(file))
    with pytest.raises(ModelError) as err:
        build_model("stable-audio-open", "tiny", weights=str(tmp_path / "sao"), dtype="float32")
    message = str(err.value)
    assert "missing keys: proj_out.weight" in message and "unexpected keys: extra_head.weight" in message
    assert "\n" not in message


@pytest.mark.parametrize(("kw", "needle"), [
    ({"duration_s": 50.0}, "maximum of 47.55 s"),
    ({"duration_s": 0.0}, "duration must be > 0"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"waveforms_per_prompt": 0}, "batch"),
])
def test_bad_requests_are_rejected(full, kw, needle):
    with pytest.raises(ModelError, match=needle):
        full.check_request(request(**kw))


def test_tiny_window_limits_the_duration(tiny):
    """The early checks (no model built) know the tiny window the built model has."""
    assert entry("stable-audio-open").defaults.at_size("tiny").max_duration_s == pytest.approx(
        tiny.max_duration_s)
    with pytest.raises(ModelError, match=r"maximum of 1.49 s \(tiny size\)"):
        tiny.generate(request(duration_s=2.0))


def test_bad_weights_are_rejected(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build_model("stable-audio-open", "tiny", weights=str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="wrong layout.*missing model_index.json"):
        build_model("stable-audio-open", "tiny", weights=str(tmp_path / "empty"))
    with pytest.raises(ModelError, match="neither a local folder nor a cached hub repo"):
        build_model("stable-audio-open", "tiny", weights="nobody-here/no-such-model")
