"""ConcatDiT2MLP: sequence layout, both halves of the context used, positional limit, full-size numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tta_energy.models.blocks.concat_dit import ConcatDiT2MLP, ConcatDiTConfig, ConvGEGLUFeedForward

TINY = ConcatDiTConfig(in_channels=20, context_dim=32, hidden_size=64, num_heads=4, depth=2, max_len=1000)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny() -> ConcatDiT2MLP:
    torch.manual_seed(0)
    return ConcatDiT2MLP(TINY).eval()


def test_timestep_token_is_cos_then_sin() -> None:
    emb = ConcatDiT2MLP(TINY).time_proj(torch.tensor([0.0]))
    assert torch.equal(emb[0, :128], torch.ones(128)) and torch.equal(emb[0, 128:], torch.zeros(128))


def test_conv_feed_forward_is_value_times_gelu_of_gate() -> None:
    torch.manual_seed(0)
    ff = ConvGEGLUFeedForward(8).eval()
    x = torch.randn(1, 8, 12)
    value, gate = F.conv1d(x, ff.proj_in.weight, ff.proj_in.bias, padding=4).chunk(2, dim=1)
    torch.testing.assert_close(
        ff(x), F.conv1d(value * F.gelu(gate), ff.proj_out.weight, ff.proj_out.bias, padding=4)
    )
    assert ff.proj_in.kernel_size == (9,) and ff.proj_in.out_channels == 2 * 4 * 8


def test_output_shape_and_both_context_halves_matter(tiny: ConcatDiT2MLP) -> None:
    g = torch.Generator().manual_seed(1)
    x, context = torch.randn(2, 20, 10, generator=g), torch.randn(2, 154, 32, generator=g)
    t = torch.tensor([10, 500])
    with torch.inference_mode():
        out = tiny(x, t, context)
        assert out.shape == (2, 20, 10)
        changed_clap, changed_t5 = context.clone(), context.clone()
        changed_clap[:, :77] += 1
        changed_t5[:, 77:] += 1
        assert not torch.allclose(tiny(x, t, changed_clap), out)
        assert not torch.allclose(tiny(x, t, changed_t5), out)
        assert not torch.allclose(tiny(x, torch.tensor([11, 500]), context)[0], out[0])


def test_positional_table_limits_the_latent_length(tiny: ConcatDiT2MLP) -> None:
    assert tiny.max_latent_frames(154) == 845
    with pytest.raises(ValueError, match="exceed the positional table"):
        tiny(torch.zeros(1, 20, 846), torch.tensor([1]), torch.zeros(1, 154, 32))


def test_full_size_parameters_and_flops_per_step() -> None:
    with torch.device("meta"):
        dit = ConcatDiT2MLP(ConcatDiTConfig())
        x, t, context = torch.zeros(2, 20, 316), torch.zeros(2, dtype=torch.long), torch.zeros(2, 154, 1024)
    assert sum(p.numel() for p in dit.parameters()) / 1e6 == pytest.approx(159.6, abs=0.05)
    assert sum(p.numel() for p in dit.blocks[0].parameters()) / 1e6 == pytest.approx(39.2, abs=0.05)
    with FlopCounterMode(display=False) as counter:
        dit(x, t, context)
    # by hand from the published config: 471 tokens x 576, 303.9 GFLOP per CFG step
    assert counter.get_total_flops() / 1e9 == pytest.approx(303.9, rel=0.01)
