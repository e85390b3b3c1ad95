"""MS-CLAP (2022) text branch as Make-An-Audio 1/2 use it: BERT, then CLAP's projection on every token.

Make-An-Audio's ``FrozenCLAPEmbedder`` tokenizes to 77 tokens (max-length padding), runs the BERT base model
on the ids alone (no attention mask: the padding tokens are attended to) and applies the CLAP projection to
the whole ``last_hidden_state`` — not only to the CLS token as CLAP itself does — giving (B, 77, d_proj).

Projection (MS-CLAP ``Projection``): e1 = Linear(d_in, d_out, no bias)(x); e2 = Dropout(Linear(d_out, d_out,
no bias)(GELU(e1))); out = LayerNorm(e1 + e2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel


class ClapProjection(nn.Module):
    def __init__(self, d_in: int, d_out: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.linear_in = nn.Linear(d_in, d_out, bias=False)
        self.linear_hidden = nn.Linear(d_out, d_out, bias=False)
        self.norm = nn.LayerNorm(d_out)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.linear_in(x)
        e2 = self.dropout(self.linear_hidden(F.gelu(e1)))
        return self.norm(e1 + e2)


class ClapTextEncoder(nn.Module):
    """token ids (B, L) -> per-token CLAP text embeddings (B, L, d_proj)."""

    def __init__(self, bert_config: BertConfig, d_proj: int) -> None:
        super().__init__()
        self.bert = BertModel(bert_config)  # with pooler, as AutoModel("bert-base-uncased") builds it
        self.projection = ClapProjection(bert_config.hidden_size, d_proj)

    @property
    def vocab_size(self) -> int:
        return self.bert.config.vocab_size

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # No attention mask, like the original: padding tokens take part in attention.
        hidden = self.bert(input_ids=input_ids).last_hidden_state
        return self.projection(hidden)
