"""Make-An-Audio 2's 1D VAE: attention equals the original 1x1-conv formulation, shapes, full-size counts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tta_energy.models.blocks.vae1d import AutoencoderKL1D, DownsampleRightPad, SelfAttention1D, VAE1DConfig
from tta_energy.models.common import load_config

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _yaml_config() -> VAE1DConfig:
    params = load_config("make-an-audio-2", "text2audio-ConcatDiT-ae1dnat_Skl20d2_struct2MLPanylen.yaml")
    first_stage = params["model"]["params"]["first_stage_config"]["params"]
    return VAE1DConfig.from_yaml(first_stage["embed_dim"], first_stage["ddconfig"])


def test_attention_is_the_original_single_head_1x1_conv_attention() -> None:
    torch.manual_seed(0)
    block = SelfAttention1D(32).eval()
    x = torch.randn(2, 32, 9)
    attn = block.attention
    h = attn.group_norm(x)
    # the original: q, k, v, proj_out are 1x1 Conv1d; softmax(q^T k / sqrt(C)) over keys; residual
    q, k, v = (F.conv1d(h, lin.weight[..., None], lin.bias) for lin in (attn.to_q, attn.to_k, attn.to_v))
    weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) * 32**-0.5, dim=2)
    out = F.conv1d(
        torch.bmm(v, weights.transpose(1, 2)), attn.to_out[0].weight[..., None], attn.to_out[0].bias
    )
    torch.testing.assert_close(block(x), x + out, rtol=1e-5, atol=1e-5)


def test_downsample_pads_one_frame_on_the_right() -> None:
    block = DownsampleRightPad(4)
    x = torch.randn(1, 4, 10)
    torch.testing.assert_close(block(x), block.conv(torch.cat([x, torch.zeros(1, 4, 1)], dim=2)))
    assert block(x).shape == (1, 4, 5)


def test_tiny_autoencoder_shapes() -> None:
    config = VAE1DConfig(ch=32)
    torch.manual_seed(0)
    vae = AutoencoderKL1D(config).eval()
    with torch.inference_mode():
        posterior = vae.encode(torch.randn(2, 80, 64))
        assert posterior.mean.shape == (2, 20, 32) and config.time_downsampling == 2
        assert vae.decode(posterior.sample(torch.Generator().manual_seed(0))).shape == (2, 80, 64)


def test_full_size_layout_and_parameter_counts() -> None:
    config = _yaml_config()
    assert config.ddconfig()["attn_layers"] == [3] and config.embed_dim == 20
    with torch.device("meta"):
        vae = AutoencoderKL1D(config)

    def count(*modules: torch.nn.Module) -> float:
        return sum(p.numel() for m in modules for p in m.parameters()) / 1e6

    # by hand: 213.0M = encoder + quant_conv 113.6M + decoder (+ post_quant_conv) 99.3M
    assert count(vae) == pytest.approx(213.0, abs=0.1)
    assert count(vae.encoder, vae.quant_conv) == pytest.approx(113.6, abs=0.1)
    assert count(vae.decoder, vae.post_quant_conv) == pytest.approx(99.3, abs=0.1)
    # no attention inside the levels (attn_layers [3] names a level that does not exist), k3 decoder blocks
    assert all(len(b.attentions) == 0 for b in [*vae.encoder.down_blocks, *vae.decoder.up_blocks])
    assert vae.decoder.mid_block.resnet_1.conv1.kernel_size == (3,)
    assert vae.encoder.mid_block.resnet_1.conv1.kernel_size == (5,) and vae.decoder.conv_in.kernel_size == (
        5,
    )
    assert [b.upsampler is not None for b in vae.decoder.up_blocks] == [False, True, False]


def test_unknown_ddconfig_keys_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown 1D VAE ddconfig keys: colour"):
        VAE1DConfig.from_yaml(20, {"colour": 1})
