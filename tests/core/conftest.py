"""Real embeddings shared by the index tests: a slice of SciFact encoded once per session with minilm."""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DATA = Path(os.environ.get("RETROSEARCH_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@dataclass(frozen=True)
class Embedded:
    """Documents and queries of a real collection with their vectors and the encoder's index meta."""

    ids: list[str]
    titles: list[str]
    vectors: np.ndarray
    queries: list[str]
    query_vectors: np.ndarray
    meta: object  # IndexMeta


@pytest.fixture(scope="session")
def scifact_embedded() -> Embedded:
    """The first 300 SciFact abstracts and 40 queries, encoded with the packaged minilm model
    (truncated to 128 tokens to keep the encoding to seconds on two CPUs)."""
    source = DATA / "scifact"
    if not (source / "corpus.jsonl").exists():
        pytest.skip(f"shared data not found at {source}")
    from retrosearch.core.collections import read_corpus
    from retrosearch.core.config import EncoderSettings
    from retrosearch.core.encoder import Encoder

    docs = list(itertools.islice(read_corpus(source / "corpus.jsonl"), 300))
    with (source / "queries.jsonl").open() as handle:
        queries = [json.loads(line)["text"] for line in itertools.islice(handle, 40)]
    encoder = Encoder.load(EncoderSettings(model="minilm", max_length=128, show_progress=False))
    return Embedded(
        ids=[d.id for d in docs],
        titles=[d.title for d in docs],
        vectors=encoder.encode_documents(docs),
        queries=queries,
        query_vectors=encoder.encode_queries(queries),
        meta=encoder.index_meta(),
    )
