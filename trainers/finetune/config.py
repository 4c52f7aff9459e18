"""Settings of contrastive fine-tuning (the method's part; the run's part is the harness's TrainConfig).

The fields map one to one onto the ``retrosearch train finetune`` options and onto the ``method``
section of a JSON/YAML config, so a run can be repeated from the ``provenance`` of the checkpoint
it produced.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from retrosearch.core.config import Pooling
from retrosearch.core.index import BackendName


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
    """The method's settings; steps, batch, optimiser, workers and precision are the harness's
    :class:`~retrosearch.trainers.harness.config.TrainConfig`."""

    model: str = "minilm"
    train_file: Path | None = Field(None, description="JSONL of {query, positives, negatives}")
    collection: Path | None = Field(None, description="BEIR folder: training split, mining corpus, evaluation")
    split: str = "train"
    eval_split: str | None = "test"
    eval_backend: BackendName = "faiss-flat"
    mine: bool = Field(True, description="mine negatives when training from a split without --train-file")
    mining: MiningConfig = Field(default_factory=MiningConfig)
    mined_file: Path | None = Field(None, description="where mined groups are written (JSONL + .meta.json)")

    group_size: int = Field(4, ge=1, description="passages per query: 1 positive + group_size-1 negatives")
    temperature: float = Field(0.05, gt=0)
    cross_device_negatives: bool = Field(True, description="score queries against every worker's passages")
    matryoshka_dimensions: list[int] | None = Field(
        None, description="Matryoshka: sum the loss over the embeddings cut to each of these leading "
        "dimensions (e.g. 384,256,128,64; the model's own dimension among them); the checkpoint records them"
    )

    query_max_length: int | None = Field(64, gt=0)
    passage_max_length: int | None = Field(256, gt=0)
    pooling: Pooling | None = None
    query_template: str | None = None
    passage_template: str | None = None

    lora: bool | Literal["auto"] = Field("auto", description="auto: on for last-token (decoder LLM) encoders")
    lora_config: LoraConfig = Field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False

    @field_validator("matryoshka_dimensions")
    @classmethod
    def _dimensions(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value or any(d <= 0 for d in value) or len(set(value)) != len(value):
            raise ValueError(f"matryoshka_dimensions must be distinct positive dimensions, got {value}")
        return sorted(value, reverse=True)

    @model_validator(mode="after")
    def _sources(self) -> "FinetuneConfig":
        if self.train_file is None and self.collection is None:
            raise ValueError("give a training file (train_file) or a BEIR collection with a split (collection)")
        if self.collection is not None and self.eval_split is not None and self.eval_split == self.split and self.train_file is None:
            raise ValueError(f"evaluation split {self.eval_split!r} is the training split; hold out another one")
        return self
