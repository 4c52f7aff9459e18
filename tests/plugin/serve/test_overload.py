"""Overload through the real service (minilm, its tokenizer, FAISS, real HTTP): past the replica's
bound a request gets 429 with Retry-After at once, /metrics shows it, and the service serves again
once the work in hand is done.

The forward pass of the real engine is held on an event while the bound fills, so the service's
state is known exactly when the refused request arrives.
"""

from __future__ import annotations

import asyncio
import re
import threading

import httpx
import pytest

from tests.plugin.serve.http_helpers import serving


@pytest.fixture
def held_forward(faiss_engine, monkeypatch):
    """The engine's forward pass, waiting for ``gate`` (``started`` is set when a pass begins)."""
    gate, started = threading.Event(), threading.Event()
    real = faiss_engine.encode_ids

    def held(token_ids):
        started.set()
        assert gate.wait(120), "the test never opened the gate"
        return real(token_ids)

    monkeypatch.setattr(faiss_engine, "encode_ids", held)
    yield gate, started
    gate.set()


def metric(text: str, name: str) -> float:
    """The value of one sample of a Prometheus exposition (name with labels, exactly)."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} is not in /metrics"
    return float(match.group(1))


async def until_metric(client: httpx.AsyncClient, url: str, name: str, value: float) -> str:
    for _ in range(3000):
        text = (await client.get(f"{url}/metrics")).text
        if metric(text, name) == value:
            return text
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} never reached {value}")


def test_past_the_bound_the_service_answers_429_with_retry_after_and_recovers(faiss_engine, held_forward):
    from retrosearch.core.config import ServeSettings, Settings
    from retrosearch.plugin.serve.app import create_app

    gate, started = held_forward
    settings = Settings(serve=ServeSettings(max_queued_texts=4, max_queued_tokens=100_000))

    async def main(url: str):
        async with httpx.AsyncClient(timeout=120) as client:
            first = asyncio.create_task(client.post(f"{url}/embed", json={"texts": ["cells", "proteins"]}))
            assert await asyncio.to_thread(started.wait, 120)
            body = {"query": ["tumour", "mice"], "k": 3}
            second = asyncio.create_task(client.post(f"{url}/search", json=body))
            await until_metric(client, url, "retrosearch_queued_texts", 4.0)
            refused = await client.post(f"{url}/v1/embeddings", json={"input": "one more"})
            during = await client.get(f"{url}/metrics")
            health = await client.get(f"{url}/healthz")
            gate.set()
            answered = [(await first).status_code, (await second).status_code]
            again = await client.post(f"{url}/v1/embeddings", json={"input": "one more"})
            after = (await client.get(f"{url}/metrics")).text
            ready = await client.get(f"{url}/readyz")
            return refused, during.text, health.status_code, answered, again, after, ready.status_code

    with serving(create_app(settings, faiss_engine)) as url:
        refused, during, health, answered, again, after, ready = asyncio.run(main(url))

    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "overloaded_error" and error["code"] == "queue_full" and error["param"] is None
    assert "max_queued_texts" in error["message"]
    assert metric(during, 'retrosearch_rejected_requests_total{reason="texts"}') == 1.0
    assert metric(during, "retrosearch_queued_texts") == 4.0
    assert metric(during, "retrosearch_queue_fill") == 1.0
    assert metric(during, 'retrosearch_queue_limit{unit="texts"}') == 4.0
    assert metric(during, "retrosearch_queued_tokens") > 4  # the real tokenizer's counts, with [CLS]/[SEP]
    refusals = 'retrosearch_requests_total{endpoint="/v1/embeddings",method="POST",status="429"}'
    assert metric(during, refusals) == 1.0
    assert health == 200 and answered == [200, 200] and ready == 200
    assert again.status_code == 200 and len(again.json()["data"][0]["embedding"]) == 384
    assert metric(after, "retrosearch_queued_texts") == 0.0
    assert metric(after, "retrosearch_queued_tokens") == 0.0


def test_the_tokens_bound_counts_the_real_tokenizer_s_tokens(faiss_engine, held_forward):
    from retrosearch.core.config import ServeSettings, Settings
    from retrosearch.plugin.serve.app import create_app

    gate, started = held_forward
    settings = Settings(serve=ServeSettings(max_queued_texts=100, max_queued_tokens=40))
    long_text = " ".join(["protein"] * 50)  # far more than 40 tokens with minilm's tokenizer

    async def main(url: str):
        async with httpx.AsyncClient(timeout=120) as client:
            first = asyncio.create_task(client.post(f"{url}/embed", json={"texts": ["cells"]}))
            assert await asyncio.to_thread(started.wait, 120)
            refused = await client.post(f"{url}/embed", json={"texts": [long_text], "mode": "passage"})
            held = (await client.get(f"{url}/metrics")).text
            gate.set()
            status = (await first).status_code
            alone = await client.post(f"{url}/embed", json={"texts": [long_text], "mode": "passage"})
            return refused, held, status, alone

    with serving(create_app(settings, faiss_engine)) as url:
        refused, held, status, alone = asyncio.run(main(url))

    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "max_queued_tokens" in refused.json()["error"]["message"]
    assert metric(held, 'retrosearch_rejected_requests_total{reason="tokens"}') == 1.0
    assert metric(held, "retrosearch_queued_tokens") == 3.0  # [CLS] cells [SEP]
    assert metric(held, "retrosearch_queued_texts") == 1.0  # the refused text was given back
    # Larger than the bound on its own, it runs once nothing else is held.
    assert status == 200 and alone.status_code == 200


def test_the_command_takes_the_overload_settings():
    from retrosearch.plugin.serve.cli import parse_argv

    settings, _target, _model = parse_argv(["--model", "minilm", "--max-queued-texts", "7",
                                            "--max-queued-tokens", "900", "--max-batch-tokens", "512"])
    assert (settings.serve.max_queued_texts, settings.serve.max_queued_tokens) == (7, 900)
    assert settings.serve.max_batch_tokens == 512
