"""Original-checkpoint loading for Make-An-Audio 1 and 2.

The synthetic checkpoints are written in the original naming by inverting the key tables on a random
replica's state dict (so each table is exercised both ways), then loaded strictly; the save/load round trip
must give the same audio for the same seed.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.blocks.bigvgan import BigVGANGenerator
from tta_energy.models.ckpt_maps import LDM_SCHEDULE_BUFFERS, SCALE_FACTOR
from tta_energy.models.make_an_audio import MakeAnAudioAdapter, load_strict, vocoder_table
from tta_energy.models.make_an_audio_2 import MakeAnAudio2Adapter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ADAPTERS = {"make-an-audio": MakeAnAudioAdapter, "make-an-audio-2": MakeAnAudio2Adapter}
ORIGINAL_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "cond_stage_model.")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_models() -> dict[str, object]:
    models = {name: cls.build("tiny") for name, cls in ADAPTERS.items()}
    for model in models.values():
        model.scale_factor = 0.8  # a non-trivial latent scale, as scale_by_std learns
    return models


@pytest.fixture(scope="module")
def saved(tiny_models, tmp_path_factory) -> dict[str, Path]:
    folders = {}
    for name, model in tiny_models.items():
        folders[name] = tmp_path_factory.mktemp(name)
        model.save_pretrained(folders[name])
    return folders


def _check_table_both_ways(model, exact: bool) -> dict[str, torch.Tensor]:
    table = model.table()
    state = model.modules.state_dict()
    original = model.original_state_dict() if exact else table.to_original(state)
    assert len(original) == len(state) + (
        len(LDM_SCHEDULE_BUFFERS) + 1 if exact else 0
    )  # no key lost or merged
    assert all(k.startswith(ORIGINAL_PREFIXES) or k in table.extra_keys for k in original)
    back = table.to_project(original)
    assert back.unexpected == [] and set(back.state_dict) == set(state)
    for key, tensor in state.items():
        assert back.state_dict[key].shape == tensor.shape, key
        if exact:
            assert torch.equal(back.state_dict[key], tensor.float()), key
    return original


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_tables_cover_every_full_size_tensor(name: str) -> None:
    _check_table_both_ways(ADAPTERS[name].build("full", device="meta"), exact=False)


def test_make_an_audio_table_writes_ldm_names(tiny_models) -> None:
    original = _check_table_both_ways(tiny_models["make-an-audio"], exact=True)
    expected = {  # LDM openaimodel / autoencoder / MS-CLAP names; 1x1-conv attention weights are 4-D
        "model.diffusion_model.input_blocks.1.0.in_layers.0.weight": 1,
        "model.diffusion_model.input_blocks.3.0.op.weight": 4,
        "model.diffusion_model.input_blocks.4.0.skip_connection.weight": 4,
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": 2,
        "model.diffusion_model.output_blocks.2.2.conv.weight": 4,
        "model.diffusion_model.out.2.bias": 1,
        "first_stage_model.encoder.down.2.attn.1.q.weight": 4,
        "first_stage_model.encoder.mid.attn_1.proj_out.weight": 4,
        "first_stage_model.decoder.up.3.block.2.conv2.weight": 4,
        "first_stage_model.decoder.up.1.upsample.conv.weight": 4,
        "cond_stage_model.caption_encoder.base.encoder.layer.1.attention.self.query.weight": 2,
        "cond_stage_model.caption_encoder.projection.linear1.weight": 2,
        "scale_factor": 0,
        "betas": 1,
    }
    for key, ndim in expected.items():
        assert original[key].ndim == ndim, key
    assert not any("decoder.up.0.upsample" in k or "input_blocks.6" in k for k in original)


def test_make_an_audio_2_table_writes_original_names(tiny_models) -> None:
    original = _check_table_both_ways(tiny_models["make-an-audio-2"], exact=True)
    for key in (
        "model.diffusion_model.t_embedder.mlp.2.weight",
        "model.diffusion_model.c2_embedder.mlp.3.bias",
        "model.diffusion_model.pos_emb.weight",
        "model.diffusion_model.final_layer.conv1d.weight",
        "model.diffusion_model.blocks.1.transformer_blocks.0.ff.net.0.proj.weight",
        "model.diffusion_model.blocks.0.transformer_blocks.0.attn2.to_out.0.bias",
        "first_stage_model.encoder.down.0.downsample.conv.weight",
        "first_stage_model.decoder.up.1.upsample.conv.weight",
        "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
        "cond_stage_model.t5_transformer.encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
        "cond_stage_model.t5_transformer.shared.weight",
    ):
        assert key in original, key
    assert original["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 3  # Conv1d 1x1


def test_vocoder_table_writes_weight_norm_and_filters(tiny_models) -> None:
    vocoder = tiny_models["make-an-audio"].vocoder
    table = vocoder_table(vocoder.config)
    state = vocoder.state_dict()
    original = table.to_original(state)
    for key in (
        "conv_pre.weight_g",
        "conv_pre.weight_v",
        "ups.5.0.weight_g",
        "resblocks.17.convs1.2.weight_v",
        "resblocks.4.convs2.0.bias",
        "resblocks.8.activations.5.act.beta",
        "resblocks.0.activations.0.upsample.filter",
        "activation_post.downsample.lowpass.filter",
        "conv_post.weight_g",
    ):
        assert key in original, key
    assert original["ups.0.0.weight_g"].shape == (64, 1, 1)  # weight_norm over dim 0 of a ConvTranspose1d
    back = table.to_project(original)
    assert back.unexpected == [] and all(torch.equal(back.state_dict[k], v) for k, v in state.items())


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_save_load_round_trip_gives_the_same_audio(name: str, tiny_models, saved) -> None:
    model = tiny_models[name]
    folder = saved[name]
    checkpoint = torch.load(folder / model.checkpoint_file, weights_only=True)
    assert set(checkpoint) == {"state_dict"}
    assert torch.load(folder / "bigvgan" / "best_netG.pt", weights_only=True).keys() == {"generator"}
    loaded = ADAPTERS[name].build("tiny", weights=str(folder))
    assert loaded.scale_factor == pytest.approx(0.8)
    request = GenerationRequest(prompts=["glass breaks"], steps=4, duration_s=1.0, seed=5)
    a, b = model.generate(request), loaded.generate(request)
    assert np.array_equal(a.waveforms, b.waveforms) and torch.equal(a.latents, b.latents)


def test_legacy_entries_of_older_library_versions_are_accepted(tiny_models, saved, tmp_path) -> None:
    model = tiny_models["make-an-audio"]
    folder = tmp_path / "legacy"
    shutil.copytree(saved["make-an-audio"], folder)
    state = torch.load(folder / model.checkpoint_file, weights_only=True)["state_dict"]
    legacy = {"cond_stage_model.caption_encoder.base.embeddings.position_ids": torch.arange(512)[None],
              "lvlb_weights": torch.ones(1000)}
    torch.save({"state_dict": state | legacy}, folder / model.checkpoint_file)
    loaded = MakeAnAudioAdapter.build("tiny", weights=str(folder))
    # the legacy entries are dropped: neither reported unexpected nor kept as extras or module tensors
    conversion = loaded.table().to_project(state | legacy)
    assert conversion.unexpected == [] and not set(legacy) & set(conversion.extras)
    assert set(conversion.state_dict) == set(model.modules.state_dict())
    # the weights that load are the saved model's, tensor for tensor, and give its audio exactly
    saved_state, loaded_state = model.modules.state_dict(), loaded.modules.state_dict()
    assert saved_state.keys() == loaded_state.keys()
    assert all(torch.equal(loaded_state[k], v) for k, v in saved_state.items())
    assert loaded.scale_factor == pytest.approx(0.8)
    request = GenerationRequest(prompts=["glass breaks"], steps=4, duration_s=1.0, seed=5)
    a, b = model.generate(request), loaded.generate(request)
    assert np.array_equal(a.waveforms, b.waveforms) and torch.equal(a.latents, b.latents)


def test_t5_input_embedding_may_be_left_to_its_tie(tiny_models, saved, tmp_path) -> None:
    model = tiny_models["make-an-audio-2"]
    folder = tmp_path / "untied"
    shutil.copytree(saved["make-an-audio-2"], folder)
    data = torch.load(folder / model.checkpoint_file, weights_only=True)
    del data["state_dict"]["cond_stage_model.t5_transformer.encoder.embed_tokens.weight"]
    torch.save(data, folder / model.checkpoint_file)
    loaded = MakeAnAudio2Adapter.build("tiny", weights=str(folder))
    assert torch.equal(loaded.t5_encoder.encoder.embed_tokens.weight, model.t5_encoder.shared.weight)


def _mutated(model, change) -> dict[str, torch.Tensor]:
    original = dict(model.original_state_dict())
    change(original)
    return original


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda sd: sd.pop("model.diffusion_model.out.2.weight"),
            r"1 missing keys \(model\.diffusion_model\.out\.2\.weight\)",
        ),
        (lambda sd: sd.pop("scale_factor"), r"1 missing keys \(scale_factor\)"),
        (
            lambda sd: sd.update(
                {"model.diffusion_model.extra.weight": torch.zeros(1), "model_ema.decay": torch.zeros(1)}
            ),
            r"2 unexpected keys \(model\.diffusion_model\.extra\.weight, model_ema\.decay\)",
        ),
        (
            lambda sd: sd.update({"first_stage_model.quant_conv.bias": torch.zeros(3)}),
            r"1 wrongly shaped keys \(first_stage_model\.quant_conv\.bias \(3,\)!=\(8,\)\)",
        ),
    ],
)
def test_mismatched_keys_fail_with_one_line(tiny_models, change, message) -> None:
    model = tiny_models["make-an-audio"]
    with pytest.raises(ModelError, match=message) as info:
        load_strict(model.modules, model.table(), _mutated(model, change), "x.ckpt")
    assert "\n" not in str(info.value) and str(info.value).startswith("x.ckpt does not fit make-an-audio:")


def test_many_missing_keys_are_counted_and_abbreviated(tiny_models) -> None:
    model = tiny_models["make-an-audio-2"]
    original = {k: v for k, v in model.original_state_dict().items() if "t5_transformer" not in k}
    with pytest.raises(
        ModelError,
        match=r"\d+ missing keys \(cond_stage_model\.t5_transformer\.[^,]+, [^,]+, [^,]+, \.\.\.\)",
    ):
        load_strict(model.modules, model.table(), original, "maa2.ckpt")


def _break(folder: Path, what: str, model) -> None:
    if what == "no vocoder":
        shutil.rmtree(folder / "bigvgan")
    elif what == "not lightning":
        state = torch.load(folder / model.checkpoint_file, weights_only=True)["state_dict"]
        torch.save(state, folder / model.checkpoint_file)
    elif what == "garbage":
        (folder / model.checkpoint_file).write_bytes(b"not a checkpoint")
    elif what == "betas":
        data = torch.load(folder / model.checkpoint_file, weights_only=True)
        data["state_dict"]["betas"] = data["state_dict"]["betas"] * 2
        torch.save(data, folder / model.checkpoint_file)
    elif what == "vocoder keys":
        data = torch.load(folder / "bigvgan" / "best_netG.pt", weights_only=True)
        del data["generator"]["conv_post.weight_g"]
        torch.save(data, folder / "bigvgan" / "best_netG.pt")


@pytest.mark.parametrize(
    ("name", "what", "message"),
    [
        (
            "make-an-audio",
            "no vocoder",
            r"wrong layout for make-an-audio: missing bigvgan/args\.yml, bigvgan/best_netG\.pt",
        ),
        ("make-an-audio", "not lightning", r"wrong layout: no 'state_dict' entry"),
        ("make-an-audio", "garbage", r"cannot read checkpoint"),
        ("make-an-audio-2", "betas", r"noise schedule \(betas\) differs"),
        (
            "make-an-audio-2",
            "vocoder keys",
            r"does not fit BigVGAN: 1 missing keys \(conv_post\.weight\); "
            r"1 unexpected keys \(conv_post\.weight_v\)",
        ),
    ],
)
def test_bad_folders_fail_with_one_line(name, what, message, tiny_models, saved, tmp_path) -> None:
    folder = tmp_path / "broken"
    shutil.copytree(saved[name], folder)
    _break(folder, what, tiny_models[name])
    with pytest.raises(ModelError, match=message) as info:
        ADAPTERS[name].build("tiny", weights=str(folder))
    assert "\n" not in str(info.value)


def test_missing_path_and_meta_device(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        MakeAnAudioAdapter.build("tiny", weights=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError, match="meta device"):
        MakeAnAudio2Adapter.build("tiny", weights=str(tmp_path), device="meta")
    with pytest.raises(ModelError, match=re.escape("missing maa2.ckpt")):
        MakeAnAudio2Adapter.build("tiny", weights=str(tmp_path))


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_saved_configs_rebuild_the_same_sizes(tiny_models, saved) -> None:
    meta = torch.device("meta")
    for name, model in tiny_models.items():
        folder = saved[name]
        # modules built from the folder's configs alone (no weights read) have the saved model's tensors
        config = ADAPTERS[name]._folder_config(folder)
        modules = ADAPTERS[name]._modules(config, meta)
        assert _shapes(modules) == _shapes(model.modules), name
        assert _parameters(modules) == _parameters(model.modules) > 0, name
        with torch.device(meta):
            vocoder = BigVGANGenerator(config.vocoder)
        assert _shapes(vocoder) == _shapes(model.vocoder), name
        assert _parameters(vocoder) == _parameters(model.vocoder) > 0, name
        leftovers = [p.name for p in folder.rglob("*.tmp")]
        assert leftovers == []  # every file was written through a temporary name and renamed
    assert SCALE_FACTOR in tiny_models["make-an-audio"].table().extra_keys


def test_a_bert_tokenizer_in_the_weights_folder_replaces_synthetic_ids(saved, tmp_path) -> None:
    folder = tmp_path / "with_tokenizer"
    shutil.copytree(saved["make-an-audio"], folder)
    vocabulary = folder / "bert-base-uncased"
    vocabulary.mkdir()
    (vocabulary / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "dog", "barks"]) + "\n"
    )
    (vocabulary / "tokenizer_config.json").write_text(
        '{"tokenizer_class": "BertTokenizer", "do_lower_case": true}'
    )
    model = MakeAnAudioAdapter.build("tiny", weights=str(folder))
    ids = model.clap_ids(["A dog barks"])
    assert ids.shape == (1, 77) and ids[0, :5].tolist() == [2, 5, 6, 7, 3] and not ids[0, 5:].any()
