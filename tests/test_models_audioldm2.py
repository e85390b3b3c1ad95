"""AudioLDM 2 adapter: tiny replica on the CPU against diffusers' pipeline, GPT-2 generation, re-ranking,
round trip, bad weights."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from model_helpers import assert_close_audio

from tta_energy.models.audioldm import CLAP_TOKEN_LENGTH
from tta_energy.models.audioldm2 import resample, t5_token_count
from tta_energy.models.base import GenerationRequest, ModelError
from tta_energy.models.registry import build_model
from tta_energy.study import STUDY_PROMPT

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    adapter = build_model("audioldm2", size="tiny", dtype="float32")
    adapter.pipe.set_progress_bar_config(disable=True)
    return adapter


def request(**kwargs) -> GenerationRequest:
    values = {"prompts": [STUDY_PROMPT], "steps": 2, "duration_s": 1.0, "seed": 3}
    values.update(kwargs)
    return GenerationRequest(**values)


def tokenizers():
    """Small real tokenizers trained here: byte-level BPE (RoBERTa ids) and a SentencePiece unigram (T5)."""
    from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
    from transformers import RobertaTokenizerFast, T5TokenizerFast

    texts = [STUDY_PROMPT, "Low quality.", "A dog barks in the distance"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=1, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    clap = RobertaTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                pad_token="<pad>", unk_token="<unk>", mask_token="<mask>",
                                model_max_length=CLAP_TOKEN_LENGTH)
    unigram = SentencePieceUnigramTokenizer()
    unigram.train_from_iterator(texts, vocab_size=60, special_tokens=["<pad>", "</s>", "<unk>"],
                                unk_token="<unk>", show_progress=False)
    t5 = T5TokenizerFast(tokenizer_object=unigram._tokenizer, eos_token="</s>", pad_token="<pad>",
                         unk_token="<unk>", extra_ids=0, model_max_length=128)
    return clap, t5


def with_lm_head(pipe):
    """The same pipeline with its GPT-2 wrapped in GPT2LMHeadModel (same weights): diffusers 0.42 can run
    its own ``generate_language_model`` only on a model with GenerationMixin."""
    from diffusers import AudioLDM2Pipeline
    from transformers import GPT2LMHeadModel

    lm = GPT2LMHeadModel(pipe.language_model.config).eval()
    lm.transformer.load_state_dict(pipe.language_model.state_dict())
    parts = {k: getattr(pipe, k) for k in pipe.components}
    parts["language_model"] = lm
    reference = AudioLDM2Pipeline(**parts)
    reference.set_progress_bar_config(disable=True)
    return reference


def test_defaults_and_token_lengths(tiny):
    d = tiny.defaults
    assert (d.dtype, d.negative_prompt, d.guidance_scale, d.duration_s, d.sample_rate) == (
        "float16", "Low quality.", 3.5, 10.0, 16000)
    assert t5_token_count(STUDY_PROMPT) == 20 and t5_token_count("Low quality.") == 4
    with torch.inference_mode():
        t5, mask, generated = tiny.encode_texts([STUDY_PROMPT])
        neg_t5, neg_mask, _ = tiny.encode_texts(["Low quality."], t5_length=20)
    assert t5.shape[:2] == (1, 20) and generated.shape[:2] == (1, 8)
    assert mask.sum() == 20 and neg_mask.tolist() == [[1] * 4 + [0] * 16] and neg_t5.shape[:2] == (1, 20)


def test_generate_equals_the_diffusers_pipeline_call(tiny):
    out = tiny.generate(request())
    with torch.inference_mode():
        t5, mask, generated = tiny.encode_texts([STUDY_PROMPT])
        neg_t5, neg_mask, neg_generated = tiny.encode_texts(["Low quality."], t5_length=t5.shape[1])
    reference = tiny.pipe(prompt_embeds=t5, attention_mask=mask, generated_prompt_embeds=generated,
                          negative_prompt_embeds=neg_t5, negative_attention_mask=neg_mask,
                          negative_generated_prompt_embeds=neg_generated, num_inference_steps=2,
                          audio_length_in_s=1.0, guidance_scale=3.5,
                          generator=torch.Generator().manual_seed(3)).audios
    assert out.waveforms.shape == (1, 1, 16000) and out.denoiser_calls == 2
    assert_close_audio(out.waveforms[:, 0], reference)


def test_gpt2_generation_equals_the_pipeline_method(tiny):
    reference = with_lm_head(tiny.pipe)
    width = tiny.pipe.language_model.config.n_embd
    embeds = torch.randn(2, 11, width, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0  # a padded negative prompt
    with torch.inference_mode():
        ours = tiny.lm_generation(embeds, mask)
        theirs = reference.generate_language_model(embeds, attention_mask=mask, max_new_tokens=8)
    assert ours.shape == (2, 8, embeds.shape[-1])
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_real_tokenizers_equal_the_whole_pipeline_on_prompt_strings(tiny):
    clap, t5 = tokenizers()
    tiny.pipe.register_modules(tokenizer=clap, tokenizer_2=t5)
    try:
        out = tiny.generate(request())
        reference = with_lm_head(tiny.pipe)(STUDY_PROMPT, negative_prompt="Low quality.",
                                            num_inference_steps=2, audio_length_in_s=1.0,
                                            generator=torch.Generator().manual_seed(3))
    finally:
        tiny.pipe.register_modules(tokenizer=None, tokenizer_2=None)
    assert_close_audio(out.waveforms[:, 0], reference.audios)


def test_waveforms_are_re_ranked_by_clap_when_several(tiny):
    ranked = tiny.generate(request(waveforms_per_prompt=3))
    plain = tiny.generate(request(waveforms_per_prompt=3, extra={"score_waveforms": False}))
    assert ranked.waveforms.shape == plain.waveforms.shape == (3, 1, 16000)
    # the same three clips, in CLAP order: each ranked clip is one of the unranked ones
    order = [int(np.argmin([np.abs(r - p).max() for p in plain.waveforms])) for r in ranked.waveforms]
    assert sorted(order) == [0, 1, 2]
    for i, j in enumerate(order):
        np.testing.assert_allclose(ranked.waveforms[i], plain.waveforms[j], rtol=1e-5, atol=1e-12)
    # the order is CLAP's: text-audio logits of the unranked clips, highest first
    ids, mask = tiny.clap_ids([STUDY_PROMPT], pad_to_max=False)
    audio48k = resample(plain.waveforms[:, 0], 16000, 48000)
    assert audio48k.shape == (3, 48000)
    features = tiny.pipe.feature_extractor(list(audio48k), return_tensors="pt", sampling_rate=48000)
    with torch.inference_mode():
        logits = tiny.pipe.text_encoder(input_ids=ids, attention_mask=mask,
                                        input_features=features.input_features).logits_per_text[0]
    assert order == torch.argsort(logits, descending=True).tolist()


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "AudioLDM2Pipeline" and index["language_model"][1] == "GPT2Model"
    loaded = build_model("audioldm2", size="tiny", weights=str(tmp_path), dtype="float32")
    # equal to float rounding (the loaded CLAP text branch differs by ~1e-7: memory layout of loaded tensors)
    assert_close_audio(loaded.generate(request()).waveforms, tiny.generate(request()).waveforms)
    # a folder of the other family is refused with one line
    with pytest.raises(ModelError, match="holds a AudioLDM2Pipeline checkpoint, not a AudioLDMPipeline"):
        build_model("audioldm", size="tiny", weights=str(tmp_path))


def test_checkpoint_with_missing_keys_is_refused(tiny, tmp_path):
    from safetensors.torch import load_file, save_file

    tiny.save_pretrained(tmp_path)
    path = next((tmp_path / "language_model").glob("*.safetensors"))
    state = load_file(path)
    del state[next(k for k in state if k.endswith("mlp.c_fc.weight"))]
    save_file(state, path, metadata={"format": "pt"})
    with pytest.raises(ModelError, match="does not match language_model: missing"):
        build_model("audioldm2", size="tiny", weights=str(tmp_path), dtype="float32")


def test_bad_requests(tiny):
    for change, message in [({"steps": 0}, "steps must be >= 1"), ({"waveforms_per_prompt": 0}, "batch"),
                            ({"duration_s": 0.0}, "duration must be > 0"),
                            ({"duration_s": 31.0}, "exceeds audioldm2's maximum")]:
        with pytest.raises(ModelError, match=message):
            tiny.generate(request(**change))
