"""The stages: each turns its settings and its upstream stages' outputs into an output folder.

They call what the single-stage commands call (the trainers' ``fit``, ``mine_collection``,
``evaluate``, ``run_ingest``, ``opensearch connect``), so a stage behaves as its command does; the
runner around them decides what to run, writes manifests and prints progress.
"""

from __future__ import annotations

import json
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import EncoderSettings, Settings
from retrosearch.core.retrieval.report import write_json
from retrosearch.ingest.pipeline import IngestConfig, run_ingest
from retrosearch.pipeline.config import MLMPretrain, PipelineConfig, RetroMAEPretrain
from retrosearch.pipeline.manifest import hash_file, hash_json
from retrosearch.trainers.finetune.config import FinetuneConfig
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.harness.events import EVENTS_FILE, Event, read_events, summarise
from retrosearch.trainers.llara.config import LLaRAConfig

if TYPE_CHECKING:
    from retrosearch.core.config import EncoderSettings
    from retrosearch.core.retrieval.evaluation import EvalResult
    from retrosearch.trainers.harness.config import TrainConfig
    from retrosearch.trainers.harness.method import Method


@dataclass
class Record:
    """What the runner knows about a stage once it has run, been skipped or is off."""

    name: str
    status: str  # ran, resumed, skipped, off
    outputs: dict[str, str] = field(default_factory=dict)
    output_hash: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    reason: str = ""


@dataclass
class StageResult:
    """What a stage's run produced."""

    outputs: dict[str, str]
    output_hash: str
    figures: dict[str, Any] = field(default_factory=dict)


def _json(value: Any) -> Any:
    """``value`` as it reads back from a manifest (paths as strings, tuples as lists)."""
    return json.loads(json.dumps(value, default=str))


def model_hash(model: str) -> str:
    """The encoder runtime's fingerprint of a checkpoint folder or packaged name."""
    # lazy: keeps torch, transformers out of importing this module
    from retrosearch.core.encoder import describe

    return describe(EncoderSettings(model=model)).model_fingerprint


class Stage(ABC):
    """One step of the pipeline, writing to ``WORK_DIR/<name>/``."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()  # upstream stages whose outputs this one reads
    # The output keys naming files or folders that must still exist for a finished run to count.
    output_paths: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pipeline: PipelineConfig) -> None:
        self.pipeline = pipeline
        self.folder = pipeline.work_dir.resolve() / self.name

    @property
    def section(self) -> Any:
        """This stage's settings from the pipeline file."""
        return getattr(self.pipeline.stages, self.name)

    @property
    def enabled(self) -> bool:
        """False when the pipeline file turns this stage off."""
        return getattr(self.section, "enabled", True)

    # Run-time choices that do not change a stage's output: changing them reruns nothing.
    RUNTIME_ONLY: ClassVar[set[str]] = {"log_every", "threads", "checkpoint_every", "keep_checkpoints", "max_failures"}

    def settings(self) -> dict[str, Any]:
        """The resolved settings that enter the stage's key (and its manifest)."""
        own = self.section.model_dump(exclude=self.RUNTIME_ONLY)
        return _json({**own, **self.extra_settings()})

    def extra_settings(self) -> dict[str, Any]:
        """Pipeline-level settings this stage depends on."""
        return {}

    def input_files(self) -> dict[str, Path]:
        """Files whose content the stage reads (hashed into its key)."""
        return {}

    @abstractmethod
    def run(self, upstream: dict[str, Record]) -> StageResult:
        """Do the work into :attr:`folder` (which exists)."""

    def off_reason(self) -> str:
        """Why the stage is off (shown by the plan and the summary)."""
        return "off in the pipeline file"

    def passthrough(self, upstream: dict[str, Record]) -> Record:
        """The record of this stage when it is off: by default, nothing for downstream."""
        return Record(self.name, "off", reason=self.off_reason())

    def outputs_exist(self, outputs: dict[str, str]) -> bool:
        """Whether a finished run's outputs are still there (a deleted folder reruns the stage)."""
        return all(k in outputs and Path(outputs[k]).exists() for k in self.output_paths)

    def progress(self) -> str | None:
        """For a stage interrupted mid-way: how far it got (the plan shows it)."""
        return None

    # -- shared helpers -------------------------------------------------------------------------
    def collection_files(self, *splits: str) -> dict[str, Path]:
        """The collection's corpus, queries and the named qrels splits."""
        root = self.pipeline.collection_dir()
        files = {"corpus": root / "corpus.jsonl", "queries": root / "queries.jsonl"}
        files.update({f"qrels/{s}": root / "qrels" / f"{s}.tsv" for s in splits})
        return files

    def encoder_settings(self, model: str) -> EncoderSettings:
        """Encoder settings of every embedding pass (the pipeline's ``embedding`` section)."""
        return self.pipeline.embedding.encoder(model)


def eval_figures(result: EvalResult) -> dict[str, float]:
    """What a stage records of an evaluation: its measures and the queries' mean cosine, rounded."""
    figures = {k: round(v, 4) for k, v in result.figures.items()}
    if result.query_cosine is not None:
        figures["query_cosine"] = round(result.query_cosine, 4)
    return figures


def _model_of(upstream: dict[str, Record], stage: str) -> str:
    return upstream[stage].outputs["model"]


class TrainingStage(Stage):
    """A stage that runs a method on the trainers' harness: checkpoints in ``train/``, the model in ``model/``."""

    output_paths = ("model",)

    @abstractmethod
    def method(self, upstream: dict[str, Record]) -> Method:
        """The harness method to fit."""

    def train_config(self, method: Method, upstream: dict[str, Record]) -> TrainConfig:
        """The harness's TrainConfig: the stage's train settings, output and storage in the stage folder."""
        fields = self.section.train_settings()
        return TrainConfig(
            out=self.folder / "model", storage_path=self.folder / "train", name=method.name,
            ray_address=self.pipeline.ray_address, **fields,
        )

    def run_dir(self) -> Path | None:
        """The harness's run folder (checkpoints, log and events) under ``train/``, once it has events."""
        logs = sorted((self.folder / "train").glob(f"*/{EVENTS_FILE}"))
        return logs[0].parent if logs else None

    def events(self) -> list[Event]:
        """The run events the harness wrote so far (none before the first run)."""
        folder = self.run_dir()
        return [] if folder is None else read_events(folder)

    def checkpoint_step(self) -> int | None:
        """The step of the checkpoint a rerun resumes from: the last one Ray Train registered."""
        return summarise(self.events()).checkpoint_step

    def progress(self) -> str | None:
        step = self.checkpoint_step()
        return None if step is None else f"checkpoint at step {step}"

    def run(self, upstream: dict[str, Record]) -> StageResult:
        # lazy: keeps torch, ray out of importing this module
        from retrosearch.trainers.harness.runner import fit

        method = self.method(upstream)
        train = self.train_config(method, upstream)
        seen = len(self.events())
        result = fit(method, train)
        figures: dict[str, Any] = {
            k: round(v, 4) for k, v in result.metrics.items() if k == "loss" or k.startswith("loss/")
        }
        figures["steps"] = result.steps
        run = summarise(read_events(result.run_dir)[seen:])
        if run.resumed_from is not None:
            figures["resumed_from_step"] = run.resumed_from
        if "tokens_per_s" in run.metrics:  # the last step logged covers the whole (resumed) attempt
            figures["tokens_per_s"] = round(run.metrics["tokens_per_s"])
            figures["train_s"] = round(run.metrics["elapsed_s"], 1)
        model = str(result.out)
        return StageResult({"model": model, "checkpoint": result.checkpoint}, model_hash(model), figures)


class PretrainStage(TrainingStage):
    """RetroMAE / DupMAE / MLM / LLaRA on the corpus, from the pipeline's model; ``none`` passes it on."""

    name = "pretrain"

    @property
    def enabled(self) -> bool:
        return self.section.method != "none"

    def corpora(self) -> list[Path]:
        """The corpora to pretrain on: the stage's own (one or several), else the collection's."""
        own = self.section.corpus
        paths = own if isinstance(own, list) else [own or self.pipeline.collection_dir() / "corpus.jsonl"]
        return [p.resolve() for p in paths]

    def corpus(self) -> Path:
        """The corpus of a method that reads one (LLaRA's section takes no list)."""
        return self.corpora()[0]

    def start_model(self) -> str:
        """The checkpoint pretraining starts from: the stage's own, else the pipeline's model."""
        return self.section.model or self.pipeline.model

    def _corpus_files(self) -> dict[str, Path | None]:
        """Each corpus by its key name (``corpus``, or ``corpus/<n>`` for several): its file, or None for
        a folder of Parquet files (known by name only)."""
        corpora = self.corpora()
        files: dict[str, Path | None] = {}
        for n, corpus in enumerate(corpora):
            # A BEIR folder or a saved dataset: its corpus file.
            if corpus.is_dir():
                corpus = corpus / "corpus.jsonl" if (corpus / "corpus.jsonl").is_file() else corpus
            files["corpus" if len(corpora) == 1 else f"corpus/{n}"] = corpus if corpus.is_file() else None
        return files

    def extra_settings(self) -> dict[str, Any]:
        # A corpus file enters the key by its content (input_files), so a moved copy reruns nothing;
        # a folder of Parquet files enters it by its path.
        corpora = self.corpora()
        by_path = [c for c, f in zip(corpora, self._corpus_files().values()) if f is None]
        corpus = by_path if len(corpora) > 1 else (by_path[0] if by_path else None)
        return {"model": self.start_model(), "corpus": corpus}

    def input_files(self) -> dict[str, Path]:
        files = {name: path for name, path in self._corpus_files().items() if path is not None}
        start = Path(self.start_model())
        if start.is_dir():
            files.update({f"model/{p.name}": p for p in sorted(start.glob("*.safetensors"))})
        return files

    def off_reason(self) -> str:
        return f"method none: {self.pipeline.model} goes on as it is"

    def passthrough(self, upstream: dict[str, Record]) -> Record:
        model = self.pipeline.model
        return Record(self.name, "off", {"model": model}, model_hash(model), reason=self.off_reason())

    def method(self, upstream: dict[str, Record]) -> Method:
        cfg = self.section
        corpora = [str(c) for c in self.corpora()]
        if isinstance(cfg, RetroMAEPretrain):
            # lazy: keeps torch, transformers out of importing this module
            from retrosearch.trainers.retromae import RetroMAEConfig, RetroMAEMethod

            own = {n: getattr(cfg, n) for n in RetroMAEConfig.model_fields if n not in ("model", "corpus", "dupmae")}
            config = RetroMAEConfig(
                model=self.start_model(), corpus=corpora, dupmae=cfg.method == "dupmae", **own
            )
            return RetroMAEMethod(config)
        if isinstance(cfg, MLMPretrain):
            # lazy: keeps torch, transformers out of importing this module
            from retrosearch.trainers.mlm import MLMConfig, MLMMethod

            own = {n: getattr(cfg, n) for n in MLMConfig.model_fields if n not in ("model", "corpus")}
            return MLMMethod(MLMConfig(model=self.start_model(), corpus=corpora, **own))
        # lazy: keeps torch, transformers out of importing this module
        from retrosearch.trainers.llara.method import LLaRAMethod

        own = {n: getattr(cfg, n) for n in LLaRAConfig.model_fields if n not in ("model", "corpus")}
        return LLaRAMethod(LLaRAConfig(model=self.start_model(), corpus=str(self.corpus()), **own))


class MineStage(Stage):
    """Hard negatives for the training split from the pretrained model's ranking of the corpus.

    With ``stages.evaluate.after_pretrain`` the same corpus index also scores the pretrained model
    on the evaluation split, for the cost of its queries.
    """

    name = "mine"
    output_paths = ("train_file",)

    @property
    def needs(self) -> tuple[str, ...]:  # type: ignore[override]
        # Mining with the starting model (or another named one) reads nothing upstream: every pretraining
        # method gets the same negatives.
        return ("pretrain",) if self.section.model == "pretrained" else ()

    def scores_pretrain(self) -> bool:
        """Whether this stage also scores the pretrained model (on the index it builds anyway)."""
        evaluate = self.pipeline.stages.evaluate
        return evaluate.enabled and evaluate.after_pretrain and self.section.model == "pretrained"

    def extra_settings(self) -> dict[str, Any]:
        evaluate = self.pipeline.stages.evaluate
        ranker = self.section.ranker(self.pipeline.model)
        return {
            "start_model": None if ranker is None else model_hash(ranker),
            "score_pretrained": {"split": evaluate.split, "top_k": evaluate.top_k} if self.scores_pretrain() else None,
        }

    def input_files(self) -> dict[str, Path]:
        splits = [self.section.split] + ([self.pipeline.stages.evaluate.split] if self.scores_pretrain() else [])
        return self.collection_files(*dict.fromkeys(splits))

    def off_reason(self) -> str:
        return "off in the pipeline file: fine-tuning uses the split's qrels and in-batch negatives"

    def run(self, upstream: dict[str, Record]) -> StageResult:
        # lazy: keeps torch, faiss, transformers out of importing this module
        from retrosearch.core.encoder import Encoder
        from retrosearch.core.retrieval import evaluate
        from retrosearch.trainers.finetune.mining import mine_collection, mining_provenance, write_mined

        cfg = self.section
        model = cfg.ranker(self.pipeline.model) or _model_of(upstream, "pretrain")
        collection = BeirCollection(self.pipeline.collection_dir())
        settings = Settings(encoder=self.encoder_settings(model))
        encoder = Encoder.load(settings.encoder)
        result = mine_collection(collection, cfg.split, encoder, cfg.mining(), settings)
        path = self.folder / "hard-negatives.jsonl"
        write_mined(path, result, mining_provenance(collection, cfg.split, encoder, cfg.mining()))
        stats = result.stats
        figures: dict[str, Any] = {
            "queries": stats["queries"], "negatives": stats["negatives"],
            "queries_short": stats["queries_short_of_negatives"],
        }
        outputs = {"train_file": str(path)}
        if self.scores_pretrain():
            evaluate_cfg = self.pipeline.stages.evaluate
            scored = evaluate(
                collection, encoder, cfg.backend, split=evaluate_cfg.split, top_k=evaluate_cfg.top_k,
                settings=settings, index=result.index,
            )
            write_json(self.folder / f"eval-pretrained-{evaluate_cfg.split}.json", scored.as_dict())
            figures["pretrained"] = eval_figures(scored)
        return StageResult(outputs, hash_file(path), figures)


class FinetuneStage(TrainingStage):
    """Contrastive fine-tuning of the pretrained model on the mined groups (or the split's qrels)."""

    name = "finetune"
    needs = ("pretrain", "mine")

    def input_files(self) -> dict[str, Path]:
        return {} if self.pipeline.stages.mine.enabled else self.collection_files(self.section.split)

    def passthrough(self, upstream: dict[str, Record]) -> Record:
        pretrain = upstream["pretrain"]
        return Record(self.name, "off", dict(pretrain.outputs), pretrain.output_hash, reason=self.off_reason())

    def method(self, upstream: dict[str, Record]) -> Method:
        # lazy: keeps torch, transformers out of importing this module
        from retrosearch.trainers.finetune.method import FinetuneMethod

        cfg = self.section
        source: dict[str, Any]
        if self.pipeline.stages.mine.enabled:
            source = {"train_file": Path(upstream["mine"].outputs["train_file"])}
        else:
            source = {"collection": self.pipeline.collection_dir(), "split": cfg.split, "mine": False}
        config = FinetuneConfig(
            model=_model_of(upstream, "pretrain"), eval_split=None, **source, **cfg.method_settings()
        )
        return FinetuneMethod(config)


class EvaluateStage(Stage):
    """NDCG@10, MRR@10, Recall@100 and MAP of the final model on the held-out split."""

    name = "evaluate"
    needs = ("pretrain", "finetune")
    output_paths = ("eval",)

    def scores_pretrain(self) -> bool:
        """Whether this stage scores the pretrained model too (only when mining, which does it for less, is off)."""
        # Without mining by the pretrained model there is no corpus index of it to reuse: embed it here.
        stages = self.pipeline.stages
        mined_with_it = stages.mine.enabled and stages.mine.model == "pretrained"
        return self.section.after_pretrain and not mined_with_it and stages.pretrain.method != "none"

    def pretrained_pooling(self) -> str | None:
        """The pooling the pretrained model is scored with: the fine-tuning's when it sets one, so the
        figures before fine-tuning are those of the vectors fine-tuning starts from."""
        finetune = self.pipeline.stages.finetune
        return finetune.pooling if self.scores_pretrain() and finetune.enabled else None

    def extra_settings(self) -> dict[str, Any]:
        extra: dict[str, Any] = {"score_pretrained": self.scores_pretrain()}
        if (pooling := self.pretrained_pooling()) is not None:  # only when set: other recipes keep their keys
            extra["pretrained_pooling"] = pooling
        return extra

    def input_files(self) -> dict[str, Path]:
        return self.collection_files(self.section.split)

    def _evaluate(self, model: str, out: Path, pooling: str | None = None) -> dict[str, float]:
        # lazy: keeps torch, faiss, transformers out of importing this module
        from retrosearch.core.encoder import Encoder
        from retrosearch.core.retrieval import evaluate

        cfg = self.section
        encoder = self.encoder_settings(model)
        if pooling is not None:
            encoder = encoder.model_copy(update={"pooling": pooling})
        settings = Settings(encoder=encoder)
        result = evaluate(
            BeirCollection(self.pipeline.collection_dir()), Encoder.load(settings.encoder), cfg.backend,
            split=cfg.split, top_k=cfg.top_k, settings=settings,
        )
        write_json(out, result.as_dict())
        return eval_figures(result)

    def run(self, upstream: dict[str, Record]) -> StageResult:
        out = self.folder / f"eval-{self.section.split}.json"
        figures: dict[str, Any] = self._evaluate(_model_of(upstream, "finetune"), out)
        if self.scores_pretrain():
            pretrained = self.folder / f"eval-pretrained-{self.section.split}.json"
            figures["pretrained"] = self._evaluate(_model_of(upstream, "pretrain"), pretrained,
                                                   self.pretrained_pooling())
        return StageResult({"eval": str(out)}, hash_json(figures), figures)


class IngestStage(Stage):
    """The corpus embedded with the final model and loaded into FAISS or OpenSearch (Ray Data, resumable)."""

    name = "ingest"
    needs = ("finetune",)

    def corpus(self) -> Path:
        """The corpus to ingest: the stage's own, else the collection's."""
        return (self.section.corpus or self.pipeline.collection_dir() / "corpus.jsonl").resolve()

    def extra_settings(self) -> dict[str, Any]:
        return {"corpus": self.corpus()}

    def input_files(self) -> dict[str, Path]:
        return {"corpus": self.corpus()} if self.corpus().is_file() else {}

    def settings(self) -> dict[str, Any]:
        # Where OpenSearch is and how fast it loads is not what is in it; the index name and layout are.
        values = super().settings()
        opensearch = values["opensearch"]
        keep = ("index", "vector_field", "engine", "space_type", "hnsw_m", "hnsw_ef_construction", "shards")
        values["opensearch"] = {k: opensearch[k] for k in keep} if self.section.sink == "opensearch" else None
        for name in ("workers", "gpus_per_worker", "cpus_per_worker", "chunk_rows", "block_rows"):
            values.pop(name)
        return values

    def outputs_exist(self, outputs: dict[str, str]) -> bool:
        if "index_dir" in outputs:
            return (Path(outputs["index_dir"]) / "meta.json").is_file()
        # lazy: keeps opensearchpy out of importing this module
        from retrosearch.core.opensearch.client import connect

        try:
            return bool(connect(self.section.opensearch).indices.exists(index=outputs["index_name"]))
        except Exception:  # an unreachable server: the run will say so with a proper error
            return False

    def run(self, upstream: dict[str, Record]) -> StageResult:
        cfg = self.section
        model = _model_of(upstream, "finetune")
        encoder = self.encoder_settings(model)
        settings = Settings(encoder=encoder, opensearch=cfg.opensearch)
        state = self.folder / "state"
        if cfg.sink == "opensearch" and not state.exists():
            # A fresh run (new model or corpus) replaces what an earlier run left in the index.
            # lazy: keeps torch, transformers, opensearchpy out of importing this module
            from retrosearch.core.encoder import describe
            from retrosearch.core.index.opensearch_index import OpenSearchIndex

            OpenSearchIndex.create(describe(encoder), cfg.opensearch, recreate=True)
        out = self.folder / "index" if cfg.sink == "faiss" else None
        job = IngestConfig(
            inputs=[self.corpus()], sink=cfg.sink, out=out, **cfg.job_settings(),
            ray_address=self.pipeline.ray_address, state_dir=state, settings=settings,
        )
        summary = run_ingest(job)
        (self.folder / "ingest-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if summary["failed"] or summary["chunks_left"]:
            raise RuntimeError(
                f"ingest left {len(summary['failed'])} documents unloaded ({summary['chunks_left']} chunks); "
                "rerun the pipeline to retry them"
            )
        outputs = {"index_dir": str(out)} if out else {"index_name": cfg.opensearch.index, "url": cfg.opensearch.url}
        figures = {"docs": summary["sink_count"], "docs_per_s": summary["rows_per_s"], "rejects": summary["rejects"]}
        digest = hash_json({"model": summary["model_fingerprint"], "outputs": outputs, "count": summary["sink_count"]})
        return StageResult(outputs, digest, figures)


class ServeStage(Stage):
    """The command that serves the index; with ``service_url``, that service connected to OpenSearch."""

    name = "serve"
    needs = ("ingest",)

    @property
    def enabled(self) -> bool:
        return self.section.enabled and self.pipeline.stages.ingest.enabled

    def off_reason(self) -> str:
        return "off in the pipeline file" if not self.section.enabled else "nothing to serve: stages.ingest is off"

    def commands(self, ingest: Record) -> dict[str, str]:
        """``serve`` (and ``connect`` for OpenSearch) command lines for the ingested index."""
        cfg = self.section
        where = f"--host {cfg.host} --port {cfg.port}"
        if "index_dir" in ingest.outputs:
            return {"serve": f"retrosearch serve --index {ingest.outputs['index_dir']} {where}"}
        name, url = ingest.outputs["index_name"], ingest.outputs["url"]
        service = cfg.service_url or f"http://{cfg.host}:{cfg.port}"
        return {
            "serve": f"retrosearch serve --index-name {name} --opensearch-url {url} {where}",
            "connect": f"retrosearch opensearch connect --service-url {service} --opensearch-url {url} --index-name {name}",
        }

    def run(self, upstream: dict[str, Record]) -> StageResult:
        ingest = upstream["ingest"]
        if not ingest.outputs:
            raise ValueError("stages.serve needs stages.ingest (there is no index to serve)")
        outputs = self.commands(ingest)
        if self.section.service_url:
            if "index_name" not in ingest.outputs:
                raise ValueError("stages.serve.service_url connects OpenSearch: it needs stages.ingest.sink opensearch")
            # lazy: keeps opensearchpy, httpx out of importing this module
            from retrosearch.plugin.opensearch.connect import connect_index

            # What `opensearch connect` does: check the service serves the index's model, then
            # create (or reuse) the ml-commons models and the index's pipelines.
            opensearch = self.pipeline.stages.ingest.opensearch
            connect_index(Settings(opensearch=opensearch), self.section.service_url)
            outputs["connected"] = self.section.service_url
        return StageResult(outputs, hash_json(outputs))


STAGES: tuple[type[Stage], ...] = (PretrainStage, MineStage, FinetuneStage, EvaluateStage, IngestStage, ServeStage)


def build_stages(pipeline: PipelineConfig) -> list[Stage]:
    """The pipeline's stages, in order."""
    return [cls(pipeline) for cls in STAGES]


def reset_folder(folder: Path) -> None:
    """Empty a stage folder before a fresh run (old checkpoints must not be resumed by other settings)."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
