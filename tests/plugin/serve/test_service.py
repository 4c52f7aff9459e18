"""The query service over real HTTP: the CLI-started service, the openai client, curl-style bad input."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.plugin.serve.http_helpers import cli_search, free_port, run_cli, serving


@pytest.fixture(scope="module")
def cli_service(small_index: Path) -> str:
    """`retrosearch serve --index DIR --background`, stopped at the end with `retrosearch serve stop`."""
    port = free_port()
    started = run_cli("serve", "--index", str(small_index), "--port", str(port), "--background", "--wait", "300")
    assert f"http://127.0.0.1:{port}" in started.stdout
    yield f"http://127.0.0.1:{port}"
    stopped = run_cli("serve", "stop", "--port", str(port))
    assert "stopped" in stopped.stdout
    assert run_cli("serve", "status", "--port", str(port), check=False).returncode == 1


def test_search_equals_cli_search(cli_service: str, small_index: Path, small_queries: list[str]):
    queries = small_queries[:6]
    expected = cli_search("--index", str(small_index), "-k", "10", *queries)
    response = httpx.post(f"{cli_service}/search", json={"query": queries, "k": 10}, timeout=60)
    assert response.status_code == 200
    got = response.json()["results"]
    assert [r["query"] for r in got] == queries
    for mine, theirs in zip(got, expected):
        assert [h["id"] for h in mine["hits"]] == [h["id"] for h in theirs["hits"]]
        assert np.allclose([h["score"] for h in mine["hits"]], [h["score"] for h in theirs["hits"]], atol=1e-4)
        assert [h["rank"] for h in mine["hits"]] == list(range(1, 11))
    one = httpx.post(f"{cli_service}/search", json={"query": queries[0], "k": 3}, timeout=60).json()
    assert [h["id"] for h in one["hits"]] == [h["id"] for h in expected[0]["hits"][:3]]


def test_openai_client_gets_the_embed_vectors(cli_service: str, small_queries: list[str]):
    import openai

    texts = small_queries[:5]
    client = openai.OpenAI(base_url=f"{cli_service}/v1", api_key="not-checked-here")
    # The openai client asks for base64 unless told otherwise; try both encodings.
    as_base64 = client.embeddings.create(input=texts, model="minilm")
    as_float = client.embeddings.create(input=texts[0], model="minilm", encoding_format="float")
    embed = httpx.post(f"{cli_service}/embed", json={"texts": texts, "mode": "query"}, timeout=60).json()
    reference = np.asarray(embed["vectors"], dtype=np.float32)
    assert embed["dim"] == 384 and embed["model"] == "minilm"
    got = np.asarray([d.embedding for d in sorted(as_base64.data, key=lambda d: d.index)], dtype=np.float32)
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999
    assert np.allclose(as_float.data[0].embedding, reference[0], atol=1e-6)
    assert as_base64.model == "minilm" and as_base64.usage.prompt_tokens > len(texts)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(input="x", model="some-other-model")


def test_embed_modes_are_the_runtime_templates(faiss_engine, small_scifact: Path):
    from retrosearch.core.collections.records import Document
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app

    encoder = faiss_engine.encoder
    texts = ["protein folding in cells", "a study of tumour growth in mice"]
    with serving(create_app(Settings(), faiss_engine)) as url:
        query = httpx.post(f"{url}/embed", json={"texts": texts}).json()["vectors"]
        passage = httpx.post(f"{url}/embed", json={"texts": texts, "mode": "passage"}).json()["vectors"]
    assert np.allclose(query, encoder.encode_queries(texts), atol=1e-5)
    assert np.allclose(passage, encoder.encode_documents([Document(id="", text=t) for t in texts]), atol=1e-5)


def test_dimensions_request_equals_the_encoder_cut_to_that_dimension(faiss_engine):
    """``dimensions`` in /v1/embeddings gives the vectors of the encoder set to ``dimensions``: cut, then
    renormalised (the OpenAI API's meaning)."""
    from retrosearch.core.config import EncoderSettings, Settings
    from retrosearch.core.encoder import Encoder
    from retrosearch.plugin.serve.app import create_app

    texts = ["protein folding in cells", "a study of tumour growth in mice"]
    settings = faiss_engine.encoder.settings.model_copy(update={"dimensions": 128, "show_progress": False})
    cut = Encoder.load(EncoderSettings.model_validate(settings.model_dump()), workload="queries")
    with serving(create_app(Settings(), faiss_engine)) as url:
        body = httpx.post(f"{url}/v1/embeddings", json={"input": texts, "dimensions": 128}).json()
    served = np.asarray([d["embedding"] for d in body["data"]], dtype=np.float32)
    assert served.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, cut.encode_queries(texts), atol=1e-5)
    assert cut.index_meta().dim == 128 and cut.fingerprint != faiss_engine.encoder.fingerprint


def test_openai_embeddings_take_the_template_from_input_type(tmp_path: Path):
    """``input_type`` picks the template per request; without it the server's --embeddings-mode applies."""
    from retrosearch.core.config import EncoderSettings, ServeSettings, Settings
    from retrosearch.plugin.serve.app import create_app
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    settings = Settings(encoder=EncoderSettings(model="minilm", query_template="query: {text}",
                                                passage_template="passage: {text}"),
                        serve=ServeSettings(embeddings_mode="passage"))
    engine = QueryEngine.open(settings, IndexTarget())
    texts = ["protein folding in cells"]
    with serving(create_app(settings, engine)) as url:
        embed = {m: httpx.post(f"{url}/embed", json={"texts": texts, "mode": m}).json()["vectors"][0]
                 for m in ("query", "passage")}
        openai_style = {m: httpx.post(f"{url}/v1/embeddings", json={"input": texts, "input_type": m}).json()
                        ["data"][0]["embedding"] for m in ("query", "passage")}
        default = httpx.post(f"{url}/v1/embeddings", json={"input": texts}).json()["data"][0]["embedding"]
    assert not np.allclose(embed["query"], embed["passage"], atol=1e-3)
    for mode in ("query", "passage"):
        assert np.allclose(openai_style[mode], embed[mode], atol=1e-5)
    assert np.allclose(default, embed["passage"], atol=1e-5)


def _limited_settings(**serve):
    from retrosearch.core.config import ServeSettings, Settings

    return Settings(serve=ServeSettings(**{"max_texts": 3, "max_chars": 200, "max_k": 50, **serve}))


BAD_INPUT = [
    # (endpoint, body, status, the field the error names)
    ("/embed", {"texts": []}, 422, "texts"),
    ("/embed", {"texts": ["ok", "   "]}, 422, "texts"),
    ("/embed", {"texts": ["a", "b", "c", "d"]}, 413, "texts"),
    ("/embed", {"texts": ["x" * 201]}, 413, "texts[0]"),
    ("/embed", {"texts": ["ok"], "mode": "document"}, 422, "mode"),
    ("/embed", {"texts": ["ok"], "colour": "red"}, 422, "colour"),
    ("/embed", {"texts": "not a list"}, 422, "texts"),
    ("/search", {"query": "ok", "k": 0}, 422, "k"),
    ("/search", {"query": "ok", "k": 51}, 422, "k"),
    ("/search", {"query": "ok", "k": "ten"}, 422, "k"),
    ("/search", {"query": ""}, 422, "query"),
    ("/search", {"query": "x" * 201}, 413, "query"),
    ("/search", {"query": ["a", "b", "c", "d"]}, 413, "query"),
    ("/search", {"query": "ok", "filter": {"term": {"lang": "en"}}}, 400, "filter"),
    ("/search", {"query": "ok", "filter": "lang:en"}, 422, "filter"),
    ("/search", {"k": 3}, 422, "query"),
    ("/search", {"query": "ok", "mode": "sparse"}, 422, "mode"),
    ("/search", {"query": "ok", "mode": "bm25"}, 400, "mode"),  # FAISS has no lexical search
    ("/search", {"query": "ok", "mode": "hybrid", "hybrid_weight": 2}, 422, "hybrid_weight"),
    ("/v1/embeddings", {"input": ""}, 422, "input"),
    ("/v1/embeddings", {"input": ["x"] * 4}, 413, "input"),
    ("/v1/embeddings", {"input": "ok", "encoding_format": "int8"}, 422, "encoding_format"),
    ("/v1/embeddings", {"input": "ok", "dimensions": 385}, 400, "dimensions"),  # minilm gives 384
    ("/v1/embeddings", {"input": "ok", "model": "gpt-4"}, 404, "model"),
    ("/v1/embeddings", {"input": "ok", "input_type": "document"}, 422, "input_type"),
]


def test_bad_input_gets_a_4xx_naming_the_field(faiss_engine):
    from retrosearch.plugin.serve.app import create_app

    with serving(create_app(_limited_settings(), faiss_engine)) as url:
        for endpoint, body, status, param in BAD_INPUT:
            response = httpx.post(url + endpoint, json=body, timeout=30)
            assert response.status_code == status, (endpoint, body, response.text)
            error = response.json()["error"]
            assert error["param"] == param, (endpoint, body, error)
            assert error["message"] and error["type"]
        broken = httpx.post(f"{url}/embed", content=b'{"texts": [', headers={"content-type": "application/json"})
        assert broken.status_code == 422 and "json" in broken.json()["error"]["code"]
        # curl -d sends a form content type; the body is still read as the JSON it is.
        curl_style = httpx.post(f"{url}/embed", content=b'{"texts": ["ok"]}', headers={"content-type": "application/x-www-form-urlencoded"})
        assert curl_style.status_code == 200 and len(curl_style.json()["vectors"][0]) == 384
        assert httpx.get(f"{url}/nowhere").status_code == 404
        assert httpx.get(f"{url}/search").status_code == 405


def test_api_key_is_enforced_and_never_logged(faiss_engine, monkeypatch, caplog):
    from retrosearch.plugin.serve.app import create_app

    key = f"secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("RETROSEARCH_TEST_KEY", key)
    caplog.set_level(logging.DEBUG)
    with serving(create_app(_limited_settings(api_key_env="RETROSEARCH_TEST_KEY"), faiss_engine)) as url:
        body = {"query": "protein", "k": 3}
        assert httpx.post(f"{url}/search", json=body).status_code == 401
        wrong = httpx.post(f"{url}/search", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        good = httpx.post(f"{url}/search", json=body, headers={"Authorization": f"Bearer {key}"})
        assert good.status_code == 200 and len(good.json()["hits"]) == 3
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 200
    assert key not in caplog.text
    monkeypatch.delenv("RETROSEARCH_TEST_KEY")
    with pytest.raises(ValueError, match="RETROSEARCH_TEST_KEY"):
        create_app(_limited_settings(api_key_env="RETROSEARCH_TEST_KEY"), faiss_engine)
    proc = run_cli("serve", "--model", "minilm", "--api-key-env", "RETROSEARCH_UNSET_KEY", check=False)
    assert proc.returncode == 2 and "RETROSEARCH_UNSET_KEY" in proc.stderr and "Traceback" not in proc.stderr


def test_metrics_openapi_and_info(faiss_engine):
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app

    with serving(create_app(Settings(), faiss_engine)) as url:
        for _ in range(3):
            assert httpx.post(f"{url}/search", json={"query": "cell biology"}).status_code == 200
        httpx.post(f"{url}/search", json={"query": ""})
        metrics = httpx.get(f"{url}/metrics").text
        openapi = httpx.get(f"{url}/openapi.json").json()
        docs = httpx.get(f"{url}/docs")
        info = httpx.get(f"{url}/info").json()
    assert 'retrosearch_requests_total{endpoint="/search",method="POST",status="200"} 3.0' in metrics
    assert 'retrosearch_requests_total{endpoint="/search",method="POST",status="422"} 1.0' in metrics
    assert "retrosearch_request_seconds_bucket" in metrics and "retrosearch_batch_texts_count" in metrics
    assert "retrosearch_queue_depth" in metrics
    assert {"/search", "/embed", "/v1/embeddings", "/healthz", "/readyz", "/metrics"} <= set(openapi["paths"])
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert info["model"] == "minilm" and info["dim"] == 384 and info["backend"] == "faiss" and info["documents"] > 50


def test_health_answers_while_a_batch_computes(faiss_engine, monkeypatch: pytest.MonkeyPatch):
    """/healthz answers while the consumer thread is busy with a batch.

    The engine's forward pass (encode_ids) is held at its start until the health answer is
    in: the embed request is proven to be in the encoder (not queued, not finished) when /healthz is
    asked, and /healthz cannot wait for it to finish.
    """
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app

    computing, release = threading.Event(), threading.Event()
    encode, encode_ids = faiss_engine.encode, faiss_engine.encode_ids

    def held_encode_ids(token_ids):
        computing.set()
        release.wait(120)
        return encode_ids(token_ids)

    monkeypatch.setattr(faiss_engine, "encode_ids", held_encode_ids)
    texts = ["protein structure and function in human cells"] * 20

    async def main(url: str):
        async with httpx.AsyncClient(timeout=120) as client:
            body = {"texts": texts, "mode": "passage"}
            embed = asyncio.create_task(client.post(f"{url}/embed", json=body))
            try:
                reached = await asyncio.to_thread(computing.wait, 60)
                assert reached, "the embed request never reached the encoder"
                health = await client.get(f"{url}/healthz", timeout=30)
                still_computing = not embed.done()
            finally:
                release.set()
            return health, still_computing, await embed

    with serving(create_app(Settings(), faiss_engine)) as url:
        health, still_computing, embed = asyncio.run(main(url))
    assert health.status_code == 200 and still_computing
    assert embed.status_code == 200 and len(embed.json()["vectors"]) == len(texts)
    expected = encode(texts, "passage")[0]
    assert np.allclose(embed.json()["vectors"], expected, atol=1e-5)


def test_embedding_only_service():
    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    engine = QueryEngine.open(Settings(), IndexTarget(), model="minilm")
    with serving(create_app(Settings(), engine)) as url:
        assert httpx.get(f"{url}/readyz").json()["backend"] is None
        assert len(httpx.post(f"{url}/embed", json={"texts": ["x"]}).json()["vectors"][0]) == 384
        missing = httpx.post(f"{url}/search", json={"query": "x"})
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_index"


def test_model_that_cannot_load_is_a_clear_error(tmp_path: Path):
    proc = run_cli("serve", "--model", str(tmp_path / "no-such-model"), "--port", str(free_port()), check=False)
    assert proc.returncode == 2 and "no-such-model" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("serve", "--index", str(tmp_path), check=False)
    assert proc.returncode == 2 and "meta.json" in proc.stderr


def test_ready_only_after_loading(small_index: Path):
    """/healthz answers at once; /readyz says 503 'loading' until the engine is open."""
    import threading

    from retrosearch.core.config import Settings
    from retrosearch.plugin.serve.app import create_app
    from retrosearch.plugin.serve.engine import IndexTarget, QueryEngine

    gate = threading.Event()

    def slow_load():
        gate.wait(60)
        return QueryEngine.open(Settings(), IndexTarget(index_dir=small_index))

    with serving(create_app(Settings(), slow_load)) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        loading = httpx.get(f"{url}/readyz")
        assert loading.status_code == 503 and "loading" in loading.json()["error"]["message"]
        assert httpx.post(f"{url}/search", json={"query": "x"}).status_code == 503
        gate.set()
        for _ in range(600):
            if httpx.get(f"{url}/readyz").status_code == 200:
                break
            import time

            time.sleep(0.1)
        assert httpx.post(f"{url}/search", json={"query": "cells"}).status_code == 200


@pytest.mark.skipif(os.environ.get("RETROSEARCH_SKIP_RAY_SERVE") == "1", reason="Ray Serve test disabled")
def test_ray_serve_mode_answers_like_the_plain_service(cli_service: str, small_index: Path, small_queries: list[str]):
    """`retrosearch serve --ray` runs the same app on Ray Serve (one replica, local Ray)."""
    port = free_port()
    env = {"RETROSEARCH_CACHE": os.environ.get("RETROSEARCH_CACHE", str(Path.home() / ".cache" / "retrosearch"))}
    run_cli("serve", "--index", str(small_index), "--ray", "--port", str(port), "--background", "--wait", "400", env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        body = {"query": small_queries[:4], "k": 10}
        ray_hits = httpx.post(f"{url}/search", json=body, timeout=60).json()["results"]
        plain_hits = httpx.post(f"{cli_service}/search", json=body, timeout=60).json()["results"]
        for a, b in zip(ray_hits, plain_hits):
            assert [h["id"] for h in a["hits"]] == [h["id"] for h in b["hits"]]
            assert np.allclose([h["score"] for h in a["hits"]], [h["score"] for h in b["hits"]], atol=1e-4)
        assert httpx.get(f"{url}/healthz").status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
        assert "retrosearch_batch_texts" in metrics
        # The replica runs the same batcher, within the same bound as the plain service.
        assert 'retrosearch_queue_limit{unit="texts"} 1024.0' in metrics
    finally:
        run_cli("serve", "stop", "--port", str(port))
    # Nothing is left holding the port: Ray's HAProxy (and any that a reload started) went with it.
    deadline = time.monotonic() + 15
    while _accepts(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not _accepts(port), f"port {port} still accepts connections after `serve stop`"


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
