"""``retrosearch bench ingest`` on a tiny model and 40 documents.

The rates are not judged (timings here mean nothing): the measuring code runs end to end, every
run reports every document, rates and ratios follow from the reported figures, and the Ray ingest
the benchmark compares with the raw forward pass writes the raw forward pass's vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import scifact_head
from tests.plugin.serve.http_helpers import run_cli

DOCS = 40


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scifact_head(tmp_path_factory, DOCS, "ingest-speed-corpus")


def test_bench_ingest_counts_every_document_and_derives_its_ratios(
    corpus: Path, tiny_bert: Path, tmp_path: Path, cli_joins_session_ray: str
):
    out = tmp_path / "ingest.json"
    run_cli("bench", "ingest", "--corpus", str(corpus), "--model", str(tiny_bert), "--skip-opensearch",
            "--json-out", str(out))
    payload = json.loads(out.read_text())
    results = payload["results"]
    assert set(results) == {"a_raw", "b_sentence_transformers", "c_ingest_faiss"}
    assert payload["docs"] == DOCS and payload["num_gpus_per_worker"] == 0
    for name, run in results.items():
        assert run["docs"] == DOCS, name
        assert run["seconds"] > 0 and run["docs_per_s"] == pytest.approx(DOCS / run["seconds"]), name
    summary = results["c_ingest_faiss"]["summary"]
    assert summary["rows_written"] == DOCS and summary["rows_already_done"] == 0
    rate = {name: run["docs_per_s"] for name, run in results.items()}
    embed_s = summary["seconds"]["embed_actors"] / summary["workers"]
    expected = {"c/a": rate["c_ingest_faiss"] / rate["a_raw"],
                "c/b": rate["c_ingest_faiss"] / rate["b_sentence_transformers"],
                "c embed/a": DOCS / embed_s / rate["a_raw"]}
    assert payload["ratios"] == pytest.approx(expected)
    assert 0 < results["c_ingest_faiss"]["outside_embedding_s"] == pytest.approx(
        results["c_ingest_faiss"]["seconds"] - embed_s)
    assert out.with_suffix(".png").stat().st_size > 0


def test_ray_ingest_writes_the_raw_forward_vectors(corpus: Path, tiny_bert: Path, tmp_path: Path, ray_local):
    """Run c's vectors are the encoder's own (what makes c/a a fair ratio)."""
    from retrosearch.benchmarks.ingest_speed import raw_forward, ray_ingest
    from retrosearch.core.collections import read_corpus
    from retrosearch.core.config import EncoderSettings, Settings
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index import load_index

    settings = Settings(encoder=EncoderSettings(model=str(tiny_bert), show_progress=False))
    docs = list(read_corpus(corpus))
    raw = raw_forward(docs, settings)
    assert raw["docs"] == DOCS and raw["docs_per_s"] == pytest.approx(DOCS / raw["seconds"])

    run = ray_ingest(corpus, "faiss", settings, tmp_path, workers=1)
    assert run["docs"] == run["summary"]["rows_written"] == DOCS
    ids, vectors = load_index(tmp_path / "faiss").stored_vectors()
    assert sorted(ids) == sorted(d.id for d in docs)
    expected = dict(zip((d.id for d in docs), Encoder.load(settings.encoder).encode_documents(docs)))
    assert np.allclose(np.stack([expected[i] for i in ids]), vectors, atol=1e-5)
