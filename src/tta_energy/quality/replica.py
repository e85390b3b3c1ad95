"""Random-weight CLAP checkpoints in the Hugging Face layout, for tests and GPU benchmarks (no download).

``size="full"`` is the LAION-CLAP HTSAT-tiny + RoBERTa-base architecture of laion/clap-htsat-{unfused,fused}
(transformers' ``ClapConfig`` defaults: 10 s windows, 64 mel bins, 512-d projection); ``size="tiny"`` is a
few-thousand-parameter model with 2 s windows and LAION-CLAP's 64 mel bins (the fusion crops of the feature
extractors assume 64) for CPU tests. Both are written with
``save_pretrained`` together with a feature extractor and a RoBERTa tokenizer built offline from a small
vocabulary (letters and word-initial letters), so loading them runs exactly the code that loads a real
checkpoint folder. The weights are random: the embeddings mean nothing, only shapes, cost and determinism do.
"""

from __future__ import annotations

import string
from pathlib import Path


def offline_roberta_tokenizer() -> object:
    """A byte-level BPE RoBERTa tokenizer over lower-case letters, without merges (one token per letter)."""
    from transformers import RobertaTokenizer

    letters = string.ascii_lowercase
    tokens = [
        "<s>",
        "<pad>",
        "</s>",
        "<unk>",
        *letters,
        *(f"\u0120{c}" for c in letters),
        ".",
        ",",
        "'",
        "<mask>",
    ]
    return RobertaTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[])


def write_clap_checkpoint(
    folder: Path, *, fusion: bool, size: str = "tiny", seed: int = 0, device: str = "cpu"
) -> Path:
    """Write a random-weight ``ClapModel`` checkpoint folder; returns ``folder``."""
    import torch
    from transformers import ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel, ClapTextConfig

    tokenizer = offline_roberta_tokenizer()
    truncation = "fusion" if fusion else "rand_trunc"
    fusion_type = "aff_2d" if fusion else None
    if size == "full":
        audio = ClapAudioConfig(enable_fusion=fusion, fusion_type=fusion_type)
        text = ClapTextConfig()
        extractor = ClapFeatureExtractor(truncation=truncation)
        projection = 512
    elif size == "tiny":
        audio = ClapAudioConfig(
            num_mel_bins=64,
            spec_size=128,
            window_size=4,
            depths=[1, 1],
            num_attention_heads=[1, 1],
            patch_embeds_hidden_size=8,
            hidden_size=16,
            projection_dim=16,
            num_hidden_layers=2,
            enable_fusion=fusion,
            fusion_type=fusion_type,
        )
        text = ClapTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=40,
            projection_dim=16,
            pad_token_id=1,
        )
        extractor = ClapFeatureExtractor(feature_size=64, max_length_s=2, truncation=truncation)
        projection = 16
    else:
        raise ValueError(f"size must be 'full' or 'tiny', got {size!r}")
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=projection)
    torch.manual_seed(seed)
    with torch.device(device):
        model = ClapModel(config)
    folder = Path(folder)
    model.save_pretrained(folder)
    extractor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
