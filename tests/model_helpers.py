"""Helpers shared by the model adapter tests: small real tokenizers and audio comparison."""

from __future__ import annotations

import numpy as np


def small_t5_tokenizer(texts: list[str], model_max_length: int):
    """A real T5TokenizerFast (SentencePiece-style unigram) with a small vocabulary trained on ``texts``: the
    hub vocabularies cannot be downloaded, but the tokenizer code path is the real one."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=60, unk_token="<unk>",
                                                           special_tokens=["<pad>", "</s>", "<unk>"]))
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                           extra_ids=0, model_max_length=model_max_length)


def assert_close_audio(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal to float rounding, relative to the reference's peak (which must not be silent)."""
    scale = float(np.abs(expected).max())
    assert scale > 0, "reference audio is all zeros: the comparison would say nothing"
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale)
