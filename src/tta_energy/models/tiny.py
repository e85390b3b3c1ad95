"""Rules that turn a full-size config into its ``tiny`` twin: same classes and block types, small widths.

The tiny size exists so that the test suite can run every model family end to end on a CPU in seconds.
What is kept: every class, every block type, the layer counts of the UNets/VAEs (``layers_per_block``),
the vocoder's upsampling factors (so that one latent frame is still 0.01 s of audio), the token sequence
lengths. What shrinks: channel widths, transformer widths/depths and vocabularies. Model helpers of other
families may import these functions.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

#: channels are divided by this and rounded to a multiple of TINY_NORM_GROUPS (128 -> 8, 640 -> 40)
TINY_CHANNEL_DIVISOR = 16
#: group-norm groups of tiny UNets/VAEs (every tiny width is a multiple of it)
TINY_NORM_GROUPS = 8
#: attention heads in tiny UNets (diffusers' UNet2DConditionModel reads ``attention_head_dim`` as a
#: head count)
TINY_UNET_HEADS = 2
#: transformer text encoders / language models
TINY_HIDDEN = 32
TINY_LAYERS = 2
TINY_HEADS = 2
TINY_FFN = 64
TINY_VOCAB = 1000
TINY_PROJECTION = 16
#: HiFi-GAN first upsampling width: halves at each of the 5 upsampling stages, down to 1 channel
TINY_VOCODER_CHANNELS = 32


def tiny_channels(channels: Sequence[int], divisor: int = TINY_CHANNEL_DIVISOR,
                  multiple: int = TINY_NORM_GROUPS) -> list[int]:
    """Shrink each width by ``divisor``, keeping it a positive multiple of ``multiple``."""
    return [max(multiple, round(c / divisor / multiple) * multiple) for c in channels]


def tiny_unet2d(config: dict[str, Any], cross_attention_dim: Any = None,
                class_embed_input_dim: int | None = None) -> dict[str, Any]:
    """A diffusers ``UNet2DConditionModel``-style config with tiny widths (same blocks, same depth).

    ``cross_attention_dim`` replaces the full one (the tiny text encoders are narrower); when None and the
    full config ties it to the block widths (self-attention-like, as AudioLDM does), the tiny widths are used.
    """
    cfg = copy.deepcopy(config)
    full = list(cfg["block_out_channels"])
    small = tiny_channels(full)
    cfg["block_out_channels"] = small
    cfg["norm_num_groups"] = TINY_NORM_GROUPS
    cfg["attention_head_dim"] = TINY_UNET_HEADS
    if cross_attention_dim is not None:
        cfg["cross_attention_dim"] = cross_attention_dim
    elif isinstance(cfg.get("cross_attention_dim"), list) and cfg["cross_attention_dim"] == full:
        cfg["cross_attention_dim"] = small
    if class_embed_input_dim is not None:
        cfg["projection_class_embeddings_input_dim"] = class_embed_input_dim
    return cfg


def tiny_autoencoder_kl(config: dict[str, Any]) -> dict[str, Any]:
    """An ``AutoencoderKL`` config with tiny widths (same latent channels, same down/up sampling)."""
    cfg = copy.deepcopy(config)
    cfg["block_out_channels"] = tiny_channels(cfg["block_out_channels"], divisor=TINY_CHANNEL_DIVISOR)
    cfg["norm_num_groups"] = TINY_NORM_GROUPS
    return cfg


def tiny_hifigan(config: dict[str, Any]) -> dict[str, Any]:
    """A ``SpeechT5HifiGan`` config with a narrow first stage; mel bins and upsampling factors unchanged."""
    cfg = copy.deepcopy(config)
    cfg["upsample_initial_channel"] = TINY_VOCODER_CHANNELS
    return cfg


def tiny_bert_like(config: dict[str, Any]) -> dict[str, Any]:
    """BERT/RoBERTa-style text config (ClapTextConfig, BertConfig): narrow, 2 layers, small vocabulary.

    ``max_position_embeddings`` is kept so that the real sequence length still fits.
    """
    cfg = copy.deepcopy(config)
    cfg.update(hidden_size=TINY_HIDDEN, num_hidden_layers=TINY_LAYERS, num_attention_heads=TINY_HEADS,
               intermediate_size=TINY_FFN, vocab_size=TINY_VOCAB)
    if "projection_dim" in cfg:
        cfg["projection_dim"] = TINY_PROJECTION
    return cfg


def tiny_t5(config: dict[str, Any]) -> dict[str, Any]:
    """A ``T5Config`` (encoder) with tiny widths; relative-attention buckets unchanged."""
    cfg = copy.deepcopy(config)
    cfg.update(d_model=TINY_HIDDEN, d_kv=TINY_HIDDEN // TINY_HEADS, d_ff=TINY_FFN, num_layers=TINY_LAYERS,
               num_heads=TINY_HEADS, vocab_size=TINY_VOCAB)
    return cfg


def tiny_gpt2(config: dict[str, Any]) -> dict[str, Any]:
    """A ``GPT2Config`` with tiny widths; ``n_positions`` kept."""
    cfg = copy.deepcopy(config)
    cfg.update(n_embd=TINY_HIDDEN, n_layer=TINY_LAYERS, n_head=TINY_HEADS, vocab_size=TINY_VOCAB,
               bos_token_id=TINY_VOCAB - 1, eos_token_id=TINY_VOCAB - 1)
    return cfg
