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
    encoder = SlowEncoder(0.0)
    batcher = DynamicBatcher(encoder, max_batch_size=32, max_wait_ms=500)

    async def main():
        started = time.perf_counter()
        for _ in range(5):
            await batcher.submit(["hello"], "query")
        return (time.perf_counter() - started) / 5

    per_request = run(main())
    batcher.close()
    # A 500 ms wait would show; sequential requests are answered at once.
    assert per_request < 0.1


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
