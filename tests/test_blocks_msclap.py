"""MS-CLAP text branch: BERT on the ids alone, the 3-layer projection on every token."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import BertConfig

from tta_energy.models.blocks.msclap import ClapProjection, ClapTextEncoder


def test_projection_formula() -> None:
    torch.manual_seed(0)
    proj = ClapProjection(8, 6).eval()
    x = torch.randn(2, 3, 8)
    e1 = x @ proj.linear_in.weight.T
    e2 = F.gelu(e1) @ proj.linear_hidden.weight.T
    torch.testing.assert_close(proj(x), F.layer_norm(e1 + e2, (6,), proj.norm.weight, proj.norm.bias))
    assert proj.linear_in.bias is None and proj.linear_hidden.bias is None


def test_every_token_is_projected_and_padding_is_attended() -> None:
    torch.manual_seed(0)
    encoder = ClapTextEncoder(
        BertConfig(
            vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        ),
        d_proj=24,
    ).eval()
    ids = torch.tensor([[2, 7, 9, 3, 0, 0]])
    with torch.inference_mode():
        out = encoder(ids)
        assert out.shape == (1, 6, 24)
        expected = encoder.projection(encoder.bert(input_ids=ids).last_hidden_state)
        torch.testing.assert_close(out, expected)
        # no attention mask: changing a padding id changes the content tokens' embeddings too
        assert not torch.allclose(encoder(torch.tensor([[2, 7, 9, 3, 0, 5]]))[0, 1], out[0, 1])
