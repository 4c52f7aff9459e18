"""The encoder runtime: the one place in RetroSearch that turns text into vectors.

It loads a checkpoint once, formats queries and passages with the checkpoint's templates,
tokenizes, sorts texts by token length so batches carry little padding, runs the model on the
best available device and returns float32 vectors in the input order.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer, PreTrainedTokenizerBase

from retrosearch.plugin.collections.records import Document
from retrosearch.plugin.config import EncoderSettings, EncoderSpec
from retrosearch.plugin.encoder.checkpoint import fingerprint, read_spec, resolve_model_path
from retrosearch.plugin.encoder.device import resolve_device, resolve_dtype, set_threads, tune_cpu_allocator
from retrosearch.plugin.encoder.model import EncoderModel
from retrosearch.plugin.encoder.tokenization import TextTokenizer
from retrosearch.plugin.index.base import IndexMeta

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
    import json

    path = resolve_model_path(settings.model)
    spec = read_spec(path, settings)
    dim = json.loads((path / "config.json").read_text())["hidden_size"]
    return IndexMeta(model_name=settings.model, model_fingerprint=fingerprint(path, spec), dim=dim, similarity=spec.similarity)


class Encoder:
    """Encodes queries and passages with one checkpoint on one device."""

    def __init__(
        self,
        model: EncoderModel,
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
        self.fingerprint = model_fingerprint
        self.device = device
        self.max_length = min(self.spec.max_length, position_limit(model.backbone.config, tokenizer))
        self.text_tokenizer = TextTokenizer(tokenizer, self.spec, self.max_length)
        # Small batches are faster on CPUs (MiniLM on SciFact, 2 threads: 16 -> ~18.7 docs/s,
        # 64 -> ~16.2), large ones on accelerators.
        self.batch_size = settings.batch_size or (_CPU_BATCH if device.type == "cpu" else _ACCELERATOR_BATCH)
        self.formatter = self.text_tokenizer.formatter
        self.stats = EncodeStats()

    @classmethod
    def load(cls, settings: EncoderSettings | str | Path | None = None) -> "Encoder":
        """Load a checkpoint folder or packaged model as ``settings`` (or a bare model name) says."""
        if settings is None or isinstance(settings, (str, Path)):
            settings = EncoderSettings(model=str(settings or EncoderSettings().model))
        set_threads(settings.threads)
        path = resolve_model_path(settings.model)
        spec = read_spec(path, settings)
        device = resolve_device(settings.device)
        if device.type == "cpu":
            tune_cpu_allocator()
        dtype = resolve_dtype(settings.dtype, device)
        model = EncoderModel.from_pretrained(path, spec, dtype=dtype).to(device)
        tokenizer = prepare_tokenizer(path, spec)
        return cls(model, tokenizer, settings, settings.model, fingerprint(path, spec), device)

    # -- identity -------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Dimension of the vectors."""
        return self.model.dim

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
        """Vectors of pre-tokenized texts, batched by descending length to minimise padding."""
        count = len(token_ids)
        out = np.empty((count, self.dim), dtype=np.float32)
        if count == 0:
            return out
        lengths = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=count)
        order = np.argsort(-lengths, kind="stable")
        batch_size = self.batch_size
        show = self.settings.show_progress and count > batch_size * _PROGRESS_MIN_BATCHES
        started = time.perf_counter()
        with tqdm(total=count, desc=desc, unit="text", disable=not show, dynamic_ncols=True) as bar:
            for start in range(0, count, batch_size):
                rows = order[start : start + batch_size]
                input_ids, attention_mask = self._pad([token_ids[i] for i in rows])
                with torch.inference_mode():
                    vectors = self.model(input_ids=input_ids, attention_mask=attention_mask)
                out[rows] = vectors.float().cpu().numpy()
                self.stats.padded_tokens += int(attention_mask.numel())
                bar.update(len(rows))
        self.stats.texts += count
        self.stats.tokens += int(lengths.sum())
        self.stats.seconds += time.perf_counter() - started
        return out

    def _pad(self, batch: list[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
        left = self.spec.padding_side == "left"
        for row, ids in enumerate(batch):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            input_ids[row, span] = torch.as_tensor(ids, dtype=torch.long)
            attention_mask[row, span] = 1
        return input_ids.to(self.device), attention_mask.to(self.device)
