"""Settings of a contrastive fine-tuning run: one typed model, saved with the checkpoint.

The fields map one to one onto the ``retrosearch train finetune`` options and onto a JSON config
file, so a run can be repeated from the ``provenance.config`` of the checkpoint it produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from retrosearch.plugin.config import Pooling


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MiningConfig(_Strict):
    """Where hard negatives are drawn from in the current model's ranking of the corpus.

    Ranks are 1-based and inclusive: ``rank_start=30, rank_end=200`` samples among the 30th to the
    200th hit. Skipping the very top leaves room for relevant but unjudged documents (false
    negatives), which are most common there.
    """

    rank_start: int = Field(30, ge=1)
    rank_end: int = Field(200, ge=1)
    num_negatives: int = Field(7, ge=1)
    seed: int = 0
    backend: str = "faiss-flat"
    min_grade: int = 1

    @model_validator(mode="after")
    def _window(self) -> "MiningConfig":
        if self.rank_end < self.rank_start:
            raise ValueError(f"rank_end {self.rank_end} is before rank_start {self.rank_start}")
        return self


class LoraConfig(_Strict):
    """LoRA adapters (through ``peft``); merged into the weights when the checkpoint is exported."""

    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class FinetuneConfig(_Strict):
    """Everything a fine-tuning run needs besides the Ray scaling choices."""

    model: str = "minilm"
    train_file: Path | None = Field(None, description="JSONL of {query, positives, negatives}")
    collection: Path | None = Field(None, description="BEIR folder: training split, mining corpus, evaluation")
    split: str = "train"
    eval_split: str | None = "test"
    eval_backend: str = "faiss-flat"
    mine: bool = Field(True, description="mine negatives when training from a split without --train-file")
    mining: MiningConfig = Field(default_factory=MiningConfig)

    group_size: int = Field(4, ge=1, description="passages per query: 1 positive + group_size-1 negatives")
    temperature: float = Field(0.05, gt=0)
    cross_device_negatives: bool = True
    batch_size: int = Field(16, gt=0, description="queries per worker and step")
    learning_rate: float = Field(2e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="overrides epochs")
    max_grad_norm: float | None = Field(1.0, gt=0)
    seed: int = 0

    query_max_length: int | None = Field(64, gt=0)
    passage_max_length: int | None = Field(256, gt=0)
    pooling: Pooling | None = None
    query_template: str | None = None
    passage_template: str | None = None

    lora: bool | Literal["auto"] = Field("auto", description="auto: on for last-token (decoder LLM) encoders")
    lora_config: LoraConfig = Field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    threads: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _sources(self) -> "FinetuneConfig":
        if self.train_file is None and self.collection is None:
            raise ValueError("give a training file (train_file) or a BEIR collection with a split (collection)")
        if self.collection is not None and self.eval_split is not None and self.eval_split == self.split and self.train_file is None:
            raise ValueError(f"evaluation split {self.eval_split!r} is the training split; hold out another one")
        return self
