"""Settings of RetroMAE / DupMAE pretraining (the method's part; the run's part is TrainConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Masking = Literal["auto", "whole_word", "token"]


class MaskedPretrainConfig(BaseModel):
    """What every masked-LM pretraining reads: the starting checkpoint, the corpora and their blocks.

    Shared by RetroMAE / DupMAE and plain MLM (:mod:`retrosearch.trainers.mlm`), so the two cut
    the same corpus into the same blocks and mask their encoders with the same code.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("minilm", description="Checkpoint folder (BERT or RoBERTa family) or packaged name.")
    corpus: list[str] = Field(
        min_length=1,
        description="JSONL/Parquet corpus, BEIR folder or a dataset saved with save_to_disk; several are "
        "read in turn, a document from each.",
    )
    text_field: str = "text"
    title_field: str | None = "title"
    title_separator: str = " "
    max_length: int = Field(
        128,
        ge=8,
        description="Tokens per block, specials included (the paper: 512 on Wikipedia, 150 on MS MARCO).",
    )
    min_tokens: int = Field(8, ge=1, description="Shorter blocks (e.g. a document's tail) are dropped.")
    max_blocks: int | None = Field(None, gt=0, description="Use at most this many blocks (quick runs).")
    masking: Masking = Field(
        "auto", description="auto: whole words for WordPiece, single tokens for BPE/SentencePiece."
    )

    @field_validator("corpus", mode="before")
    @classmethod
    def _one_or_several(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


class RetroMAEConfig(MaskedPretrainConfig):
    """What to pretrain and how the two masks and the losses are set.

    Defaults follow the paper's code: 30% encoder masking, 50% decoder masking, one decoder
    layer, every non-special token a decoder target; ``dupmae`` adds the bag-of-words loss on
    the encoder's token outputs (RetroMAE v2) with ``bow_weight``.
    """

    encoder_mask_ratio: float = Field(0.3, gt=0, lt=1)
    decoder_mask_ratio: float = Field(0.5, gt=0, lt=1)
    decoder_mask_pool: int = Field(
        128, gt=0, description="Distinct decoder masks per example that rows draw from."
    )
    dupmae: bool = False
    bow_weight: float = Field(0.1, ge=0)
