"""BigVGAN v1 generator: anti-aliasing filters, SnakeBeta, shapes and the full-size parameter count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from tta_energy.models.blocks.bigvgan import (
    AntiAliasedSnakeBeta,
    BigVGANConfig,
    BigVGANGenerator,
    Downsample2x,
    SnakeBeta,
    Upsample2x,
    kaiser_sinc_lowpass,
)
from tta_energy.models.common import load_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def test_lowpass_is_scipys_kaiser_windowed_firwin() -> None:
    taps = kaiser_sinc_lowpass(0.25, 0.3, 12).flatten().numpy()
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(6, 4 * 0.3))
    # firwin's cutoff is relative to Nyquist: 0.25 cycles/sample = 0.5
    reference = scipy.signal.firwin(12, 0.5, window=("kaiser", beta), scale=True)
    np.testing.assert_allclose(taps, reference, rtol=1e-5, atol=1e-7)
    assert abs(taps.sum() - 1) < 1e-6 and np.allclose(taps, taps[::-1])


def _sine(n: int, cycles_per_sample: float, offset: float = 0.0) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32) + offset
    return torch.sin(2 * math.pi * cycles_per_sample * t).view(1, 1, n)


def test_resamplers_keep_lengths_and_pass_low_frequencies() -> None:
    x = _sine(200, 0.02)
    up = Upsample2x()(x)
    assert up.shape == (1, 1, 400)
    # the 12-tap (even) filter puts the 2x grid half an output sample late; the down-sampler takes it back
    torch.testing.assert_close(up[..., 40:-40], _sine(400, 0.01, -0.5)[..., 40:-40], atol=2e-3, rtol=0)
    down = Downsample2x()(up)
    assert down.shape == (1, 1, 200)
    torch.testing.assert_close(down[..., 20:-20], x[..., 20:-20], atol=2e-3, rtol=0)


def test_downsampler_removes_what_would_alias() -> None:
    high = _sine(400, 0.45)  # above the new Nyquist (0.25 cycles/sample after halving the rate)
    assert Downsample2x()(high)[..., 20:-20].abs().max() < 0.05


def test_snakebeta_formula_with_log_scale_parameters() -> None:
    act = SnakeBeta(2, log_scale=True)
    with torch.no_grad():
        act.alpha.copy_(torch.log(torch.tensor([1.0, 2.0])))
        act.beta.copy_(torch.log(torch.tensor([0.5, 4.0])))
    x = torch.linspace(-2, 2, 7).repeat(1, 2, 1)
    alpha = torch.tensor([1.0, 2.0]).view(1, 2, 1)
    beta = torch.tensor([0.5, 4.0]).view(1, 2, 1)
    torch.testing.assert_close(act(x), x + torch.sin(alpha * x) ** 2 / (beta + 1e-9))
    assert AntiAliasedSnakeBeta(2)(torch.randn(1, 2, 33)).shape == (1, 2, 33)


def test_tiny_generator_shapes_and_range() -> None:
    args = load_config("make-an-audio", "bigvgan_args.yaml")
    args["upsample_initial_channel"] = 64
    config = BigVGANConfig.from_args(args)
    assert config.hop_length == 256
    torch.manual_seed(0)
    with torch.inference_mode():
        wave = BigVGANGenerator(config)(torch.randn(2, 80, 6))
    assert wave.shape == (2, 1, 6 * 256)
    assert wave.abs().max() <= 1 and torch.isfinite(wave).all()


def test_full_generator_matches_the_vocoder_size_and_round_trips_its_args() -> None:
    args = load_config("make-an-audio", "bigvgan_args.yaml")
    config = BigVGANConfig.from_args(args)
    assert config.to_args() == args
    with torch.device("meta"):
        generator = BigVGANGenerator(config)
    params = sum(p.numel() for p in generator.parameters())
    assert abs(params - 112.2e6) / 112.2e6 < 0.01
    assert generator.conv_pre.weight.shape == (1536, 80, 7) and generator.conv_out.weight.shape == (1, 24, 7)


def test_other_bigvgan_variants_are_rejected() -> None:
    args = load_config("make-an-audio", "bigvgan_args.yaml")
    with pytest.raises(ValueError, match="AMPBlock1"):
        BigVGANConfig.from_args({**args, "resblock": "2"})
    with pytest.raises(ValueError, match="lack"):
        BigVGANConfig.from_args({k: v for k, v in args.items() if k != "upsample_rates"})
