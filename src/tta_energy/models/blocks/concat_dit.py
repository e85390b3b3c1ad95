"""Make-An-Audio 2's denoiser ``ConcatDiT2MLP``: a DiT over [timestep token, text tokens, latent frames].

Layout (bytedance/Make-An-Audio-2 ``ldm/modules/diffusionmodules/concatDiT.py`` and
``ldm/modules/new_attention.py``), with H = ``hidden_size``:

1. timestep -> 256-d sinusoidal embedding (cos first) -> Linear-SiLU-Linear -> one token;
2. context (N, 2L, C) is split in two halves along the tokens (CLAP tokens, T5 tokens), each embedded by its
   own Linear(C, H)-GELU(tanh)-Linear(H, H)-LayerNorm(H);
3. latent (N, in_channels, T) -> Conv1d(k5) -> T tokens;
4. sequence = [t, c1, c2, x] plus a learned positional table (``max_len`` rows: 1 + 2L + T <= max_len);
5. ``depth`` blocks, each: GroupNorm(32) -> 1x1 conv -> x += SelfAttn(LN x) -> x += SelfAttn(LN x) ->
   x += ConvFFN(LN x) -> 1x1 conv -> + block input. Both attentions are self-attention over the whole
   sequence (the original's "attn2" gets no context); the FFN is Conv1d(k9) -> GEGLU -> Conv1d(k9);
6. the last T positions -> GroupNorm(16) -> Conv1d(k1) -> (N, in_channels, T).

The attentions are diffusers ``Attention`` modules (q/k/v without bias, output with bias), the timestep MLP is
diffusers ``Timesteps`` + ``TimestepEmbedding``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


@dataclass(frozen=True)
class ConcatDiTConfig:
    """``unet_config.params`` of the Make-An-Audio 2 yaml."""

    in_channels: int = 20
    context_dim: int = 1024
    hidden_size: int = 576
    num_heads: int = 8
    depth: int = 4
    max_len: int = 1000

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ConcatDiTConfig:
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - names)
        if unknown:
            raise ValueError(f"unknown ConcatDiT2MLP parameters: {', '.join(unknown)}")
        return cls(**{k: int(v) for k, v in params.items()})


class ConditionEmbedder(nn.Module):
    """Linear(C, H) - GELU(tanh) - Linear(H, H) - LayerNorm(H), applied per token."""

    def __init__(self, context_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(context_dim, hidden_size)
        self.act = nn.GELU(approximate="tanh")
        self.linear_2 = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear_2(self.act(self.linear_1(x))))


class ConvGEGLUFeedForward(nn.Module):
    """Feed-forward over the sequence axis: Conv1d(H, 2*mult*H, k) -> a * gelu(g) -> Conv1d(mult*H, H, k)."""

    def __init__(self, dim: int, mult: int = 4, kernel_size: int = 9, dropout: float = 0.0) -> None:
        super().__init__()
        inner = dim * mult
        self.proj_in = nn.Conv1d(dim, 2 * inner, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout)
        self.proj_out = nn.Conv1d(inner, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, N)
        value, gate = self.proj_in(x).chunk(2, dim=1)
        return self.proj_out(self.dropout(value * F.gelu(gate)))


class ConcatDiTBlock(nn.Module):
    """One ``TemporalTransformer`` of depth 1 (channels-first in and out)."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        head_dim = hidden_size // num_heads
        self.norm = nn.GroupNorm(32, hidden_size, eps=1e-6)
        self.proj_in = nn.Conv1d(hidden_size, hidden_size, 1)
        self.norm1 = nn.LayerNorm(hidden_size)
        self.attn1 = Attention(hidden_size, heads=num_heads, dim_head=head_dim, bias=False, out_bias=True)
        self.norm2 = nn.LayerNorm(hidden_size)
        self.attn2 = Attention(hidden_size, heads=num_heads, dim_head=head_dim, bias=False, out_bias=True)
        self.norm3 = nn.LayerNorm(hidden_size)
        self.ff = ConvGEGLUFeedForward(hidden_size)
        self.proj_out = nn.Conv1d(hidden_size, hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, N)
        h = self.proj_in(self.norm(x)).transpose(1, 2)
        h = self.attn1(self.norm1(h)) + h
        h = self.attn2(self.norm2(h)) + h
        h = self.ff(self.norm3(h).transpose(1, 2)).transpose(1, 2) + h
        return self.proj_out(h.transpose(1, 2)) + x


class ConcatDiT2MLP(nn.Module):
    """(N, C_in, T) latents, (N,) timesteps, (N, 2L, C) context -> (N, C_in, T) noise prediction."""

    def __init__(self, config: ConcatDiTConfig) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.time_proj = Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(256, h)
        self.clap_embedder = ConditionEmbedder(config.context_dim, h)
        self.t5_embedder = ConditionEmbedder(config.context_dim, h)
        self.latent_in = nn.Conv1d(config.in_channels, h, 5, padding=2)
        self.position_table = nn.Parameter(torch.empty(config.max_len, h))
        nn.init.xavier_normal_(self.position_table)
        self.blocks = nn.ModuleList(ConcatDiTBlock(h, config.num_heads) for _ in range(config.depth))
        self.norm_out = nn.GroupNorm(16, h)
        self.conv_out = nn.Conv1d(h, config.in_channels, 1)

    def max_latent_frames(self, context_tokens: int) -> int:
        """Longest latent the positional table allows next to ``context_tokens`` text tokens."""
        return self.config.max_len - 1 - context_tokens

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        frames = sample.shape[-1]
        if frames > self.max_latent_frames(context.shape[1]):
            raise ValueError(
                f"{frames} latent frames + {context.shape[1] + 1} condition tokens exceed the "
                f"positional table ({self.config.max_len} positions)"
            )
        if timestep.ndim == 0:
            timestep = timestep.expand(sample.shape[0])
        t = self.time_embedding(self.time_proj(timestep).to(sample.dtype)).unsqueeze(1)
        clap_tokens, t5_tokens = context.chunk(2, dim=1)
        x = self.latent_in(sample).transpose(1, 2)
        seq = torch.cat([t, self.clap_embedder(clap_tokens), self.t5_embedder(t5_tokens), x], dim=1)
        seq = (seq + self.position_table[: seq.shape[1]]).transpose(1, 2)
        for block in self.blocks:
            seq = block(seq)
        return self.conv_out(self.norm_out(seq[..., -frames:]))
