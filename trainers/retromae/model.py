"""RetroMAE (and DupMAE): an MLM encoder whose [CLS] vector must let a one-layer decoder rebuild the text.

Shared between encoder and decoder: the embedding module (word, position and token-type
embeddings with their LayerNorm) and the MLM head, itself tied to the word embeddings. The only
new weights are the decoder layer's.

Query stream: ``embeddings(inputs_embeds = h_cls repeated)``, i.e. the sentence vector plus
position (and token-type) embeddings, layer-normalised. This is FlagEmbedding's current variant;
it also gives RoBERTa its offset positions. Context stream: ``[h_cls, E(x_1), ..., E(x_L-1)]``
with ``E`` the full embedding of the *unmasked* text.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForMaskedLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from retrosearch.trainers.harness.method import LossTerm
from retrosearch.trainers.retromae.config import RetroMAEConfig
from retrosearch.trainers.retromae.data import BOW, DECODER, ENCODER
from retrosearch.trainers.retromae.decoder import DecoderConfig, DecoderLayer
from retrosearch.trainers.retromae.export import DECODER_DIR, load_decoder
from retrosearch.trainers.retromae.mask import IGNORE

log = logging.getLogger(__name__)


def mlm_head(lm: PreTrainedModel) -> nn.Module:
    """The module mapping hidden states to vocabulary logits (``cls`` for BERT, ``lm_head`` for RoBERTa)."""
    for name in ("cls", "lm_head"):
        head = getattr(lm, name, None)
        if isinstance(head, nn.Module):
            return head
    raise ValueError(
        f"{type(lm).__name__} has no 'cls' or 'lm_head' module: "
        "RetroMAE supports BERT- and RoBERTa-family masked LMs"
    )


def load_masked_lm(path: str | Path) -> PreTrainedModel:
    """A masked LM from a checkpoint folder; a checkpoint without an MLM head gets a new one.

    Sentence-embedding checkpoints (all-MiniLM-L6-v2 among them) are saved as bare encoders.
    The new head's projection is tied to the word embeddings (so only its small transform and
    bias start from scratch), which is what BERT's own head is.
    """
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the load report lists the new head; one line of ours says it better
    try:
        lm, info = AutoModelForMaskedLM.from_pretrained(str(path), output_loading_info=True)
    finally:
        hf_logging.set_verbosity(verbosity)
    head_prefixes = ("cls.", "lm_head.")
    new_head = sorted(k for k in info["missing_keys"] if k.startswith(head_prefixes))
    other = sorted(k for k in info["missing_keys"] if not k.startswith(head_prefixes))
    if other:
        raise ValueError(
            f"{path}: the checkpoint lacks encoder weights {other[:5]} (not a BERT/RoBERTa encoder?)"
        )
    if new_head:
        lm.tie_weights()
        log.info("%s has no MLM head: initialised %s, tied to the word embeddings", path, ", ".join(new_head))
    return lm


class RetroMAEModel(nn.Module):
    """``forward(**collator batch) -> {"encoder_mlm", "decoder"[, "bow"]: LossTerm}`` (summed losses)."""

    def __init__(
        self, lm: PreTrainedModel, config: RetroMAEConfig, decoder: DecoderLayer | None = None
    ) -> None:
        super().__init__()
        self.lm = lm
        self.config = config
        self.head = mlm_head(lm)
        self.encoder = lm.base_model
        self.embeddings = getattr(self.encoder, "embeddings", None)
        if self.embeddings is None:
            raise ValueError(
                f"{type(self.encoder).__name__} has no 'embeddings' module to share with the decoder"
            )
        self.decoder = decoder or DecoderLayer(DecoderConfig.from_encoder(lm.config))

    @classmethod
    def from_pretrained(cls, path: str | Path, config: RetroMAEConfig) -> "RetroMAEModel":
        """Encoder from ``path``; the decoder too when ``path`` is a RetroMAE export (to continue)."""
        lm = load_masked_lm(path)
        decoder = load_decoder(Path(path) / DECODER_DIR)
        if decoder is not None:
            log.info("%s: restored the RetroMAE decoder", path)
        return cls(lm, config, decoder)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states ``[B, L, D]`` of the encoder."""
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def decode(self, sentence: torch.Tensor, input_ids: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """Decoder states ``[B, L, D]`` from the sentence vectors ``[B, 1, D]`` and the unmasked ids."""
        length = input_ids.shape[1]
        tokens = self.embeddings(input_ids=input_ids)
        context = torch.cat([sentence.to(tokens.dtype), tokens[:, 1:]], dim=1)
        query = self.embeddings(inputs_embeds=sentence.expand(-1, length, -1))
        return self.decoder(query, context, visible)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        encoder_input_ids: torch.Tensor,
        encoder_labels: torch.Tensor,
        decoder_labels: torch.Tensor,
        decoder_visible: torch.Tensor,
    ) -> dict[str, LossTerm]:
        hidden = self.encode(encoder_input_ids, attention_mask)
        masked = encoder_labels != IGNORE
        terms: dict[str, LossTerm] = {}
        if self.config.dupmae:
            logits = self.head(hidden)  # every position's logits: the bag-of-words loss needs them all
            terms[ENCODER] = LossTerm(ce_sum(logits[masked], encoder_labels[masked]))
            terms[BOW] = LossTerm(
                bag_of_words_sum(logits, input_ids, decoder_labels != IGNORE), self.config.bow_weight
            )
        else:
            terms[ENCODER] = LossTerm(ce_sum(self.head(hidden[masked]), encoder_labels[masked]))
        states = self.decode(hidden[:, :1], input_ids, decoder_visible)
        targets = decoder_labels != IGNORE
        terms[DECODER] = LossTerm(ce_sum(self.head(states[targets]), decoder_labels[targets]))
        return terms


def ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the rows (in fp32: the harness divides by the counted items)."""
    return F.cross_entropy(logits.float(), labels, reduction="sum")


def bag_of_words_sum(logits: torch.Tensor, input_ids: torch.Tensor, ordinary: torch.Tensor) -> torch.Tensor:
    """DupMAE's loss, summed over the batch: the max-pooled token logits must predict the text's words.

    The target is uniform over the distinct ordinary tokens of the text (the reference divides by
    the text length, so its target sums to less than one when tokens repeat).
    """
    floor = torch.finfo(torch.float32).min
    pooled = logits.float().masked_fill(~ordinary[..., None], floor).amax(dim=1)  # [B, V]
    present = torch.zeros_like(pooled).scatter_add_(1, input_ids * ordinary, ordinary.float()) > 0
    target = present.float() / present.sum(dim=1, keepdim=True).clamp(min=1)
    return -(target * F.log_softmax(pooled, dim=-1)).sum()
