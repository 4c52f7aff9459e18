"""The dynamic batcher's own logic, with a stand-in tokenizer and forward pass (the real encoder is
tested through the service in test_service.py and test_overload.py).

The stand-in forward pass can be held on an event, so what the batcher holds at each step is known
exactly: no test here depends on how fast anything runs.
"""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from retrosearch.plugin.serve.admission import Overloaded, QueueBudget
from retrosearch.plugin.serve.batcher import BatcherClosed, DynamicBatcher

FLAGS = {"query": 1, "passage": 2}
BOOM = 9


def tokenize(texts, mode):
    """One token per character; the token id says the mode (as a template would), 'boom' is poison."""
    return [[BOOM] * len(t) if t == "boom" else [FLAGS[mode]] * len(t) for t in texts]


class GatedForward:
    """Each text's vector is [its length, its token id]; every call is recorded, and while the gate is
    shut a call waits for it (``started`` says a call is in progress)."""

    def __init__(self, open_gate: bool = True) -> None:
        self.gate = threading.Event()
        if open_gate:
            self.gate.set()
        self.started = threading.Event()
        self.calls: list[list[int]] = []
        self.threads: set[int] = set()

    def __call__(self, token_ids):
        self.threads.add(threading.get_ident())
        self.calls.append([len(ids) for ids in token_ids])
        self.started.set()
        assert self.gate.wait(30), "the test never opened the gate"
        if any(ids and ids[0] == BOOM for ids in token_ids):
            raise ValueError("cannot encode 'boom'")
        return np.array([[len(ids), ids[0]] for ids in token_ids], dtype=np.float32)


def batcher_with(forward, **options) -> DynamicBatcher:
    return DynamicBatcher(tokenize, forward, **{"max_batch_size": 64, "max_batch_tokens": 10_000,
                                                "max_wait_ms": 0, **options})


async def until(condition, what: str) -> None:
    """Yield to the event loop until ``condition()`` holds (a hung batcher fails after 30 s)."""
    for _ in range(30_000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never happened: {what}")


async def started(forward: GatedForward) -> None:
    assert await asyncio.to_thread(forward.started.wait, 30), "the forward pass never started"


def run(coro):
    return asyncio.run(coro)


def test_requests_waiting_behind_a_forward_pass_share_the_next_batches():
    forward = GatedForward(open_gate=False)
    batches: list[tuple[int, int]] = []
    batcher = batcher_with(forward, on_batch=lambda t, r, s: batches.append((t, r)))

    async def main():
        first = asyncio.create_task(batcher.submit(["a", "bb"], "query"))
        await started(forward)
        texts = [["x" * (i + 1), "y" * (i + 2)] for i in range(40)]
        rest = [asyncio.create_task(batcher.submit(t, "query")) for t in texts]
        await until(lambda: batcher.depth == 41, "all 41 requests queued")
        forward.gate.set()
        return texts, await asyncio.gather(*rest), await first

    texts, results, first = run(main())
    batcher.close()
    for request, result in zip(texts, results):
        assert result.vectors[:, 0].tolist() == [len(t) for t in request]
        assert result.tokens.tolist() == [len(t) for t in request]
    assert first.vectors[:, 0].tolist() == [1, 2]
    # The 80 waiting texts went as one batch of 64 (the size limit) and one of 16.
    assert [len(call) for call in forward.calls] == [2, 64, 16]
    assert [t for t, _ in batches] == [2, 64, 16] and batches[1][1] > 1
    assert len(forward.threads) == 1  # one consumer thread only ever runs the forward pass


def test_a_lone_request_does_not_wait_for_company():
    """The linger is an hour: a lone request comes back only if the consumer does not wait for company."""
    forward = GatedForward()
    batches: list[tuple[int, int]] = []
    batcher = batcher_with(forward, max_wait_ms=3_600_000, on_batch=lambda t, r, s: batches.append((t, r)))

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
    assert forward.calls == [[len(f"alone {i}")] for i in range(5)]


def test_each_request_gets_its_own_template_even_in_a_shared_batch():
    forward = GatedForward(open_gate=False)
    batcher = batcher_with(forward)

    async def main():
        first = asyncio.create_task(batcher.submit(["warm"], "query"))
        await started(forward)
        modes = ["query" if i % 2 else "passage" for i in range(20)]
        jobs = [asyncio.create_task(batcher.submit([f"t{i}"], mode)) for i, mode in enumerate(modes)]
        await until(lambda: batcher.depth == 21, "all requests queued")
        forward.gate.set()
        await first
        return await asyncio.gather(*jobs)

    results = run(main())
    batcher.close()
    for i, result in enumerate(results):
        assert result.vectors[0, 1] == (1.0 if i % 2 else 2.0)
    assert len(forward.calls) == 2  # the 20 requests of both modes shared one forward pass


def test_one_failing_request_does_not_fail_its_neighbours():
    forward = GatedForward(open_gate=False)
    batcher = batcher_with(forward)

    async def main():
        first = asyncio.create_task(batcher.submit(["warm"], "query"))
        await started(forward)
        texts = [["boom"] if i == 3 else [f"ok{i}"] for i in range(8)]
        jobs = [asyncio.create_task(batcher.submit(t, "query")) for t in texts]
        await until(lambda: batcher.depth == 9, "all requests queued")
        forward.gate.set()
        await first
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(main())
    batcher.close()
    assert isinstance(results[3], ValueError) and "boom" in str(results[3])
    assert all(not isinstance(r, Exception) for i, r in enumerate(results) if i != 3)
    assert batcher.budget.status().texts == 0  # the failed request's texts were given back too


def test_requests_larger_than_the_batch_limit_are_split_and_reassembled_in_order():
    forward = GatedForward()
    batcher = batcher_with(forward, max_batch_size=4)

    async def main():
        return await asyncio.gather(batcher.submit(["a" * n for n in range(1, 11)], "query"),
                                    batcher.submit(["b"], "query"))

    big, small = run(main())
    batcher.close()
    assert big.vectors[:, 0].tolist() == list(range(1, 11)) and big.tokens.tolist() == list(range(1, 11))
    assert small.vectors.shape == (1, 2)
    assert all(len(call) <= 4 for call in forward.calls) and sum(map(len, forward.calls)) == 11


def test_closed_batcher_refuses_new_work():
    batcher = batcher_with(GatedForward())
    batcher.close()
    with pytest.raises(BatcherClosed):
        run(batcher.submit(["late"], "query"))


# -- overload ---------------------------------------------------------------------------------------
def test_past_the_texts_bound_a_request_is_refused_at_once_and_served_once_it_clears():
    forward = GatedForward(open_gate=False)
    batcher = batcher_with(forward, budget=QueueBudget(max_texts=5, max_tokens=10_000))

    async def main():
        first = asyncio.create_task(batcher.submit(["aa", "bb"], "query"))  # in the forward pass
        await started(forward)
        second = asyncio.create_task(batcher.submit(["c", "d", "e"], "query"))  # waiting: 5 texts held
        await until(lambda: batcher.depth == 2, "the second request queued")
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(["f"], "query")
        held = batcher.budget.status()
        forward.gate.set()
        await asyncio.gather(first, second)
        after = await batcher.submit(["f"], "query")
        return refused.value, held, after

    refused, held, after = run(main())
    batcher.close()
    assert refused.reason == "texts" and refused.retry_after_s >= 1 and "max_queued_texts" in refused.message
    assert (held.texts, held.tokens, held.fill) == (5, 7, 1.0)  # the refused request took nothing
    assert after.vectors[:, 0].tolist() == [1]
    assert batcher.budget.status().texts == 0 and batcher.budget.status().tokens == 0


def test_past_the_tokens_bound_a_request_is_refused_and_its_texts_given_back():
    forward = GatedForward(open_gate=False)
    batcher = batcher_with(forward, budget=QueueBudget(max_texts=100, max_tokens=20))

    async def main():
        first = asyncio.create_task(batcher.submit(["x" * 10], "passage"))
        await started(forward)
        second = asyncio.create_task(batcher.submit(["y" * 8], "passage"))
        await until(lambda: batcher.depth == 2, "the second request queued")
        with pytest.raises(Overloaded) as refused:
            await batcher.submit(["z" * 5], "passage")
        held = batcher.budget.status()
        forward.gate.set()
        await asyncio.gather(first, second)
        return refused.value, held

    refused, held = run(main())
    batcher.close()
    assert refused.reason == "tokens" and refused.retry_after_s >= 1
    assert "max_queued_tokens" in refused.message
    assert (held.texts, held.tokens) == (2, 18)


def test_a_request_larger_than_the_bound_runs_when_nothing_else_is_held():
    batcher = batcher_with(GatedForward(), budget=QueueBudget(max_texts=2, max_tokens=5))
    result = run(batcher.submit(["abc", "defg", "h"], "query"))
    batcher.close()
    assert result.vectors[:, 0].tolist() == [3, 4, 1]


def test_retry_after_is_the_time_to_drain_the_excess_at_the_recent_rate():
    budget = QueueBudget(max_texts=500, max_tokens=1_000_000)
    budget.record_drain(100, 1000, 1.0)  # 100 texts/s
    budget.admit_texts(500)
    with pytest.raises(Overloaded) as refused:
        budget.admit_texts(300)
    assert refused.value.retry_after_s == 3  # 300 texts must drain first, at 100/s
    budget.release(500, 0)
    fresh = QueueBudget(max_texts=1, max_tokens=10)
    fresh.admit_texts(1)
    with pytest.raises(Overloaded) as unknown_rate:
        fresh.admit_texts(1)
    assert unknown_rate.value.retry_after_s == 1  # no batch yet: the least hint


def test_abandoned_requests_give_their_waiting_texts_back():
    forward = GatedForward(open_gate=False)
    batcher = batcher_with(forward, budget=QueueBudget(max_texts=10, max_tokens=1000))

    async def main():
        first = asyncio.create_task(batcher.submit(["aa"], "query"))
        await started(forward)
        gone = asyncio.create_task(batcher.submit(["b", "c", "d"], "query"))
        await until(lambda: batcher.depth == 2, "the second request queued")
        gone.cancel()  # the client went away
        await until(lambda: batcher.depth == 1, "the cancelled request ended")
        forward.gate.set()
        await first
        await batcher.submit(["e"], "query")  # the next batch drops the abandoned texts first

    run(main())
    batcher.close()
    assert batcher.budget.status().texts == 0
    assert forward.calls == [[2], [1]]  # "b", "c", "d" never reached the forward pass


# -- in-process search ------------------------------------------------------------------------------
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
    forward, search = GatedForward(open_gate=False), TopK()
    batcher = batcher_with(forward, search=search)
    assert batcher.searches

    async def main():
        first = asyncio.create_task(batcher.submit(["warm"], "query"))
        await started(forward)
        jobs = [asyncio.create_task(batcher.submit(["x" * (i + 1), "y" * (i + 30)], "query", k=2 + i % 2))
                for i in range(20)]
        jobs.append(asyncio.create_task(batcher.submit(["no hits wanted"], "query")))
        await until(lambda: batcher.depth == 22, "all requests queued")
        forward.gate.set()
        await first
        return await asyncio.gather(*jobs)

    *asked, plain = run(main())
    batcher.close()
    for i, result in enumerate(asked):
        k = 2 + i % 2
        # Each request gets the hits of its own texts, in order, with its own k.
        assert result.hits.ids == [[f"{i + 1}-{r}" for r in range(k)], [f"{i + 30}-{r}" for r in range(k)]]
        assert result.search_seconds >= 0.0
    assert plain.hits is None
    # One batch completed the 20 requests: one search per distinct k, from the consumer thread.
    assert sorted(search.calls) == [(20, 2), (20, 3)]
    assert search.threads == forward.threads and len(search.threads) == 1


def test_a_failed_search_fails_only_the_requests_that_asked_for_it():
    batcher = batcher_with(GatedForward(), search=TopK())

    async def main():
        ks = [13 if i == 2 else (None if i == 3 else 5) for i in range(6)]
        jobs = [batcher.submit([f"q{i}"], "query", k=k) for i, k in enumerate(ks)]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = run(main())
    batcher.close()
    assert isinstance(results[2], RuntimeError) and "unlucky" in str(results[2])
    assert results[3].hits is None and results[3].vectors.shape == (1, 2)
    assert all(len(results[i].hits.ids[0]) == 5 for i in (0, 1, 4, 5))


def test_without_a_search_function_k_is_ignored():
    batcher = batcher_with(GatedForward(), max_batch_size=4)
    assert not batcher.searches
    result = run(batcher.submit(["a"], "query", k=10))
    batcher.close()
    assert result.hits is None and result.vectors.shape == (1, 2)
