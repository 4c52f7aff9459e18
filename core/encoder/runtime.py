"""The encoder runtime: the one place in RetroSearch that turns text into vectors.

It loads a checkpoint once, formats queries and passages with the checkpoint's templates,
tokenizes, sorts texts by token length so batches carry little padding, runs the model on the
best available device and returns float32 vectors in the input order. The forward pass runs in
torch or, with ``runtime="onnx"``, in ONNX Runtime on a cached export of the same model
(:mod:`~retrosearch.core.encoder.onnx_model`); everything around it is shared.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSettings, EncoderSpec
from retrosearch.core.encoder.checkpoint import fingerprint, read_spec, resolve_model_path
from retrosearch.core.encoder.device import (
    Workload,
    resolve_device,
    resolve_dtype,
    resolve_runtime,
    set_threads,
    tune_cpu_allocator,
)
from retrosearch.core.encoder.dimensions import check_dimensions, fingerprint_at, truncate
from retrosearch.core.encoder.model import EncoderModel
from retrosearch.core.encoder.onnx_model import OnnxEncoderModel
from retrosearch.core.encoder.tokenization import TextTokenizer
from retrosearch.core.vector_space import IndexMeta

if TYPE_CHECKING:
    from retrosearch.core.encoder.onnx_model import OnnxEncoderModel

_CPU_BATCH, _ACCELERATOR_BATCH = 16, 128

# Show a progress bar only when the work takes more than a handful of batches.
_PROGRESS_MIN_BATCHES = 4


@dataclass
class EncodeStats:
    """Running totals of what the encoder did (for throughput and padding reports)."""

    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0

    def add(self, other: "EncodeStats") -> None:
        """Add another call's figures to these totals."""
        self.texts += other.texts
        self.tokens += other.tokens
        self.padded_tokens += other.padded_tokens
        self.seconds += other.seconds

    @property
    def padding_ratio(self) -> float:
        """Share of the computed positions that were padding."""
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0

    def as_dict(self) -> dict[str, float]:
        """Totals and rates as a plain dict."""
        rate = (lambda n: n / self.seconds if self.seconds else 0.0)
        return {
            "texts": self.texts,
            "tokens": self.tokens,
            "padded_tokens": self.padded_tokens,
            "padding_ratio": round(self.padding_ratio, 4),
            "seconds": round(self.seconds, 3),
            "texts_per_s": round(rate(self.texts), 2),
            "tokens_per_s": round(rate(self.tokens), 1),
        }


def position_limit(config: Any, tokenizer: PreTrainedTokenizerBase | None = None) -> int:
    """The longest input a model takes: its position table, and the tokenizer's own limit if given.

    RoBERTa-family models number positions from ``padding_idx + 1``, so their first slots are unusable.
    """
    limits = [getattr(tokenizer, "model_max_length", None) or 0] if tokenizer is not None else []
    positions = getattr(config, "max_position_embeddings", None)
    if positions:
        model_type = str(getattr(config, "model_type", ""))
        offset = 0
        if "roberta" in model_type or model_type in ("camembert", "longformer"):
            pad = getattr(config, "pad_token_id", None)
            offset = (pad if pad is not None else 1) + 1
        limits.append(int(positions) - offset)
    usable = [n for n in limits if 0 < n < 1_000_000]
    return min(usable) if usable else 1_000_000


def prepare_tokenizer(path: Path, spec: EncoderSpec) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer with the spec's padding side and a pad token guaranteed."""
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    tokenizer.padding_side = spec.padding_side
    if tokenizer.pad_token is None:
        # Decoder LLMs often ship without a pad token; padding is masked out, so any id works.
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return tokenizer


def load_text_tokenizer(path: Path, spec: EncoderSpec) -> TextTokenizer:
    """The runtime's formatting + tokenization of a checkpoint, without loading its weights."""
    tokenizer = prepare_tokenizer(path, spec)
    config = AutoConfig.from_pretrained(str(path))
    return TextTokenizer(tokenizer, spec, min(spec.max_length, position_limit(config, tokenizer)))


def describe(settings: EncoderSettings) -> IndexMeta:
    """What an encoder's vectors are (name, fingerprint, dimension, similarity) without loading it.

    Lets a driver prepare indices and resume state while only the workers load the weights.
    """
    path = resolve_model_path(settings.model)
    spec = read_spec(path, settings)
    native = json.loads((path / "config.json").read_text())["hidden_size"]
    dim = check_dimensions(settings.dimensions, native, settings.model)
    vectors_fingerprint = fingerprint_at(fingerprint(path, spec), dim, native)
    return IndexMeta(model_name=settings.model, model_fingerprint=vectors_fingerprint, dim=dim,
                     similarity=spec.similarity)


class Encoder:
    """Encodes queries and passages with one checkpoint on one device."""

    def __init__(
        self,
        model: "EncoderModel | OnnxEncoderModel",
        tokenizer: PreTrainedTokenizerBase,
        settings: EncoderSettings,
        name: str,
        model_fingerprint: str,
        device: torch.device,
    ) -> None:
        self.model = model.eval()
        self.spec = model.spec
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name
        self.device = device
        # Vectors are cut to `dimensions` (settings), and their identity says so.
        self.native_dim = int(model.dim)
        self._dim = check_dimensions(settings.dimensions, self.native_dim, name)
        self.fingerprint = fingerprint_at(model_fingerprint, self._dim, self.native_dim)
        self.max_length = min(self.spec.max_length, position_limit(model.config, tokenizer))
        self.text_tokenizer = TextTokenizer(tokenizer, self.spec, self.max_length)
        # Small batches are faster on CPUs (MiniLM on SciFact, 2 threads: 16 -> ~18.7 docs/s,
        # 64 -> ~16.2), large ones on accelerators.
        self.batch_size = settings.batch_size or (_CPU_BATCH if device.type == "cpu" else _ACCELERATOR_BATCH)
        self.formatter = self.text_tokenizer.formatter
        # Read once: asking the fast tokenizer for it later would touch the Rust tokenizer from the
        # forward pass's thread while a service's tokenizer thread may be using it.
        self.pad_token_id = tokenizer.pad_token_id
        self.stats = EncodeStats()
        self._stats_lock = threading.Lock()

    @classmethod
    def load(cls, settings: EncoderSettings | str | Path | None = None, workload: Workload = "bulk") -> "Encoder":
        """Load a checkpoint folder or packaged model as ``settings`` (or a bare model name) says.

        ``workload`` is what the encoder is for (``queries``: one short text per call, as in the
        service); with ``runtime: auto`` it decides torch or ONNX Runtime (see :func:`resolve_runtime`).
        """
        if settings is None or isinstance(settings, (str, Path)):
            settings = EncoderSettings(model=str(settings or EncoderSettings().model))
        set_threads(settings.threads)
        path = resolve_model_path(settings.model)
        spec = read_spec(path, settings)
        model_fingerprint = fingerprint(path, spec)
        if resolve_runtime(settings.runtime, settings.quantize, settings.device, spec.pooling, workload) == "onnx":
            model = OnnxEncoderModel.load(path, spec, settings, model_fingerprint)
            device = model.device
        else:
            device = resolve_device(settings.device)
            model = EncoderModel.from_pretrained(path, spec, dtype=resolve_dtype(settings.dtype, device)).to(device)
        if device.type == "cpu":
            tune_cpu_allocator()
        tokenizer = prepare_tokenizer(path, spec)
        return cls(model, tokenizer, settings, settings.model, model_fingerprint, device)

    # -- identity -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension of the vectors (the ``dimensions`` setting, else the model's own)."""
        return self._dim

    def cut(self, vectors: np.ndarray, dimensions: int | None = None) -> np.ndarray:
        """``vectors`` cut to ``dimensions`` (default :attr:`dim`), renormalised when the encoder emits
        unit vectors; as they are when already that wide."""
        dimensions = check_dimensions(dimensions or self._dim, vectors.shape[1], self.name)
        if dimensions == vectors.shape[1]:
            return vectors
        return truncate(vectors, dimensions, renormalize=self.spec.unit_vectors)

    @property
    def runtime(self) -> str:
        """What runs the forward pass: ``torch`` or ``onnx``."""
        return self.model.runtime

    def index_meta(self) -> IndexMeta:
        """What an index built with this encoder must record."""
        return IndexMeta(
            model_name=self.name, model_fingerprint=self.fingerprint, dim=self.dim, similarity=self.spec.similarity
        )

    # -- encoding -------------------------------------------------------------------------------
    def encode_queries(self, texts: Sequence[str], desc: str = "queries") -> np.ndarray:
        """Vectors of queries, formatted with the query template."""
        return self.encode_token_ids(self.text_tokenizer.queries(texts), desc=desc)

    def encode_documents(self, docs: Sequence[Document], desc: str = "passages") -> np.ndarray:
        """Vectors of documents (title + text), formatted with the passage template."""
        return self.encode_token_ids(self.text_tokenizer.documents(docs), desc=desc)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of already formatted texts, cut from the right to the encoder's max length."""
        return self.text_tokenizer.formatted(texts)

    def encode_formatted(self, texts: Sequence[str], desc: str = "texts") -> np.ndarray:
        """Vectors of texts that are already formatted; rows follow the input order."""
        return self.encode_token_ids(self.tokenize(texts), desc=desc)

    def encode_token_ids(self, token_ids: Sequence[Sequence[int]], desc: str = "texts") -> np.ndarray:
        """Vectors of pre-tokenized texts, batched by descending length to minimise padding.

        The call's figures are added to :attr:`stats` (under a lock, so concurrent callers keep
        exact totals); use :meth:`encode_with_stats` for one call's own figures.
        """
        vectors, stats = self.encode_with_stats(token_ids, desc=desc)
        with self._stats_lock:
            self.stats.add(stats)
        return vectors

    def encode_with_stats(
        self, token_ids: Sequence[Sequence[int]], desc: str = "texts"
    ) -> tuple[np.ndarray, EncodeStats]:
        """Vectors of pre-tokenized texts and the figures of this call alone.

        Batches hold at most ``batch_size`` rows and, with ``max_batch_tokens`` set, at most that
        many padded positions, so one very long text never shares a batch with many others.
        Safe to call from one thread at a time per encoder: the model and its tokenizer are
        shared (a server runs one consumer per replica, see :mod:`retrosearch.plugin.serve`).
        """
        count = len(token_ids)
        out = np.empty((count, self.dim), dtype=np.float32)
        stats = EncodeStats()
        if count == 0:
            return out, stats
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=count)
        order = np.argsort(-lengths, kind="stable")
        batches = self._batches(lengths, order)
        started = time.perf_counter()
        bar = None
        if self.settings.show_progress and len(batches) > _PROGRESS_MIN_BATCHES:
            bar = tqdm(total=count, desc=desc, unit="text", dynamic_ncols=True)
        try:
            for rows in batches:
                input_ids, attention_mask = self._pad([token_ids[i] for i in rows], int(lengths[rows[0]]))
                with torch.inference_mode():
                    vectors = self.model(input_ids=input_ids, attention_mask=attention_mask)
                out[rows] = self.cut(vectors.float().cpu().numpy())
                stats.padded_tokens += int(attention_mask.numel())
                if bar is not None:
                    bar.update(len(rows))
        finally:
            if bar is not None:
                bar.close()
        stats.texts = count
        stats.tokens = int(lengths.sum())
        stats.seconds = time.perf_counter() - started
        return out, stats

    def _batches(self, lengths: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
        """Row groups of the length-sorted ``order``: ``batch_size`` rows, within the token budget."""
        budget = self.settings.max_batch_tokens
        if not budget:
            return [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        batches, start = [], 0
        while start < len(order):
            # Sorted longest first: the first row of a batch sets its padded width.
            width = max(1, int(lengths[order[start]]))
            rows = max(1, min(self.batch_size, budget // width))
            batches.append(order[start : start + rows])
            start += rows
        return batches

    def _pad(self, batch: list[Sequence[int]], width: int) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids = np.full((len(batch), width), self.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(batch), width), dtype=np.int64)
        left = self.spec.padding_side == "left"
        for row, ids in enumerate(batch):
            n = len(ids)
            start = width - n if left else 0
            input_ids[row, start : start + n] = ids
            attention_mask[row, start : start + n] = 1
        return (
            torch.from_numpy(input_ids).to(self.device, non_blocking=True),
            torch.from_numpy(attention_mask).to(self.device, non_blocking=True),
        )
