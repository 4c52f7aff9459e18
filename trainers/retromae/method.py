"""RetroMAE as a harness method: packed corpus blocks in, an exported encoder (+ decoder) out."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoConfig

from retrosearch.core.encoder import position_limit, read_spec
from retrosearch.trainers.harness.data import PackedTokens, pack_documents, read_corpora
from retrosearch.trainers.harness.method import CheckpointMethod, RunInfo
from retrosearch.trainers.retromae.config import MaskedPretrainConfig, RetroMAEConfig
from retrosearch.trainers.retromae.data import RetroMAECollator, special_affixes
from retrosearch.trainers.retromae.export import export_model
from retrosearch.trainers.retromae.model import RetroMAEModel


class MaskedPretrainMethod(CheckpointMethod):
    """A masked-LM pretraining of a BERT- or RoBERTa-family encoder on corpus blocks (RetroMAE, MLM)."""

    config: MaskedPretrainConfig

    def load_examples(self) -> PackedTokens:
        """The corpora as token blocks that fit ``max_length`` with the special tokens."""
        cfg = self.config
        limit = position_limit(AutoConfig.from_pretrained(str(self.model_path)))
        if cfg.max_length > limit:
            raise ValueError(f"max_length {cfg.max_length} exceeds the {limit} positions of {cfg.model}")
        prefix, suffix = special_affixes(self.tokenizer)
        texts = read_corpora(cfg.corpus, cfg.text_field, cfg.title_field, cfg.title_separator)
        return pack_documents(
            texts, self.tokenizer, cfg.max_length - len(prefix) - len(suffix), cfg.min_tokens, cfg.max_blocks
        )

    def export_max_length(self, lm) -> int:
        """Tokens the exported encoder reads: blocks are cut short for training speed, so as far as its
        base model did, within the positions the model has."""
        base = read_spec(self.model_path).max_length
        return min(max(self.config.max_length, base), position_limit(lm.config))


class RetroMAEMethod(MaskedPretrainMethod):
    """RetroMAE / DupMAE pretraining of a BERT- or RoBERTa-family encoder."""

    name = "retromae"
    config: RetroMAEConfig

    def build_model(self) -> RetroMAEModel:
        """Encoder (with an MLM head) and decoder, restored from an earlier export when there is one."""
        return RetroMAEModel.from_pretrained(self.model_path, self.config)

    def build_collator(self) -> RetroMAECollator:
        """Masks and decoder inputs per example; see :class:`RetroMAECollator`."""
        return RetroMAECollator(self.tokenizer, self.config)

    def export(self, model: RetroMAEModel, out: Path, info: RunInfo) -> None:
        """The encoder folder with CLS pooling recorded, and the decoder beside it."""
        cfg = self.config
        provenance = self.provenance(
            info,
            encoder_mask_ratio=cfg.encoder_mask_ratio,
            decoder_mask_ratio=cfg.decoder_mask_ratio,
            dupmae=cfg.dupmae,
            **({"bow_weight": cfg.bow_weight} if cfg.dupmae else {}),
        )
        method = "dupmae" if cfg.dupmae else "retromae"
        export_model(model, self.tokenizer, out, self.export_max_length(model.lm), method, provenance)
