"""The embedding stage: a Ray actor that loads the encoder runtime once and embeds batches of rows.

Formatting, tokenization, length-sorted micro-batching and pooling are the runtime's
(``plugin.encoder``): this is only the glue between Ray batches and :class:`Encoder`. Each output
row also carries its token count and its share of the batch's padded positions and encoding
time, so the job summary can report tokens/s, padding and time per stage without a second pass.
"""

from __future__ import annotations

import time

import numpy as np

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder.checkpoint import read_spec, resolve_model_path

VECTOR_COLUMN = "vector"
TOKENS_COLUMN = "_input_ids"


def _documents(batch: dict[str, np.ndarray]) -> list[Document]:
    return [Document(id=i, text=t or "", title=h or "") for i, t, h in zip(batch["id"], batch["text"], batch["title"])]


class TokenizeBatch:
    """Optional stage before :class:`EmbedBatch`: formats and tokenizes on CPU workers, so GPU
    actors spend their time in forward passes instead of waiting on the tokenizer."""

    def __init__(self, settings: dict) -> None:
        # lazy: keeps torch, transformers out of importing this module
        from retrosearch.core.encoder.runtime import load_text_tokenizer

        encoder_settings = EncoderSettings.model_validate(settings)
        path = resolve_model_path(encoder_settings.model)
        self.text_tokenizer = load_text_tokenizer(path, read_spec(path, encoder_settings))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = self.text_tokenizer.documents(_documents(batch))
        out = dict(batch)
        out[TOKENS_COLUMN] = np.array([np.asarray(row, dtype=np.int32) for row in ids] + [None], dtype=object)[:-1]
        return out


class EmbedBatch:
    """``map_batches`` callable class: one encoder per actor, loaded in ``__init__``."""

    def __init__(self, settings: dict) -> None:
        # lazy: keeps torch, ray, transformers out of importing this module
        import ray

        from retrosearch.core.encoder import Encoder

        encoder_settings = EncoderSettings.model_validate({**settings, "show_progress": False})
        if encoder_settings.threads is None:
            # Ray pins a worker to 1 thread unless told; use the CPUs this actor reserved.
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            encoder_settings.threads = max(1, round(cpus))
        self.encoder = Encoder.load(encoder_settings)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if TOKENS_COLUMN in batch:
            token_ids = [row.tolist() for row in batch[TOKENS_COLUMN]]
        else:
            token_ids = self.encoder.text_tokenizer.documents(_documents(batch))
        started = time.perf_counter()
        vectors, stats = self.encoder.encode_with_stats(token_ids)
        seconds = time.perf_counter() - started
        padded = stats.padded_tokens
        tokens = np.fromiter((len(t) for t in token_ids), dtype=np.int64, count=len(token_ids))
        out = {k: v for k, v in batch.items() if k != TOKENS_COLUMN}
        out[VECTOR_COLUMN] = vectors
        out["_tokens"] = tokens
        out["_padded"] = np.full(len(tokens), padded / max(len(tokens), 1), dtype=np.float64)
        out["_embed_s"] = np.full(len(tokens), seconds / max(len(tokens), 1), dtype=np.float64)
        return out
