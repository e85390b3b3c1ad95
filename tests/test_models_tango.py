"""Tango / Tango 2 adapters: full-size shapes/FLOPs on meta, Tango's checkpoint layout, tiny sampling loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_helpers import small_t5_tokenizer

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.catalogue import entry
from tta_energy.models.describe import describe_adapter
from tta_energy.models.registry import build_model
from tta_energy.models.tango import TangoAdapter

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning"),
              pytest.mark.usefixtures("hf_offline")]  # tests/conftest.py


@pytest.fixture(scope="module")
def full():
    return build_model("tango", "full", device="meta")


@pytest.fixture(scope="module")
def tiny():
    return build_model("tango", "tiny")


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tango")
    tiny.save_pretrained(folder)
    return folder


def request(**kw) -> GenerationRequest:
    base = {"prompts": ["water running out of a faucet, some hitting a sink"], "steps": 3, "seed": 5}
    return GenerationRequest(**{**base, **kw})


class Recording(torch.nn.Module):
    """Wraps the UNet, recording what the sampling loop feeds it."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.config, self.calls = inner, inner.config, []

    def forward(self, sample, timestep, encoder_hidden_states=None, encoder_attention_mask=None):
        self.calls.append((tuple(sample.shape), encoder_hidden_states.shape, encoder_attention_mask.clone()))
        return self.inner(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                          encoder_attention_mask=encoder_attention_mask)


def test_full_size_matches_models_md(full):
    d = describe_adapter(full)
    assert d["total_params"] == pytest.approx(1317.8e6, rel=0.01)
    assert d["denoiser_params"] == pytest.approx(865.9e6, rel=0.01)
    assert d["components"]["text_encoder"] == pytest.approx(341.2e6, rel=0.01)
    assert d["components"]["vae"] == pytest.approx(55.4e6, rel=0.01)
    assert d["components"]["vocoder"] == pytest.approx(55.3e6, rel=0.01)
    assert d["denoiser_input_shape"] == [2, 8, 256, 16]
    assert d["gflop_per_step"] == pytest.approx(1597.8, rel=0.01)  # with 20 T5 tokens
    by_call = d["gflop_once_per_generation_by_call"]
    assert by_call["vae"] == pytest.approx(671, rel=0.01)
    assert by_call["text_encoder"] + by_call["text_encoder (unconditional)"] == pytest.approx(25, rel=0.02)
    assert by_call["vocoder"] == pytest.approx(1003 * 1024 / 1000, rel=0.01)  # HiFi-GAN on 10.24 s
    assert d["notes"]["t5_tokens"] == 20 and d["notes"]["clip_seconds"] == pytest.approx(10.24)


def test_tango2_is_the_same_architecture(full):
    tango2 = build_model("tango2", "full", device="meta")
    assert tango2.name == "tango2" and type(tango2).__mro__[1] is TangoAdapter
    assert tango2.parameter_counts() == full.parameter_counts()


def test_defaults_are_the_study_settings(full):
    d = TangoAdapter.defaults
    assert full.dtype == torch.float32  # the study ran Tango in fp32
    assert (d.dtype, d.guidance_scale, d.negative_prompt, d.fixed_duration_s, d.sample_rate) == (
        "float32", 3.0, "", 10.24, 16000)
    half = build_model("tango", "full", device="meta", dtype="float16")
    assert half.dtype == torch.float16 and half.denoiser.conv_in.weight.dtype == torch.float16
    # as transformers' from_pretrained(torch_dtype=float16): T5's feed-forward output stays float32
    assert half.text_encoder.encoder.block[0].layer[1].DenseReluDense.wo.weight.dtype == torch.float32
    assert full.clip_seconds == pytest.approx(10.24)


def test_tiny_generates_fixed_length_audio(tiny):
    seen = []

    def phases(name):
        seen.append(name)
        return torch.autograd.profiler.record_function(name)

    out = tiny.generate(request(), phases)
    assert seen == ["text_encoding", "denoising", "decoding", "vocoder"]
    assert out.sample_rate == 16000 and out.denoiser_calls == 3
    assert out.waveforms.shape == (1, 1, 15360)  # 24 latent frames x 4 x hop 160 = 0.96 s
    assert out.waveforms.dtype == np.float32 and np.isfinite(out.waveforms).all()
    assert np.abs(out.waveforms).max() > 0
    assert tuple(out.latents.shape) == (1, 8, 24, 16)
    same = tiny.generate(request())
    other = tiny.generate(request(seed=6))
    assert np.array_equal(out.waveforms, same.waveforms)
    assert not torch.equal(out.latents, other.latents)


def test_the_catalogue_knows_the_tiny_clip(tiny):
    """The early checks (no model built) and the built model refuse the same durations at tiny size."""
    assert entry("tango").defaults.at_size("tiny").fixed_duration_s == pytest.approx(tiny.clip_seconds)
    tiny.check_request(request(duration_s=tiny.clip_seconds))
    with pytest.raises(ModelError, match=r"tango \(tiny size\) always generates 0.96 s of audio"):
        tiny.check_request(request(duration_s=5.0))


def test_sampling_loop_feeds_the_unet_like_tango(tiny):
    """CFG batch [uncond, cond]; "" padded to the prompt's token length; boolean mask; one call per step."""
    prompts = ["a dog barks", "water running out of a faucet, some hitting a sink"]
    recorder = Recording(tiny.denoiser)
    original, tiny.denoiser = tiny.denoiser, recorder
    try:
        out = tiny.generate(request(prompts=prompts, steps=2))
    finally:
        tiny.denoiser = original
    assert out.denoiser_calls == 2 and len(recorder.calls) == 2
    shape, context, mask = recorder.calls[0]
    # the tiny replica has no tokenizer: one synthetic id per word or punctuation mark, plus EOS
    # "a dog barks": 3 words + EOS = 4; the faucet prompt: 10 words + "," + EOS = 12 (the batch's width)
    assert shape == (4, 8, 24, 16) and tuple(context) == (4, 12, 32)
    assert mask.dtype == torch.bool
    assert mask[:2].sum(dim=1).tolist() == [1, 1]  # "" is EOS only
    assert mask[2:].sum(dim=1).tolist() == [4, 12]


def test_max_batch_splits_like_generate_for_batch(tiny):
    """The study's batch experiment: 10 prompts with Tango's batch_size=8 -> chunks of 8 and 2 clips."""
    assert [len(c) for c in TangoAdapter.chunks(request(waveforms_per_prompt=10))] == [8, 2]
    unsplit = request(waveforms_per_prompt=10, extra={"max_batch": 0})
    assert [len(c) for c in TangoAdapter.chunks(unsplit)] == [10]
    two = request(prompts=["a", "b"], waveforms_per_prompt=2, extra={"max_batch": 3})
    assert TangoAdapter.chunks(two) == [["a", "a", "b"], ["b"]]
    recorder = Recording(tiny.denoiser)
    original, tiny.denoiser = tiny.denoiser, recorder
    try:
        out = tiny.generate(request(waveforms_per_prompt=3, steps=2, extra={"max_batch": 2}))
    finally:
        tiny.denoiser = original
    # UNet batches: CFG-doubled chunks of 2 and 1 clips, each for every step
    assert [c[0][0] for c in recorder.calls] == [4, 4, 2, 2]
    assert out.waveforms.shape[0] == 3 and out.denoiser_calls == 4


def test_negative_prompt_is_ignored_with_a_warning(tiny):
    with pytest.warns(UserWarning, match="no negative prompt"):
        a = tiny.generate(request(negative_prompt="Low quality.", steps=2))
    b = tiny.generate(request(steps=2))
    assert np.array_equal(a.waveforms, b.waveforms)


@pytest.mark.parametrize("duration", [None, 10.0, 10.24])
def test_the_fixed_duration_is_accepted(full, duration):
    """The default, 10 s (the study's setting) and the clip's own length all compute the 10.24-s clip."""
    req = request(duration_s=duration)
    full.check_request(req)  # raises for any other duration (below)
    assert full.latent_seconds(full.resolved(req).duration_s) == pytest.approx(10.24)


@pytest.mark.parametrize("duration", [5.0, 20.0, 47.55])
def test_other_durations_are_rejected(full, duration):
    with pytest.raises(ModelError, match="tango always generates 10.24 s of audio"):
        full.check_request(request(duration_s=duration))


@pytest.mark.parametrize(("kw", "needle"), [
    ({"steps": 0}, "steps must be >= 1"),
    ({"waveforms_per_prompt": 0}, "batch"),
    ({"extra": {"max_batch": -1}}, "max_batch"),
    ({"duration_s": -1.0}, "duration must be > 0"),
])
def test_bad_requests_are_rejected(full, kw, needle):
    with pytest.raises(ModelError, match=needle):
        full.check_request(request(**kw))


def test_saved_files_use_tangos_names(saved, tiny):
    names = {p.name for p in saved.iterdir()}
    assert {"main_config.json", "pytorch_model_main.bin", "vae_config.json", "pytorch_model_vae.bin",
            "stft_config.json"} <= names
    main = torch.load(saved / "pytorch_model_main.bin", weights_only=True)
    assert {k.split(".")[0] for k in main} == {"unet", "text_encoder"}
    assert "unet.conv_in.weight" in main and "text_encoder.shared.weight" in main
    vae = torch.load(saved / "pytorch_model_vae.bin", weights_only=True)
    channels = 32 * 4  # tiny ch 32 x ch_mult[-1] 4
    assert tuple(vae["decoder.mid.attn_1.q.weight"].shape) == (channels, channels, 1, 1)
    assert "vocoder.ups.0.weight" in vae and "vocoder.conv_pre.weight" in vae
    vae_config = json.loads((saved / "vae_config.json").read_text())
    assert vae_config["ddconfig"]["ch"] == 32 and vae_config["scale_factor"] == 1.0


def test_save_load_round_trip(saved, tiny):
    with pytest.warns(UserWarning, match="synthetic token ids"):  # a replica's folder has no tokenizer
        loaded = build_model("tango", "tiny", weights=str(saved))
    assert loaded.weights == str(saved) and loaded.text.synthetic
    req = request(prompts=["a dog barks", "rain"], steps=2)
    a, b = tiny.generate(req), loaded.generate(req)
    assert np.array_equal(a.waveforms, b.waveforms) and torch.equal(a.latents, b.latents)
    with pytest.warns(UserWarning):
        tango2 = build_model("tango2", "tiny", weights=str(saved))
    for name, module in tango2.components().items():
        reference = tiny.components()[name].state_dict()
        assert all(torch.equal(t, reference[k]) for k, t in module.state_dict().items()), name


def test_a_tokenizer_in_the_folder_is_used(saved, tmp_path):
    import shutil

    folder = tmp_path / "with-tokenizer"
    shutil.copytree(saved, folder)
    prompts = ["a dog barks", "rain on a tin roof, heavy"]
    tokenizer = small_t5_tokenizer(prompts, 512)
    tokenizer.save_pretrained(folder / "tokenizer")
    loaded = build_model("tango", "tiny", weights=str(folder))
    assert not loaded.text.synthetic
    expected = tokenizer(prompts, padding=True, return_tensors="pt")
    recorder = Recording(loaded.denoiser)
    loaded.denoiser = recorder
    loaded.generate(request(prompts=prompts, steps=1))
    _, context, mask = recorder.calls[0]
    width = expected.input_ids.shape[1]
    assert tuple(context)[:2] == (4, width)
    assert mask[:2].sum(dim=1).tolist() == [1, 1]  # "" -> </s> padded to the prompts' length
    assert torch.equal(mask[2:], expected.attention_mask == 1)


def _ldm_vae_shapes(ch: int, ch_mult: list[int], blocks: int, z: int) -> dict[str, tuple[int, ...]]:
    """Tango's (AudioLDM/LDM) VAE state-dict shapes, enumerated from the LDM Encoder/Decoder structure."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name, cout, cin, k):
        shapes[f"{name}.weight"], shapes[f"{name}.bias"] = (cout, cin, k, k), (cout,)

    def norm(name, c):
        shapes[f"{name}.weight"] = shapes[f"{name}.bias"] = (c,)

    def resnet(name, cin, cout):
        norm(f"{name}.norm1", cin), conv(f"{name}.conv1", cout, cin, 3)
        norm(f"{name}.norm2", cout), conv(f"{name}.conv2", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.nin_shortcut", cout, cin, 1)

    def mid(part, c):
        resnet(f"{part}.mid.block_1", c, c), resnet(f"{part}.mid.block_2", c, c)
        norm(f"{part}.mid.attn_1.norm", c)
        for layer in ("q", "k", "v", "proj_out"):
            conv(f"{part}.mid.attn_1.{layer}", c, c, 1)

    conv("encoder.conv_in", ch, 1, 3)
    block_in = ch
    for i, mult in enumerate(ch_mult):
        for j in range(blocks):
            resnet(f"encoder.down.{i}.block.{j}", block_in, ch * mult)
            block_in = ch * mult
        if i != len(ch_mult) - 1:
            conv(f"encoder.down.{i}.downsample.conv", block_in, block_in, 3)
    mid("encoder", block_in)
    norm("encoder.norm_out", block_in), conv("encoder.conv_out", 2 * z, block_in, 3)
    conv("quant_conv", 2 * z, 2 * z, 1), conv("post_quant_conv", z, z, 1)
    conv("decoder.conv_in", block_in, z, 3)
    mid("decoder", block_in)
    for i in reversed(range(len(ch_mult))):
        for j in range(blocks + 1):
            resnet(f"decoder.up.{i}.block.{j}", block_in, ch * ch_mult[i])
            block_in = ch * ch_mult[i]
        if i != 0:
            conv(f"decoder.up.{i}.upsample.conv", block_in, block_in, 3)
    norm("decoder.norm_out", block_in), conv("decoder.conv_out", 1, block_in, 3)
    return shapes


def test_vae_keys_follow_the_audioldm_layout(full):
    """The explicit key map gives exactly the LDM VAE's names and shapes (full size, on meta)."""
    vae_pairs, voc_pairs = TangoAdapter._vae_key_pairs(full.vae, full.vocoder)
    state = full.vae.state_dict()
    mapped = {t: tuple(state[d].shape) + ((1, 1) if conv else ()) for d, (t, conv) in vae_pairs.items()}
    assert mapped == _ldm_vae_shapes(128, [1, 2, 4], 2, 8)
    voc = {t: tuple(full.vocoder.state_dict()[d].shape) for d, t in voc_pairs.items()}
    assert voc["vocoder.conv_pre.weight"] == (1024, 64, 7)
    assert voc["vocoder.ups.0.weight"] == (1024, 512, 16)  # ConvTranspose1d(1024 -> 512, k 16)
    assert voc["vocoder.ups.4.weight"] == (64, 32, 4)
    assert voc["vocoder.resblocks.14.convs2.2.weight"] == (32, 32, 11)
    assert voc["vocoder.conv_post.weight"] == (1, 32, 7)
    assert len([k for k in voc if k.startswith("vocoder.resblocks.")]) == 15 * 12


def test_mismatched_checkpoint_lists_the_keys(saved, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    main = torch.load(broken / "pytorch_model_main.bin", weights_only=True)
    main.pop("unet.conv_in.weight")
    main["unet.group_in.0.weight"] = torch.zeros(1)
    torch.save(main, broken / "pytorch_model_main.bin")
    with pytest.raises(ModelError) as err:
        build_model("tango", "tiny", weights=str(broken))
    message = str(err.value)
    assert "pytorch_model_main.bin does not match" in message
    assert "1 missing keys: unet.conv_in.weight" in message
    assert "1 unexpected keys: unet.group_in.0.weight" in message
    assert "\n" not in message
    shutil.copy(saved / "pytorch_model_main.bin", broken / "pytorch_model_main.bin")
    vae = torch.load(broken / "pytorch_model_vae.bin", weights_only=True)
    vae["decoder.conv_out.weight"] = torch.zeros(2, 128, 3, 3)
    torch.save(vae, broken / "pytorch_model_vae.bin")
    with pytest.raises(ModelError, match=r"1 wrong shapes: decoder.conv_out.weight \(2, 128, 3, 3\)"):
        build_model("tango", "tiny", weights=str(broken))


def test_bad_weights_are_rejected(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        build_model("tango", "tiny", weights=str(tmp_path / "nowhere"))
    (tmp_path / "diffusers-layout").mkdir()
    (tmp_path / "diffusers-layout" / "model_index.json").write_text("{}")
    with pytest.raises(ModelError, match="wrong layout for tango.*missing main_config.json"):
        build_model("tango", "tiny", weights=str(tmp_path / "diffusers-layout"))
    with pytest.raises(ModelError, match="neither a local folder nor a cached hub repo"):
        build_model("tango", "tiny", weights="nobody-here/no-such-tango")
    with pytest.raises(ModelError, match="unknown size"):
        build_model("tango", "huge")
