"""BigVGAN v1 generator (anti-aliased multi-periodicity blocks with SnakeBeta), as Make-An-Audio 1/2 vocode.

Architecture from the BigVGAN paper (Lee et al., 2023) and the vocoder config Make-An-Audio ships
(``configs/make-an-audio/bigvgan_args.yaml``): a 7-tap pre-conv, one transposed-conv upsampler per stage,
each followed by ``len(resblock_kernel_sizes)`` AMP blocks whose outputs are averaged, then an anti-aliased
SnakeBeta, a 7-tap post-conv and tanh. The anti-aliased activation is 2x upsampling with a Kaiser-windowed
sinc low-pass (12 taps, replicate padding), SnakeBeta, and 2x downsampling with the same kind of filter.

Why not the PyPI ``bigvgan`` package (2.4.1): it builds the same generator, but its ``__init__`` imports its
mel/training helpers, which pull librosa, nnAudio, pesq, auraloss, tensorboard and ninja into every import;
the 250 lines below replace that dependency tree.

Weight norm: the original checkpoints store ``weight_g``/``weight_v``; Make-An-Audio removes weight norm
before inference, so these modules hold plain folded weights and the checkpoint table (``ckpt_maps``)
folds/unfolds them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BigVGANConfig:
    """The generator part of a BigVGAN ``args.yml`` (training-only keys are ignored)."""

    num_mels: int = 80
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    upsample_initial_channel: int = 1536
    resblock: str = "1"
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    activation: str = "snakebeta"
    snake_logscale: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # other keys of args.yml, kept on save

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> BigVGANConfig:
        known = {
            "num_mels",
            "upsample_rates",
            "upsample_kernel_sizes",
            "upsample_initial_channel",
            "resblock",
            "resblock_kernel_sizes",
            "resblock_dilation_sizes",
            "activation",
            "snake_logscale",
        }
        missing = sorted(k for k in known if k not in args)
        if missing:
            raise ValueError(f"BigVGAN args lack {', '.join(missing)}")
        if str(args["resblock"]) != "1" or args["activation"] != "snakebeta":
            raise ValueError(
                "only BigVGAN v1 with resblock '1' (AMPBlock1) and snakebeta activations is supported, "
                f"got resblock {args['resblock']!r}, activation {args['activation']!r}"
            )
        return cls(
            num_mels=int(args["num_mels"]),
            upsample_rates=tuple(int(v) for v in args["upsample_rates"]),
            upsample_kernel_sizes=tuple(int(v) for v in args["upsample_kernel_sizes"]),
            upsample_initial_channel=int(args["upsample_initial_channel"]),
            resblock=str(args["resblock"]),
            resblock_kernel_sizes=tuple(int(v) for v in args["resblock_kernel_sizes"]),
            resblock_dilation_sizes=tuple(
                tuple(int(d) for d in ds) for ds in args["resblock_dilation_sizes"]
            ),
            activation=str(args["activation"]),
            snake_logscale=bool(args["snake_logscale"]),
            extra={k: v for k, v in args.items() if k not in known},
        )

    def to_args(self) -> dict[str, Any]:
        args = dict(self.extra)
        args.update(
            resblock=self.resblock,
            num_mels=self.num_mels,
            upsample_rates=list(self.upsample_rates),
            upsample_kernel_sizes=list(self.upsample_kernel_sizes),
            upsample_initial_channel=self.upsample_initial_channel,
            resblock_kernel_sizes=list(self.resblock_kernel_sizes),
            resblock_dilation_sizes=[list(d) for d in self.resblock_dilation_sizes],
            activation=self.activation,
            snake_logscale=self.snake_logscale,
        )
        return args

    @property
    def hop_length(self) -> int:
        return int(np.prod(self.upsample_rates))


@functools.lru_cache(maxsize=8)
def _lowpass_taps(cutoff: float, half_width: float, kernel_size: int) -> tuple[float, ...]:
    half = kernel_size // 2
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(half, 4 * half_width))
    window = np.kaiser(kernel_size, beta)
    t = np.arange(-half, half) + 0.5 if kernel_size % 2 == 0 else np.arange(kernel_size) - half
    taps = 2 * cutoff * window * np.sinc(2 * cutoff * t)
    return tuple(taps / taps.sum())


def kaiser_sinc_lowpass(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """A Kaiser-windowed sinc low-pass filter (sums to 1), shape (1, 1, kernel_size).

    ``cutoff`` and ``half_width`` are in cycles per sample; the Kaiser beta follows Kaiser's empirical
    design formula for the attenuation that a transition band of ``4 * half_width`` allows with
    ``kernel_size // 2`` taps (scipy's ``kaiser_atten``/``kaiser_beta``).
    """
    return torch.tensor(_lowpass_taps(cutoff, half_width, kernel_size), dtype=torch.float32).view(1, 1, -1)


class Upsample2x(nn.Module):
    """2x upsampling: zero-stuffing transposed conv with the low-pass filter (replicate-padded, gain 2)."""

    ratio = 2
    kernel_size = 12

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "filter", kaiser_sinc_lowpass(0.5 / self.ratio, 0.6 / self.ratio, self.kernel_size)
        )
        self.pad = self.kernel_size // self.ratio - 1
        self.crop_left = self.pad * self.ratio + (self.kernel_size - self.ratio) // 2
        self.crop_right = self.pad * self.ratio + (self.kernel_size - self.ratio + 1) // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(
            x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels
        )
        return x[..., self.crop_left : -self.crop_right]


class Downsample2x(nn.Module):
    """2x downsampling: the low-pass filter as a strided depthwise conv (replicate-padded)."""

    ratio = 2
    kernel_size = 12

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer(
            "filter", kaiser_sinc_lowpass(0.5 / self.ratio, 0.6 / self.ratio, self.kernel_size)
        )
        even = self.kernel_size % 2 == 0
        self.pad_left = self.kernel_size // 2 - int(even)
        self.pad_right = self.kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(channels, -1, -1), stride=self.ratio, groups=channels)


class SnakeBeta(nn.Module):
    """x + 1/beta * sin^2(alpha * x), per-channel alpha and beta (stored as logs when ``log_scale``)."""

    def __init__(self, channels: int, log_scale: bool = True) -> None:
        super().__init__()
        self.log_scale = log_scale
        init = torch.zeros(channels) if log_scale else torch.ones(channels)
        self.alpha = nn.Parameter(init.clone())
        self.beta = nn.Parameter(init.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.view(1, -1, 1)
        beta = self.beta.view(1, -1, 1)
        if self.log_scale:
            alpha, beta = alpha.exp(), beta.exp()
        return x + torch.sin(x * alpha).pow(2) / (beta + 1e-9)


class AntiAliasedSnakeBeta(nn.Module):
    """SnakeBeta evaluated at twice the sample rate, so its harmonics above Nyquist are filtered out."""

    def __init__(self, channels: int, log_scale: bool = True) -> None:
        super().__init__()
        self.upsample = Upsample2x()
        self.snake = SnakeBeta(channels, log_scale)
        self.downsample = Downsample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.snake(self.upsample(x)))


def _same_padding(kernel_size: int, dilation: int) -> int:
    return (kernel_size * dilation - dilation) // 2


class AMPLayer(nn.Module):
    """act -> dilated conv -> act -> conv, with a residual connection."""

    def __init__(self, channels: int, kernel_size: int, dilation: int, log_scale: bool) -> None:
        super().__init__()
        self.act1 = AntiAliasedSnakeBeta(channels, log_scale)
        self.dilated_conv = nn.Conv1d(
            channels, channels, kernel_size, dilation=dilation, padding=_same_padding(kernel_size, dilation)
        )
        self.act2 = AntiAliasedSnakeBeta(channels, log_scale)
        self.conv = nn.Conv1d(channels, channels, kernel_size, padding=_same_padding(kernel_size, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.act2(self.dilated_conv(self.act1(x))))


class AMPBlock1(nn.Module):
    """Anti-aliased multi-periodicity block: one :class:`AMPLayer` per dilation."""

    def __init__(self, channels: int, kernel_size: int, dilations: tuple[int, ...], log_scale: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(AMPLayer(channels, kernel_size, d, log_scale) for d in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class BigVGANStage(nn.Module):
    """Transposed-conv upsampler followed by the averaged AMP blocks of one resolution."""

    def __init__(self, in_channels: int, rate: int, kernel: int, config: BigVGANConfig) -> None:
        super().__init__()
        out_channels = in_channels // 2
        self.upsampler = nn.ConvTranspose1d(
            in_channels, out_channels, kernel, rate, padding=(kernel - rate) // 2
        )
        self.resblocks = nn.ModuleList(
            AMPBlock1(out_channels, k, d, config.snake_logscale)
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.upsampler(x)
        total = self.resblocks[0](x)
        for block in self.resblocks[1:]:
            total = total + block(x)
        return total / len(self.resblocks)


class BigVGANGenerator(nn.Module):
    """Mel (B, num_mels, frames) -> waveform (B, 1, frames * hop_length) in [-1, 1]."""

    def __init__(self, config: BigVGANConfig) -> None:
        super().__init__()
        if len(config.upsample_rates) != len(config.upsample_kernel_sizes):
            raise ValueError("upsample_rates and upsample_kernel_sizes differ in length")
        self.config = config
        channels = config.upsample_initial_channel
        self.conv_pre = nn.Conv1d(config.num_mels, channels, 7, padding=3)
        stages = []
        for i, (rate, kernel) in enumerate(
            zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True)
        ):
            stages.append(BigVGANStage(channels // 2**i, rate, kernel, config))
        self.stages = nn.ModuleList(stages)
        out_channels = channels // 2 ** len(stages)
        self.act_out = AntiAliasedSnakeBeta(out_channels, config.snake_logscale)
        self.conv_out = nn.Conv1d(out_channels, 1, 7, padding=3)
        # BigVGAN's own initialisation (N(0, 0.01) for every conv after conv_pre): keeps random replicas'
        # activations in a realistic range, so their fp16 runs stay finite like the real model's.
        for module in [*self.stages.modules(), self.conv_out]:
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.normal_(module.weight, 0.0, 0.01)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for stage in self.stages:
            x = stage(x)
        return torch.tanh(self.conv_out(self.act_out(x)))
