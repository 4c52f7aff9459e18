"""The pipeline file: one validated model of every stage's settings.

Training stages take the trainers' own settings flat (``stages.finetune.steps``, ``...lr``): their
fields are taken from :class:`TrainConfig` and the methods' config models rather than declared a
second time, and each stage is checked by building those models, so their rules (a batch that
splits over workers, a mining window in order) apply here unchanged.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from retrosearch.core.config import EncoderSettings, OpenSearchSettings
from retrosearch.core.index import FaissBackendName
from retrosearch.ingest.pipeline import IngestConfig
from retrosearch.trainers.finetune.config import FinetuneConfig, MiningConfig
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.llara.config import LLaRAConfig
from retrosearch.trainers.mlm.config import MLMConfig
from retrosearch.trainers.retromae.config import RetroMAEConfig


class PipelineConfigError(ValueError):
    """A pipeline file that cannot be read or validated; the message names the file and the key."""


class StrictModel(BaseModel):
    """A settings model that refuses unknown keys (a typo in a file is an error, not a silent default)."""

    model_config = ConfigDict(extra="forbid")


# Set by the pipeline, not by the user: where the run writes, what it is called, which cluster.
_PIPELINE_OWNED_TRAIN = {"out", "storage_path", "name", "ray_address"}


def _fields(model: type[BaseModel], exclude: set[str]) -> dict[str, Any]:
    """``model``'s field definitions for :func:`create_model`, less ``exclude``."""
    return {
        name: (info.annotation, copy.deepcopy(info))
        for name, info in model.model_fields.items()
        if name not in exclude
    }


def _check(model: type[BaseModel], values: dict[str, Any]) -> None:
    """Validate ``values`` with ``model``'s own rules; its first error becomes a ValueError."""
    try:
        model.model_validate(values)
    except ValidationError as exc:
        raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None


TRAIN_FIELDS = [name for name in TrainConfig.model_fields if name not in _PIPELINE_OWNED_TRAIN]


class _TrainingSection(StrictModel):
    """Common checks of a stage that trains: the harness's own rules on its train settings."""

    def train_settings(self) -> dict[str, Any]:
        """The :class:`TrainConfig` fields of this stage (without out/storage/name).

        ``steps`` only when set or without ``epochs``: epochs decide the steps otherwise.
        """
        return {name: getattr(self, name) for name in TRAIN_FIELDS
                if name != "steps" or "steps" in self.model_fields_set or self.epochs is None}

    @model_validator(mode="after")
    def _train_rules(self):
        _check(TrainConfig, {**self.train_settings(), "out": Path(".")})
        return self


def _pretrain_base(name: str, method: type[BaseModel], exclude: set[str], corpus: Any) -> Any:
    """A pretraining section's fields: the harness's run settings, ``method``'s own (less ``exclude``), the
    starting checkpoint and the ``corpus`` field (annotation, field)."""
    start = (str | None, Field(None, description="Starting checkpoint (default: the pipeline's model)."))
    return create_model(
        name, __base__=_TrainingSection, **_fields(TrainConfig, _PIPELINE_OWNED_TRAIN),
        **_fields(method, {"model", "corpus", *exclude}), model=start, corpus=corpus,
    )


def _corpora() -> Any:
    """The corpus of a masked-LM stage: one, several (read in turn), or the collection's."""
    return (Path | list[Path] | None,
            Field(None, description="Corpus or corpora to pretrain on, read in turn (default: the "
                  "collection's)."))


class RetroMAEPretrain(_pretrain_base("_RetroMAEBase", RetroMAEConfig, {"dupmae"}, _corpora())):
    """RetroMAE (``method: retromae``) or DupMAE (``method: dupmae``) pretraining."""

    method: Literal["retromae", "dupmae"]


class MLMPretrain(_pretrain_base("_MLMBase", MLMConfig, set(), _corpora())):
    """BERT's masked-language-model pretraining (``method: mlm``), the baseline of RetroMAE."""

    method: Literal["mlm"]


class LLaRAPretrain(_pretrain_base("_LLaRABase", LLaRAConfig, set(), (Path | None, None))):
    """LLaRA post-training of a decoder LLM."""

    method: Literal["llara"]


class NoPretrain(StrictModel):
    """No pretraining: the pipeline's model goes straight to mining and fine-tuning."""

    method: Literal["none"]


PretrainSection = Annotated[
    RetroMAEPretrain | MLMPretrain | LLaRAPretrain | NoPretrain, Field(discriminator="method")
]
#: Each pretraining method and the section model that holds its settings.
PRETRAIN_SECTIONS: dict[str, type[StrictModel]] = {
    "retromae": RetroMAEPretrain, "dupmae": RetroMAEPretrain, "mlm": MLMPretrain, "llara": LLaRAPretrain,
    "none": NoPretrain,
}
PRETRAIN_METHODS = tuple(PRETRAIN_SECTIONS)


_MINE_OWNED = {"enabled", "split", "model"}
_MineBase = create_model("_MineBase", __base__=StrictModel, **_fields(MiningConfig, set()))


class MineSection(_MineBase):
    """Hard negatives for the training split, mined with the pretrained model (the window, count,
    seed and backend are the trainers' :class:`MiningConfig` fields)."""

    enabled: bool = True
    split: str = Field("train", description="qrels split whose queries get negatives.")
    model: str = Field(
        "pretrained",
        description="Rank with the pretrained model; with the pipeline's starting model (start: the same "
        "negatives for every pretraining method, so a comparison of methods differs in nothing else); or "
        "with another checkpoint named here (a trained retriever's negatives for models that start "
        "untrained).",
    )

    def ranker(self, pipeline_model: str) -> str | None:
        """The checkpoint that ranks the corpus, or None for the pretrained model (known once it exists)."""
        return None if self.model == "pretrained" else pipeline_model if self.model == "start" else self.model

    def mining(self) -> MiningConfig:
        """The trainers' mining settings."""
        return MiningConfig(**self.model_dump(exclude=_MINE_OWNED))

    @model_validator(mode="after")
    def _window(self):
        _check(MiningConfig, self.model_dump(exclude=_MINE_OWNED))
        return self


_FINETUNE_OWNED = {"model", "train_file", "collection", "split", "eval_split", "eval_backend", "mine", "mining", "mined_file"}

_FinetuneBase = create_model(
    "_FinetuneBase",
    __base__=_TrainingSection,
    **{**_fields(TrainConfig, _PIPELINE_OWNED_TRAIN), "lr": (float, Field(2e-5, gt=0))},
    **_fields(FinetuneConfig, _FINETUNE_OWNED),
)


class FinetuneSection(_FinetuneBase):
    """Contrastive fine-tuning on the training split (with the mined negatives)."""

    enabled: bool = True
    split: str = Field("train", description="qrels split to train on when mining is off.")

    def method_settings(self) -> dict[str, Any]:
        """The :class:`FinetuneConfig` fields this stage sets."""
        return {name: getattr(self, name) for name in FinetuneConfig.model_fields if name not in _FINETUNE_OWNED}


class EvaluateSection(StrictModel):
    """Retrieval quality on a held-out split."""

    enabled: bool = True
    split: str = "test"
    backend: FaissBackendName = "faiss-flat"
    top_k: int = Field(100, gt=0)
    after_pretrain: bool = Field(
        True,
        description="Also score the pretrained model (free when mining runs: its corpus index is searched).",
    )


#: What the ingest stage takes from the ingest job's own settings (:class:`IngestConfig`), same names.
INGEST_FIELDS = {"faiss_backend", "workers", "gpus_per_worker", "cpus_per_worker", "chunk_rows", "block_rows"}
#: Keys of the ingest stage before they took the job's names: accepted for one release, with a warning.
RENAMED_INGEST_KEYS = {"ray_batch_size": "block_rows", "num_gpus_per_worker": "gpus_per_worker",
                       "num_cpus_per_worker": "cpus_per_worker"}

_IngestBase = create_model(
    "_IngestBase", __base__=StrictModel,
    **_fields(IngestConfig, set(IngestConfig.model_fields) - INGEST_FIELDS),
)


class IngestSection(_IngestBase):
    """The corpus embedded with the final model into FAISS or OpenSearch (the Ray Data ingest job)."""

    enabled: bool = True
    sink: Literal["faiss", "opensearch"] = "faiss"
    corpus: Path | None = Field(None, description="Corpus to ingest (default: the collection's).")
    opensearch: OpenSearchSettings = Field(default_factory=OpenSearchSettings)

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for old, new in RENAMED_INGEST_KEYS.items():
            if old in data:
                sys.stderr.write(f"warning: stages.ingest.{old} is deprecated and will be removed; "
                                 f"use stages.ingest.{new}\n")
                data.setdefault(new, data.pop(old))
                data.pop(old, None)
        return data

    def job_settings(self) -> dict[str, Any]:
        """The :class:`IngestConfig` fields this stage sets."""
        return {name: getattr(self, name) for name in INGEST_FIELDS}

    @model_validator(mode="after")
    def _index_name(self):
        if self.sink == "opensearch" and not self.opensearch.index:
            raise ValueError("sink opensearch needs opensearch.index (the index name)")
        return self


class ServeSection(StrictModel):
    """How to serve the index: the command is printed; with ``service_url`` OpenSearch is connected."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, lt=65536)
    service_url: str | None = Field(
        None,
        description="A running `retrosearch serve` as OpenSearch reaches it: connect it as OpenSearch's model.",
    )


class Stages(StrictModel):
    """Every stage, in the order they run."""

    pretrain: PretrainSection = Field(default_factory=lambda: NoPretrain(method="none"))
    mine: MineSection = Field(default_factory=MineSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)
    ingest: IngestSection = Field(default_factory=IngestSection)
    serve: ServeSection = Field(default_factory=ServeSection)


class Embedding(StrictModel):
    """Run-time choices of every embedding pass (mining, evaluation, ingest); none changes a vector."""

    device: str = "auto"
    batch_size: int | None = Field(None, gt=0)
    threads: int | None = Field(None, gt=0)
    show_progress: bool = Field(True, description="Progress bars while the corpus is embedded.")

    def encoder(self, model: str) -> EncoderSettings:
        """Encoder settings for ``model``."""
        return EncoderSettings(model=model, **self.model_dump())


class Holdout(StrictModel):
    """Split one qrels split's queries in two, for a collection without a training split.

    The pipeline writes the collection anew under ``WORK_DIR/collection/`` (the corpus and queries
    linked, the qrels split by a hash of each query id), and every stage reads that folder.
    """

    split: str = Field("test", description="The qrels split whose queries are divided.")
    test_fraction: float = Field(0.5, gt=0, lt=1, description="Share of its queries kept for testing.")
    seed: int = Field(0, description="Another seed, another division.")
    train_split: str = "train"
    test_split: str = "test"

    @model_validator(mode="after")
    def _names(self):
        if self.train_split == self.test_split:
            raise ValueError("train_split and test_split must differ")
        return self


class PipelineConfig(StrictModel):
    """A pipeline: a BEIR collection, a starting model, where outputs go, and the stages."""

    name: str = Field("pipeline", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    collection: Path = Field(description="BEIR folder: corpus, queries, qrels/<split>.tsv.")
    model: str = Field("minilm", description="Starting checkpoint folder or packaged name.")
    work_dir: Path = Field(description="Each stage writes its output and manifest to WORK_DIR/<stage>/.")
    ray_address: str | None = None
    holdout: Holdout | None = Field(None, description="Divide a split's queries into train and test.")
    embedding: Embedding = Field(default_factory=Embedding)
    stages: Stages = Field(default_factory=Stages)

    @model_validator(mode="after")
    def _needs(self):
        stages = self.stages
        if stages.finetune.enabled and not stages.mine.enabled and stages.finetune.group_size > 1:
            raise ValueError(
                "stages.finetune.group_size > 1 needs mined negatives: enable stages.mine or set group_size: 1"
            )
        return self

    def collection_dir(self) -> Path:
        """The BEIR folder the stages read: the collection, or its divided copy with ``holdout``."""
        return (self.work_dir / "collection" if self.holdout else self.collection).resolve()


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    # A discriminated union adds the chosen tag to the path (stages.pretrain.retromae.steps); the
    # file has no such key, so drop it.
    for i in range(len(parts) - 1, 0, -1):
        if parts[i - 1] == "pretrain" and parts[i] in PRETRAIN_METHODS:
            del parts[i]
    return ".".join(parts)


def format_errors(source: str, exc: ValidationError) -> str:
    """One line per error: ``FILE: key.path: message`` (joined with '; ' when there are several)."""
    lines = []
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        where = _location(error["loc"])
        lines.append(f"{source}: {where}: {message}" if where else f"{source}: {message}")
    return "; ".join(lines)


def expand_variables(value: Any) -> Any:
    """``value`` with environment variables and ``~`` expanded in every string, nested ones too."""
    # ${RETROSEARCH_DATA}/scifact and ~/models work in any string setting.
    if isinstance(value, str):
        return os.path.expanduser(os.path.expandvars(value))
    if isinstance(value, dict):
        return {k: expand_variables(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_variables(v) for v in value]
    return value


def parse_config(data: Any, source: str = "<pipeline>") -> PipelineConfig:
    """Validate already-parsed YAML; errors name ``source`` and the key path."""
    if not isinstance(data, dict):
        raise PipelineConfigError(f"{source}: expected a mapping of settings at the top level")
    try:
        return PipelineConfig.model_validate(expand_variables(data))
    except ValidationError as exc:
        raise PipelineConfigError(format_errors(source, exc)) from None


def read_yaml(path: Path) -> Any:
    """A YAML file's data; a missing file or bad YAML is a :class:`PipelineConfigError` naming the file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PipelineConfigError(f"{path}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PipelineConfigError(f"{path}: {where}{getattr(exc, 'problem', None) or exc}") from None


def load_config(path: Path) -> PipelineConfig:
    """Read and validate a pipeline YAML file."""
    return parse_config(read_yaml(path), str(path))
