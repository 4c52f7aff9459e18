"""Settings of a training run that do not depend on the method (steps, optimiser, workers, storage)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Precision = Literal["auto", "fp32", "bf16", "fp16"]
Placement = Literal["PACK", "SPREAD", "STRICT_SPREAD"]


class TrainConfig(BaseModel):
    """How to train, whatever the method.

    ``batch_size`` is the *global* batch of one optimiser step: it is split over ``workers`` and
    ``grad_accum`` micro-batches, so the same settings give the same updates with any number of
    workers (up to float rounding and dropout).
    """

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder the exported model is written to.")
    steps: int = Field(
        1000, gt=0, description="Optimiser steps in total (a resumed run counts from its checkpoint)."
    )
    epochs: float | None = Field(
        None, gt=0, description="Passes over the training examples; sets steps (give one of the two)."
    )
    batch_size: int = Field(16, gt=0, description="Examples per optimiser step, over all workers.")
    grad_accum: int = Field(1, gt=0, description="Micro-batches per worker and step.")
    lr: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(
        0.1, ge=0, le=1, description="Share of the steps with a rising learning rate."
    )
    scheduler: str = Field(
        "linear", description="A transformers scheduler name: linear, cosine, constant_with_warmup and the others"
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="Clip the global gradient norm; None to not clip."
    )
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = Field(1e-8, gt=0)
    precision: Precision = Field("auto", description="auto: bf16 (or fp16) autocast on GPUs, fp32 on CPUs.")
    seed: int = 42
    workers: int = Field(1, gt=0)
    use_gpu: bool = False
    cpus_per_worker: int = Field(1, gt=0)
    placement_strategy: Placement = Field(
        "PACK",
        description="How workers are spread over a cluster's nodes: PACK (fewest nodes), SPREAD, "
        "STRICT_SPREAD (one worker per node).",
    )
    threads: int | None = Field(
        None, gt=0, description="CPU threads for torch, per worker [default: cpus_per_worker]."
    )
    checkpoint_every: int = Field(
        100, gt=0, description="Steps between checkpoints (one is always taken at the end)."
    )
    keep_checkpoints: int = Field(2, gt=0)
    log_every: int = Field(10, gt=0)
    storage_path: Path | None = Field(
        None, description="Where Ray Train keeps checkpoints [default: OUT.train beside OUT]."
    )
    name: str | None = Field(None, description="Run name under the storage path; default: the method's name.")
    max_failures: int = Field(
        0, ge=0, description="Worker-group restarts (from the last checkpoint) before giving up."
    )
    ray_address: str | None = Field(
        None, description="Ray cluster to run on, e.g. ray://head:10001 or auto [default: a local Ray]"
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> "TrainConfig":
        if self.epochs is not None and "steps" in self.model_fields_set:
            raise ValueError("give steps or epochs, not both")
        return self

    @model_validator(mode="after")
    def _batch_splits(self) -> "TrainConfig":
        parts = self.workers * self.grad_accum
        if self.batch_size % parts:
            raise ValueError(
                f"batch_size {self.batch_size} must be a multiple of workers x grad_accum "
                f"({self.workers} x {self.grad_accum} = {parts}) so every micro-batch has the same size"
            )
        return self

    def for_examples(self, count: int) -> "TrainConfig":
        """This config with ``steps`` covering ``epochs`` passes over ``count`` examples (itself without epochs)."""
        if self.epochs is None:
            return self
        return self.model_copy(update={"steps": max(1, math.ceil(self.epochs * count / self.batch_size))})

    @property
    def micro_batch_size(self) -> int:
        """Examples in one forward pass of one worker."""
        return self.batch_size // (self.workers * self.grad_accum)

    def resolved_storage(self) -> Path:
        """The storage folder, absolute (Ray Train needs an absolute local path)."""
        storage = self.storage_path or self.out.with_name(self.out.name + ".train")
        return storage.expanduser().resolve()
