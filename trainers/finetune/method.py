"""Contrastive fine-tuning as a harness method: training groups in, a fine-tuned encoder folder out."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.finetune.config import FinetuneConfig
from retrosearch.trainers.finetune.data import TrainingGroup, groups_from_qrels, read_groups, sample_group
from retrosearch.trainers.finetune.export import export_checkpoint
from retrosearch.trainers.finetune.loss import InfoNCELoss, MatryoshkaLoss
from retrosearch.trainers.finetune.mining import mine_collection, mining_provenance, write_mined
from retrosearch.trainers.finetune.model import ContrastiveCollator, ContrastiveModel, load_trainable_encoder
from retrosearch.trainers.harness.method import Batch, LossTerm, LossTerms, Method, RunInfo

TERM = "contrastive"


class HarnessContrastiveModel(ContrastiveModel):
    """:class:`ContrastiveModel` returning the summed loss as the harness's one loss term.

    The sum over this worker's queries is divided by the number of queries in the global batch
    by the harness, so the objective is the mean over all queries of all workers.
    """

    def forward(self, **inputs: Any) -> LossTerms:  # type: ignore[override]
        return {TERM: LossTerm(super().forward(**inputs).loss)}


class FinetuneMethod(Method):
    """InfoNCE fine-tuning of any encoder the runtime loads (BERT-like or decoder LLM with LoRA)."""

    name = "finetune"
    config: FinetuneConfig

    def __init__(self, config: FinetuneConfig) -> None:
        super().__init__(config)
        self._collator: ContrastiveCollator | None = None
        self._trainable = None
        self._groups: list[TrainingGroup] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Workers rebuild model and tokenizer from the checkpoint folder and get the groups from
        # the object store; only the settings travel with the method.
        return {**self.__dict__, "_collator": None, "_trainable": None, "_groups": None}

    def _encoder(self):
        if self._trainable is None:
            self._trainable = load_trainable_encoder(self.config)
        return self._trainable

    # -- driver -----------------------------------------------------------------------------------
    def load_examples(self) -> list[TrainingGroup]:
        """Groups from the training file, or from the split's qrels with negatives mined now (once)."""
        if self._groups is None:
            self._groups = self._load_groups()
        return self._groups

    def _load_groups(self) -> list[TrainingGroup]:
        cfg = self.config
        if cfg.train_file is not None:
            groups = read_groups(cfg.train_file)
        else:
            groups = self._groups_from_collection()
        if cfg.group_size > 1:
            bare = [g.query_id or g.query[:40] for g in groups if not g.negatives]
            if bare:
                raise ValueError(
                    f"{len(bare)} of {len(groups)} training queries have no negatives (e.g. {bare[:3]}) but "
                    f"group_size is {cfg.group_size}: mine negatives or use --group-size 1"
                )
        return groups

    def _groups_from_collection(self) -> list[TrainingGroup]:
        cfg = self.config
        assert cfg.collection is not None
        collection = BeirCollection(cfg.collection)
        if not cfg.mine or cfg.group_size == 1:
            return groups_from_qrels(collection, cfg.split, cfg.mining.min_grade)
        # Mine with the starting model as the runtime serves it (its own templates and pooling).
        encoder = Encoder.load(
            EncoderSettings(
                model=cfg.model,
                pooling=cfg.pooling,
                query_template=cfg.query_template,
                passage_template=cfg.passage_template,
            )
        )
        result = mine_collection(collection, cfg.split, encoder, cfg.mining)
        if cfg.mined_file is not None:
            write_mined(cfg.mined_file, result, mining_provenance(collection, cfg.split, encoder, cfg.mining))
        return result.groups

    # -- workers ----------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """The encoder (LoRA-wrapped for decoder LLMs) and InfoNCE (summed over the Matryoshka
        dimensions when they are set), as one module."""
        trainable = self._encoder()
        cfg = self.config
        loss: nn.Module = InfoNCELoss(cfg.temperature, cfg.cross_device_negatives, reduction="sum")
        if cfg.matryoshka_dimensions:
            native = trainable.model.dim
            if cfg.matryoshka_dimensions[0] > native:
                raise ValueError(f"matryoshka_dimensions {cfg.matryoshka_dimensions}: {cfg.model} gives "
                                 f"{native}-dimensional embeddings")
            loss = MatryoshkaLoss(loss, cfg.matryoshka_dimensions, renormalize=trainable.spec.unit_vectors)
        return HarnessContrastiveModel(trainable.model, loss)

    def collate(self, examples: Sequence[TrainingGroup], seeds: Sequence[int]) -> Batch:
        """Sample each query's positive and negatives from its own seed, then tokenize."""
        if self._collator is None:
            trainable = self._encoder()
            self._collator = ContrastiveCollator(
                trainable.tokenizer, trainable.spec, self.config.query_max_length, self.config.passage_max_length
            )
        sampled = [sample_group(g, self.config.group_size, random.Random(s)) for g, s in zip(examples, seeds)]
        return Batch(self._collator(sampled), {TERM: float(len(sampled))}, examples=len(sampled))

    def export(self, model: nn.Module, out: Path, info: RunInfo) -> None:
        """A checkpoint folder (LoRA merged) with ``method="finetune"``, the run's provenance and the
        Matryoshka dimensions trained for (``matryoshka_dimensions`` of ``retrosearch.json``)."""
        trainable = self._encoder()
        cfg = self.config
        provenance = {
            "config": cfg.model_dump(mode="json"),
            "steps": info.step,
            "batch_size": info.batch_size,
            "workers": info.workers,
            "seed": info.seed,
            "lora": trainable.lora,
            "final_metrics": {k: round(v, 5) for k, v in info.last_metrics.items()},
        }
        export_checkpoint(
            model.encoder, trainable.tokenizer, out, cfg.model, trainable.base_path, trainable.spec,
            provenance, matryoshka_dimensions=cfg.matryoshka_dimensions,
        )
