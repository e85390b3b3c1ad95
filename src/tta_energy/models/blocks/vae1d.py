"""Make-An-Audio 2's 1D convolutional KL autoencoder (80-bin mel frames <-> 20-channel latents).

Structure (bytedance/Make-An-Audio-2 ``ldm/models/autoencoder1d.py``), parameter names from
the yaml's ``ddconfig``: ``ch``, ``ch_mult``, ``num_res_blocks``, ``kernel_size``, ``attn_layers``,
``down_layers``, ``z_channels``, ``in_channels``/``out_ch`` (mel bins), ``embed_dim``.

* ResNet block: GroupNorm(32, eps 1e-6) - swish - Conv1d(k) - GroupNorm - swish - dropout - Conv1d(k), with a
  1x1 conv shortcut when the width changes; no time embedding.
* Attention: single-head self-attention over time with GroupNorm (a diffusers ``Attention`` module; the
  original uses 1x1 convs for q/k/v/out, the same matrices).
* Encoder: conv_in(k) -> per level ``num_res_blocks`` ResNet blocks (k) [+ attention where the level is in
  ``attn_layers``] [+ downsample (pad right by 1, conv k3 stride 2) where in ``down_layers``] -> mid
  (ResNet, attention, ResNet; k) -> GroupNorm - swish - conv_out(k) to 2*z channels.
* Decoder: conv_in(k) -> mid (ResNet blocks with the default kernel 3: the original builds the decoder's
  blocks without passing ``kernel_size``) -> levels deepest first, ``num_res_blocks + 1`` ResNet blocks (k3)
  each, nearest-x2 upsample + conv k3 after level ``i`` when ``i - 1`` is in ``down_layers`` -> GroupNorm -
  swish - conv_out(k).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from diffusers.models.upsampling import Upsample1D
from torch import nn


@dataclass(frozen=True)
class VAE1DConfig:
    embed_dim: int = 20
    in_channels: int = 80
    out_ch: int = 80
    z_channels: int = 20
    kernel_size: int = 5
    ch: int = 384
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_layers: tuple[int, ...] = (3,)
    down_layers: tuple[int, ...] = (0,)
    dropout: float = 0.0
    double_z: bool = True

    @classmethod
    def from_yaml(cls, embed_dim: int, ddconfig: dict[str, Any]) -> VAE1DConfig:
        known = set(cls.__dataclass_fields__) - {"embed_dim"}
        unknown = sorted(set(ddconfig) - known)
        if unknown:
            raise ValueError(f"unknown 1D VAE ddconfig keys: {', '.join(unknown)}")
        if not ddconfig.get("double_z", True):
            raise ValueError("the 1D VAE needs double_z: true (a KL autoencoder)")
        values: dict[str, Any] = {"embed_dim": int(embed_dim)}
        for k, v in ddconfig.items():
            values[k] = tuple(int(i) for i in v) if isinstance(v, list) else v
        return cls(**values)

    def ddconfig(self) -> dict[str, Any]:
        out = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        out.pop("embed_dim")
        return out

    @property
    def time_downsampling(self) -> int:
        return 2 ** len(self.down_layers)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock1D(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, padding=pad)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, padding=pad)
        self.conv_shortcut = nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class SelfAttention1D(nn.Module):
    """Single-head self-attention over time, with its GroupNorm and residual (channels-first in and out)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention = Attention(
            channels,
            heads=1,
            dim_head=channels,
            norm_num_groups=32,
            eps=1e-6,
            bias=True,
            residual_connection=True,
            upcast_softmax=True,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # diffusers' processor normalises (B, T, C) inputs over channels and adds the residual itself.
        return self.attention(x.transpose(1, 2)).transpose(1, 2)


class DownsampleRightPad(nn.Module):
    """Pad one frame on the right, then conv k3 stride 2 (the LDM "asymmetric padding" downsample)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1)))


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnets = nn.ModuleList()
        self.attentions = nn.ModuleList()


class MidBlock1D(nn.Module):
    def __init__(self, channels: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.resnet_1 = ResnetBlock1D(channels, channels, kernel_size, dropout)
        self.attention = SelfAttention1D(channels)
        self.resnet_2 = ResnetBlock1D(channels, channels, kernel_size, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnet_2(self.attention(self.resnet_1(x)))


class Encoder1D(nn.Module):
    def __init__(self, config: VAE1DConfig) -> None:
        super().__init__()
        k = config.kernel_size
        self.config = config
        self.conv_in = nn.Conv1d(config.in_channels, config.ch, k, padding=k // 2)
        self.down_blocks = nn.ModuleList()
        width = config.ch
        for level, mult in enumerate(config.ch_mult):
            block = _Level()
            for _ in range(config.num_res_blocks):
                block.resnets.append(ResnetBlock1D(width, config.ch * mult, k, config.dropout))
                width = config.ch * mult
                if level in config.attn_layers:
                    block.attentions.append(SelfAttention1D(width))
            block.downsampler = DownsampleRightPad(width) if level in config.down_layers else None
            self.down_blocks.append(block)
        self.mid_block = MidBlock1D(width, k, config.dropout)
        self.conv_norm_out = _norm(width)
        z_out = 2 * config.z_channels if config.double_z else config.z_channels
        self.conv_out = nn.Conv1d(width, z_out, k, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for block in self.down_blocks:
            for i, resnet in enumerate(block.resnets):
                h = resnet(h)
                if len(block.attentions):
                    h = block.attentions[i](h)
            if block.downsampler is not None:
                h = block.downsampler(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder1D(nn.Module):
    #: the original builds the decoder's ResNet blocks without ``kernel_size``, so they use its default
    RESNET_KERNEL = 3

    def __init__(self, config: VAE1DConfig) -> None:
        super().__init__()
        k = config.kernel_size
        rk = self.RESNET_KERNEL
        self.config = config
        width = config.ch * config.ch_mult[-1]
        self.conv_in = nn.Conv1d(config.z_channels, width, k, padding=k // 2)
        self.mid_block = MidBlock1D(width, rk, config.dropout)
        upsample_after = {i + 1 for i in config.down_layers}
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(len(config.ch_mult))):  # deepest level first
            block = _Level()
            for _ in range(config.num_res_blocks + 1):
                block.resnets.append(
                    ResnetBlock1D(width, config.ch * config.ch_mult[level], rk, config.dropout)
                )
                width = config.ch * config.ch_mult[level]
                if level in config.attn_layers:
                    block.attentions.append(SelfAttention1D(width))
            block.upsampler = Upsample1D(width, use_conv=True) if level in upsample_after else None
            self.up_blocks.append(block)
        self.conv_norm_out = _norm(width)
        self.conv_out = nn.Conv1d(width, config.out_ch, k, padding=k // 2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            for i, resnet in enumerate(block.resnets):
                h = resnet(h)
                if len(block.attentions):
                    h = block.attentions[i](h)
            if block.upsampler is not None:
                h = block.upsampler(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


@dataclass
class Posterior1D:
    """Diagonal Gaussian over the latents."""

    mean: torch.Tensor
    logvar: torch.Tensor = field(repr=False)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + torch.exp(0.5 * self.logvar.clamp(-30.0, 20.0)) * noise

    def mode(self) -> torch.Tensor:
        return self.mean


class AutoencoderKL1D(nn.Module):
    def __init__(self, config: VAE1DConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder1D(config)
        self.decoder = Decoder1D(config)
        self.quant_conv = nn.Conv1d(2 * config.z_channels, 2 * config.embed_dim, 1)
        self.post_quant_conv = nn.Conv1d(config.embed_dim, config.z_channels, 1)

    def encode(self, mel: torch.Tensor) -> Posterior1D:
        """(B, mel bins, frames) -> posterior over (B, embed_dim, frames / 2**len(down_layers))."""
        mean, logvar = self.quant_conv(self.encoder(mel)).chunk(2, dim=1)
        return Posterior1D(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim, T) latents -> (B, out_ch, T * 2**len(down_layers)) mel."""
        return self.decoder(self.post_quant_conv(z))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(mel).mode())
