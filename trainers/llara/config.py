"""Settings of LLaRA pretraining (the method's part; the run's part is TrainConfig)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The two prompt sets of trainers/llara/prompt.py (here so reading the config needs no torch).
PromptStyle = Literal["paper", "reference"]

PairUnit = Literal["passages", "sentences"]


class LLaRAConfig(BaseModel):
    """What to post-train, on which text pairs, with which prompts, losses and adapters.

    Defaults follow the paper: one ``</s>`` embedding per prompt ("The original sentence:" /
    "The next sentence:"), EBAE + EBAR with equal weights and no language-modelling term. The
    reference code's variant is ``prompt="reference"`` (eight added summary tokens per prompt),
    ``self_weight = next_weight = 0.05`` (its ``(self + next) / 2 / 10``) and ``lm_weight=1``.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field("smollm2", description="Causal-LM checkpoint folder or packaged name.")
    corpus: str = Field(description="JSONL/Parquet corpus, BEIR folder or a dataset saved with save_to_disk.")
    text_field: str = "text"
    title_field: str | None = "title"
    title_separator: str = " "
    pairs: PairUnit = Field(
        "passages",
        description="passages: consecutive blocks of a document (a one-block document is cut in two "
        "at a sentence end); sentences: consecutive sentences.",
    )
    max_length: int = Field(128, ge=4, description="Tokens of the input text and of each target text.")
    min_tokens: int = Field(4, ge=1, description="Shorter texts do not make a pair.")
    max_pairs: int | None = Field(None, gt=0, description="Use at most this many pairs (quick runs).")
    prompt: PromptStyle = "paper"
    self_weight: float = Field(1.0, ge=0, description="Weight of EBAE (predict the text itself).")
    next_weight: float = Field(1.0, ge=0, description="Weight of EBAR (predict the next text).")
    lm_weight: float = Field(
        0.0, ge=0, description="Weight of next-token prediction on the text (reference)."
    )
    padding_side: Literal["left", "right"] = "left"
    attn_implementation: Literal["sdpa", "eager"] = Field(
        "sdpa", description="A custom 4-D mask rules out flash attention."
    )
    gradient_checkpointing: bool = False
    lora: bool = False
    lora_r: int = Field(16, gt=0)
    lora_alpha: int = Field(32, gt=0)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_targets: list[str] | None = Field(
        None, description="Module names to adapt [default: every linear layer but the LM head]."
    )
    lora_export: Literal["merge", "adapter"] = "merge"
