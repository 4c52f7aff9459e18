"""The pipeline with an OpenSearch sink: the index holds every document, searchable with the final model;
with ``stages.serve.service_url`` a running service is connected, and OpenSearch's own neural query
then answers with the pipeline's model."""

from __future__ import annotations

import copy
import uuid

import numpy as np
import pytest

from retrosearch.pipeline.config import parse_config
from retrosearch.pipeline.runner import run
from retrosearch.core.collections.records import Document
from retrosearch.core.opensearch.pipelines import ingest_pipeline_name, search_pipeline_name
from tests.conftest import ml_settings_lock, remove_ml_models
from tests.pipeline.conftest import corpus_size, tiny_pipeline
from tests.plugin.serve.http_helpers import serving


@pytest.mark.integration
def test_opensearch_sink_and_connect(tmp_path, train_test_collection, tiny_encoder, ray_local, ml_url):
    from retrosearch.core.config import OpenSearchSettings, Settings
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index.opensearch_index import OpenSearchIndex

    name = f"pipeline-test-{uuid.uuid4().hex[:8]}"
    data = tiny_pipeline(train_test_collection, tiny_encoder, tmp_path / "work")
    data["stages"]["pretrain"] = {"method": "none"}
    data["stages"]["evaluate"] = {"enabled": False}
    data["stages"]["ingest"] = {
        "sink": "opensearch", "workers": 1, "chunk_rows": 40,
        "opensearch": {"url": ml_url, "index": name, "replicas": 0},
    }
    lines: list[str] = []
    records = {r.name: r for r in run(parse_config(copy.deepcopy(data)), lines.append)}
    settings = OpenSearchSettings(url=ml_url, index=name)
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
            f"retrosearch serve --index-name {name} --opensearch-url {ml_url} --host 127.0.0.1 --port 8000"
        )
        assert f"--index-name {name}" in records["serve"].outputs["connect"]
        again = {r.name: r.status for r in run(parse_config(copy.deepcopy(data)), lines.append)}
        assert again["ingest"] == "skipped"  # the index is there: the manifest matches

        # The connect stage: a service over the index, connected to OpenSearch by the pipeline.
        from retrosearch.plugin.serve.app import create_app
        from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

        serve_settings = Settings(opensearch=OpenSearchSettings(url=ml_url))
        engine = QueryEngine.open(serve_settings, IndexTarget(index_name=name))
        with serving(create_app(serve_settings, engine)) as url:
            try:
                data["stages"]["serve"] = {"service_url": url}
                with ml_settings_lock():
                    connected = {r.name: r for r in run(parse_config(copy.deepcopy(data)), lines.append)}
                assert connected["ingest"].status == "skipped" and connected["serve"].status == "ran", lines
                assert connected["serve"].outputs["connected"] == url
                settings_now = index.client.indices.get_settings(index=name)[name]["settings"]["index"]
                assert settings_now["search"]["default_pipeline"] == search_pipeline_name(name)
                assert settings_now["default_pipeline"] == ingest_pipeline_name(name)
                # OpenSearch's neural query as users send it, with no model id: the index's pipeline names ours.
                field = index.settings.vector_field
                answer = index.client.search(index=name, body={
                    "size": 5, "_source": False, "query": {"neural": {field: {"query_text": "cancer cells", "k": 5}}},
                })
                assert len(answer["hits"]["hits"]) == 5
                # A document indexed without a vector is embedded by OpenSearch calling the service:
                # the very vector the pipeline's model gives (the tiny model's vectors of different
                # texts lie close together, so they are compared element by element).
                doc = {"title": "Vitamin D", "text": "Supplementation raised bone density."}
                index.client.index(index=name, id="via-pipeline", body=doc, refresh=True)
                stored = index.client.get(index=name, id="via-pipeline")["_source"][field]
                expected = encoder.encode_documents([Document(id="via-pipeline", **doc)])[0]
                assert np.allclose(stored, expected, atol=1e-5)
            finally:
                remove_ml_models(index.client, url)
    finally:
        index.delete()
        index.client.search_pipeline.delete(id=search_pipeline_name(name), ignore=[404])
        index.client.ingest.delete_pipeline(id=ingest_pipeline_name(name), ignore=[404])
