"""The dynamic batcher's own logic, with a stand-in encode function (the real encoder is tested
through the service in test_service.py)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from retrosearch.plugin.serve.batcher import BatcherClosed, DynamicBatcher


class SlowEncoder:
    """Each text becomes [len(text), mode flag]; every call takes ``seconds`` and is recorded."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds
        self.calls: list[tuple[list[str], str]] = []
        self.threads: set[int] = set()

    def __call__(self, texts, mode):
        self.threads.add(threading.get_ident())
        self.calls.append((list(texts), mode))
        if any(t == "boom" for t in texts):
            raise ValueError("cannot encode 'boom'")
        time.sleep(self.seconds)
        flag = 1.0 if mode == "query" else 2.0
        vectors = np.array([[len(t), flag] for t in texts], dtype=np.float32)
        return vectors, np.array([len(t) for t in texts])


def run(coro):
    return asyncio.run(coro)


def test_concurrent_requests_share_forward_passes_and_get_their_own_rows():
    encoder = SlowEncoder(0.05)
    batches: list[tuple[int, int]] = []
    batcher = DynamicBatcher(encoder, max_batch_size=64, max_wait_ms=5, on_batch=lambda t, r, s: batches.append((t, r)))

    async def main():
        texts = [["x" * (i + 1), "y" * (i + 2)] for i in range(40)]
        results = await asyncio.gather(*(batcher.submit(t, "query") for t in texts))
        return texts, results

    texts, results = run(main())
    batcher.close()
    for request, result in zip(texts, results):
        assert result.vectors[:, 0].tolist() == [len(t) for t in request]
        assert result.tokens.tolist() == [len(t) for t in request]
    # 40 requests of 2 texts: far fewer forward passes than requests, none above the size limit.
    assert len(encoder.calls) < 10
    assert all(len(call) <= 64 for call, _ in encoder.calls)
    assert sum(t for t, _ in batches) == 80 and max(r for _, r in batches) > 1
    assert len(encoder.threads) == 1  # one consumer thread only ever touches the encoder


def test_a_lone_request_does_not_wait_for_company():
    """The linger is an hour: a lone request comes back only if the consumer does not wait for company."""
    encoder = SlowEncoder(0.0)
    batches: list[tuple[int, int]] = []
    batcher = DynamicBatcher(encoder, max_batch_size=32, max_wait_ms=3_600_000,
                             on_batch=lambda t, r, s: batches.append((t, r)))

    async def main():
        for i in range(5):
            # The timeout only keeps a broken batcher from hanging the test run: it is 1/60 of the linger.
            result = await asyncio.wait_for(batcher.submit([f"alone {i}"], "query"), timeout=60)
            assert result.vectors[:, 0].tolist() == [len(f"alone {i}")]

    try:
        run(main())
    finally:
        batcher.close()
    assert batches == [(1, 1)] * 5  # each request was its own forward pass, none held back
    assert [texts for texts, _ in encoder.calls] == [[f"alone {i}"] for i in range(5)]


def test_modes_are_never_mixed_in_one_batch():
    encoder = SlowEncoder(0.02)
    batcher = DynamicBatcher(encoder, max_batch_size=64, max_wait_ms=5)

    async def main():
        jobs = [batcher.submit([f"t{i}"], "query" if i % 2 else "passage") for i in range(20)]
        return await asyncio.gather(*jobs)

    results = run(main())
    batcher.close()
    for i, result in enumerate(results):
        assert result.vectors[0, 1] == (1.0 if i % 2 else 2.0)
    for texts, mode in encoder.calls:
        assert mode in ("query", "passage") and texts


def test_one_failing_request_does_not_fail_its_neighbours():
    encoder = SlowEncoder(0.02)
    batcher = DynamicBatcher(encoder, max_batch_size=64, max_wait_ms=20)

    async def main():
        jobs = [batcher.submit(["boom"] if i == 3 else [f"ok{i}"], "query") for i in range(8)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(main())
    batcher.close()
    assert isinstance(results[3], ValueError) and "boom" in str(results[3])
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)


def test_requests_larger_than_the_batch_limit_still_run_alone():
    encoder = SlowEncoder(0.0)
    batcher = DynamicBatcher(encoder, max_batch_size=4, max_wait_ms=0)

    async def main():
        return await asyncio.gather(batcher.submit(["a"] * 10, "query"), batcher.submit(["b"], "query"))

    big, small = run(main())
    batcher.close()
    assert big.vectors.shape == (10, 2) and small.vectors.shape == (1, 2)


def test_closed_batcher_refuses_new_work():
    batcher = DynamicBatcher(SlowEncoder(0.0), max_batch_size=4)
    batcher.close()
    with pytest.raises(BatcherClosed):
        run(batcher.submit(["late"], "query"))


class TopK:
    """Stands in for an index: the hits of a query vector [length, flag] are ids "<length>-<rank>"."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self.threads: set[int] = set()

    def __call__(self, vectors, k):
        from retrosearch.core.index.base import SearchHits

        self.threads.add(threading.get_ident())
        self.calls.append((len(vectors), k))
        if k == 13:
            raise RuntimeError("k=13 is unlucky")
        ids = [[f"{int(v[0])}-{r}" for r in range(k)] for v in vectors]
        return SearchHits(ids=ids, scores=[[float(-r) for r in range(k)] for _ in vectors])


def test_requests_asking_for_hits_share_one_search_per_k():
    encoder, search = SlowEncoder(0.05), TopK()
    batcher = DynamicBatcher(encoder, max_batch_size=64, max_wait_ms=10, search=search)
    assert batcher.searches

    async def main():
        jobs = [batcher.submit(["x" * (i + 1), "y" * (i + 30)], "query", k=2 + i % 2) for i in range(20)]
        jobs.append(batcher.submit(["no hits wanted"], "query"))
        return await asyncio.gather(*jobs)

    *asked, plain = run(main())
    batcher.close()
    for i, result in enumerate(asked):
        k = 2 + i % 2
        # Each request gets the hits of its own texts, in order, with its own k.
        assert result.hits.ids == [[f"{i + 1}-{r}" for r in range(k)], [f"{i + 30}-{r}" for r in range(k)]]
        assert result.search_seconds >= 0.0
    assert plain.hits is None
    # Far fewer searches than requests: one per distinct k per batch, from the consumer thread.
    assert len(search.calls) < 10 and sum(n for n, _ in search.calls) == 40
    assert search.threads == encoder.threads and len(search.threads) == 1


def test_a_failed_search_fails_only_the_requests_that_asked_for_it():
    batcher = DynamicBatcher(SlowEncoder(0.05), max_batch_size=64, max_wait_ms=20, search=TopK())

    async def main():
        jobs = [batcher.submit([f"q{i}"], "query", k=13 if i == 2 else (None if i == 3 else 5)) for i in range(6)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(main())
    batcher.close()
    assert isinstance(results[2], RuntimeError) and "unlucky" in str(results[2])
    assert results[3].hits is None and results[3].vectors.shape == (1, 2)
    assert all(len(results[i].hits.ids[0]) == 5 for i in (0, 1, 4, 5))


def test_without_a_search_function_k_is_ignored():
    batcher = DynamicBatcher(SlowEncoder(0.0), max_batch_size=4)
    assert not batcher.searches
    result = run(batcher.submit(["a"], "query", k=10))
    batcher.close()
    assert result.hits is None and result.vectors.shape == (1, 2)
