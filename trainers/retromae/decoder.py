"""RetroMAE's one-layer decoder: a post-norm transformer layer whose queries and keys/values differ.

Queries come from the query stream (the sentence embedding plus a position, at every position);
keys and values come from the context stream (the sentence embedding, then the token
embeddings). The residual runs along the query stream, so a row's output depends on the
context only through the columns its attention row lets it see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn
from transformers.activations import ACT2FN


class DecoderConfig(BaseModel):
    """Shape of the decoder layer; copied from the encoder's config so the two fit together."""

    model_config = ConfigDict(extra="forbid")

    hidden_size: int
    num_heads: int
    intermediate_size: int
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    attention_dropout: float = 0.1
    initializer_range: float = 0.02

    @classmethod
    def from_encoder(cls, config) -> "DecoderConfig":
        """The decoder shape matching a Hugging Face BERT/RoBERTa config."""
        return cls(
            hidden_size=config.hidden_size,
            num_heads=config.num_attention_heads,
            intermediate_size=config.intermediate_size,
            hidden_act=config.hidden_act if isinstance(config.hidden_act, str) else "gelu",
            layer_norm_eps=config.layer_norm_eps,
            dropout=config.hidden_dropout_prob,
            attention_dropout=config.attention_probs_dropout_prob,
            initializer_range=config.initializer_range,
        )


class DecoderLayer(nn.Module):
    """``forward(query [B,L,D], context [B,L,D], visible [B,L,L] bool) -> [B,L,D]``."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        if config.hidden_size % config.num_heads:
            raise ValueError(f"hidden size {config.hidden_size} is not divisible by {config.num_heads} heads")
        self.config = config
        d = config.hidden_size
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)
        self.attention_out = nn.Linear(d, d)
        self.attention_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(d, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, d)
        self.ffn_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.act = ACT2FN[config.hidden_act]
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """BERT's initialisation: normal weights, zero biases, unit norms."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.config.initializer_range)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.config.num_heads, -1).transpose(1, 2)

    def forward(self, query: torch.Tensor, context: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        batch, length, dim = query.shape
        attended = F.scaled_dot_product_attention(
            self._heads(self.query(query)),
            self._heads(self.key(context)),
            self._heads(self.value(context)),
            attn_mask=visible[:, None, :, :],  # every row sees column 0, so no row is all -inf
            dropout_p=self.config.attention_dropout if self.training else 0.0,
        )
        attended = attended.transpose(1, 2).reshape(batch, length, dim)
        hidden = self.attention_norm(query + self.dropout(self.attention_out(attended)))
        return self.ffn_norm(hidden + self.dropout(self.ffn_out(self.act(self.ffn_in(hidden)))))
