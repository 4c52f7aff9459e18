"""The pipeline with an OpenSearch sink: the index holds every document, searchable with the final model."""

from __future__ import annotations

import copy
import uuid

import pytest

from retrosearch.pipeline.config import parse_config
from retrosearch.pipeline.runner import run
from tests.pipeline.conftest import corpus_size, tiny_pipeline


@pytest.mark.integration
def test_opensearch_sink(tmp_path, train_test_collection, tiny_encoder, ray_local, opensearch_url):
    from retrosearch.plugin.config import OpenSearchSettings
    from retrosearch.plugin.encoder import Encoder
    from retrosearch.plugin.index.opensearch_index import OpenSearchIndex

    name = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    data = tiny_pipeline(train_test_collection, tiny_encoder, tmp_path / "work")
    data["stages"]["pretrain"] = {"method": "none"}
    data["stages"]["evaluate"] = {"enabled": False}
    data["stages"]["ingest"] = {
        "sink": "opensearch", "workers": 1, "chunk_rows": 40,
        "opensearch": {"url": opensearch_url, "index": name, "replicas": 0},
    }
    lines: list[str] = []
    records = {r.name: r for r in run(parse_config(copy.deepcopy(data)), lines.append)}
    settings = OpenSearchSettings(url=opensearch_url, index=name)
    index = OpenSearchIndex.open(settings)
    try:
        assert [records[n].status for n in ("pretrain", "evaluate")] == ["off", "off"], lines
        assert index.count() == corpus_size(train_test_collection) == records["ingest"].figures["docs"]
        model = records["finetune"].outputs["model"]
        assert index.meta.model_fingerprint == Encoder.load(model).fingerprint
        encoder = Encoder.load(model)
        hits = index.search(encoder.encode_queries(["cancer cells"]), 5)
        assert len(hits.ids[0]) == 5
        assert records["serve"].outputs["serve"] == (
            f"retrosearch serve --index-name {name} --opensearch-url {opensearch_url} --host 127.0.0.1 --port 8000"
        )
        assert f"--index-name {name}" in records["serve"].outputs["connect"]
        again = {r.name: r.status for r in run(parse_config(copy.deepcopy(data)), lines.append)}
        assert again["ingest"] == "skipped"  # the index is there: the manifest matches
    finally:
        index.delete()
