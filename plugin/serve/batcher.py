"""Dynamic batching: concurrent requests meet here and leave as few, evenly padded forward passes.

A request's texts are tokenized once, on one tokenizer thread (so tokenizing the next requests
overlaps the forward pass), and counted against the replica's bound (:mod:`.admission`): past it
the request is refused at once with :class:`~retrosearch.plugin.serve.admission.Overloaded`.
Admitted texts wait as single texts; one consumer thread (the only user of the model) picks the
next batch from them by token budget and length (:func:`~retrosearch.plugin.serve.scheduling.select_batch`:
the oldest text first, then those of similar length, up to ``max_batch_size`` texts and
``max_batch_tokens`` padded positions), runs one forward pass on the token ids, and answers each
request once all of its texts are done. A request's texts may thus go in different batches.

Under load, batches fill by themselves while the model computes; a lone request never waits for
company: the consumer only lingers up to ``max_wait_ms`` for more when the previous batch was
shared by several requests (the sign of concurrent clients). Health checks keep answering because
nothing here runs on the event loop.

Given a ``search`` function (an index that searches in-process, such as FAISS), requests that ask
for top-``k`` hits get them from the same consumer: one search call for all of the requests that
a batch completes with the same ``k``, instead of one call per request from another thread.

Threads: ``tokenize`` runs on the tokenizer thread only, ``encode`` and ``search`` on the consumer
thread only; futures are settled on the event loop that submitted them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retrosearch.plugin.serve.admission import QueueBudget
from retrosearch.plugin.serve.scheduling import select_batch

log = logging.getLogger(__name__)

#: ``tokenize(texts, mode) -> token ids per text``; called from the tokenizer thread only.
TokenizeFn = Callable[[Sequence[str], str], Sequence[Sequence[int]]]
#: ``encode(token_ids) -> vectors`` (rows in input order); called from the consumer thread only.
EncodeFn = Callable[[Sequence[Sequence[int]]], np.ndarray]
#: ``search(vectors, k) -> SearchHits`` of an in-process index; called from the consumer thread only.
SearchFn = Callable[[np.ndarray, int], Any]


@dataclass
class Encoded:
    """One request's rows: vectors, the token count of each text and, when the request asked for
    them and the batcher searches, its hits (``hits.ids[q]`` for its q-th text)."""

    vectors: np.ndarray
    tokens: np.ndarray
    hits: Any = None
    search_seconds: float = 0.0


@dataclass(eq=False)
class _Request:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    tokens: np.ndarray
    k: int | None
    remaining: int
    vectors: np.ndarray | None = None
    answered: bool = False  # a result or an error was sent (consumer thread)
    abandoned: bool = False  # its submit call ended: answered, or the client went away (event loop)

    @property
    def finished(self) -> bool:
        """Whether its texts still waiting can be dropped."""
        return self.answered or self.abandoned


@dataclass(eq=False)
class _Text:
    request: _Request
    row: int
    ids: Sequence[int]

    @property
    def length(self) -> int:
        return len(self.ids)


class BatcherClosed(RuntimeError):
    """The batcher was stopped; no more requests are taken."""


class DynamicBatcher:
    """Gathers concurrent ``submit`` calls into token-budgeted calls of ``encode`` (and of ``search``).

    ``budget`` bounds the texts and tokens held (default: unbounded); ``on_batch(texts, requests,
    seconds)`` is told about every forward pass (for metrics).
    """

    def __init__(
        self,
        tokenize: TokenizeFn,
        encode: EncodeFn,
        max_batch_size: int = 32,
        max_batch_tokens: int = 8192,
        max_wait_ms: float = 2.0,
        budget: QueueBudget | None = None,
        on_batch: Callable[[int, int, float], None] | None = None,
        search: SearchFn | None = None,
    ) -> None:
        if max_batch_size < 1 or max_batch_tokens < 1:
            raise ValueError("max_batch_size and max_batch_tokens must be at least 1")
        self._tokenize = tokenize
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_wait_s = max_wait_ms / 1000.0
        self.budget = budget or QueueBudget(2**62, 2**62)
        self._on_batch = on_batch
        self._search = search
        self._pending: list[_Text] = []
        self._open_requests = 0
        self._cond = threading.Condition()
        self._shared_last_batch = False
        self._closed = False
        self._tokenizer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrosearch-tokenize")
        self._thread = threading.Thread(target=self._run, name="retrosearch-batcher", daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------------------------
    @property
    def searches(self) -> bool:
        """Whether ``submit(..., k=...)`` comes back with hits."""
        return self._search is not None

    async def submit(self, texts: Sequence[str], mode: str, k: int | None = None) -> Encoded:
        """Encode ``texts`` in ``mode`` (query or passage) as part of the next batches; with ``k``
        (and a ``search`` function) also their top-``k`` hits.

        Raises :class:`~retrosearch.plugin.serve.admission.Overloaded` at once when the replica
        holds all it may, ValueError when a template leaves no room for a text, and a failed
        search's error.
        """
        if self._closed:
            raise BatcherClosed("the encoder is shutting down")
        count = len(texts)
        self.budget.admit_texts(count)
        loop = asyncio.get_running_loop()
        try:
            ids = await loop.run_in_executor(self._tokenizer, self._tokenize, texts, mode)
        except BaseException:
            self.budget.release(count, 0)
            raise
        lengths = np.fromiter((len(i) for i in ids), dtype=np.int64, count=count)
        self.budget.admit_tokens(count, int(lengths.sum()))
        request = _Request(loop=loop, future=loop.create_future(), tokens=lengths,
                           k=k if self._search is not None else None, remaining=count)
        with self._cond:
            if self._closed:
                self.budget.release(count, int(lengths.sum()))
                raise BatcherClosed("the encoder is shutting down")
            self._pending.extend(_Text(request, row, row_ids) for row, row_ids in enumerate(ids))
            self._cond.notify()
        self._open_requests += 1  # only ever changed on the event loop
        try:
            return await request.future
        finally:
            # Answered, or the client went away: either way its texts still waiting are dropped.
            request.abandoned = True
            self._open_requests -= 1

    @property
    def depth(self) -> int:
        """Requests admitted and not yet answered."""
        return self._open_requests

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish the batch in hand and end the consumer thread."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)
        self._tokenizer.shutdown(wait=False, cancel_futures=True)

    # -- the consumer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                break
            if batch:
                self._process_batch(batch)
        # Whatever still waits after close gets an answer too.
        with self._cond:
            left, self._pending = self._pending, []
        for request in dict.fromkeys(text.request for text in left):
            self._fail(request, BatcherClosed("the encoder is shutting down"))
        self.budget.release(len(left), sum(text.length for text in left))

    def _next_batch(self) -> list[_Text] | None:
        """The texts of the next batch (:func:`select_batch`); None to stop."""
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            if self._shared_last_batch and self.max_wait_s > 0:
                deadline = time.perf_counter() + self.max_wait_s
                while not self._closed and not self._enough_waiting():
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                if self._closed:
                    return None
            self._drop_finished()
            lengths = [text.length for text in self._pending]
            chosen = select_batch(lengths, self.max_batch_size, self.max_batch_tokens)
            picked = set(chosen)
            batch = [self._pending[i] for i in chosen]
            self._pending = [text for i, text in enumerate(self._pending) if i not in picked]
        self._shared_last_batch = len({id(text.request) for text in batch}) > 1
        return batch

    def _enough_waiting(self) -> bool:
        """Whether the waiting texts already fill a batch (by count or padded positions)."""
        if not self._pending or len(self._pending) >= self.max_batch_size:
            return bool(self._pending)
        return len(self._pending) * max(text.length for text in self._pending) >= self.max_batch_tokens

    def _drop_finished(self) -> None:
        """Forget waiting texts of requests already answered (failed, or their client left)."""
        dropped = [text for text in self._pending if text.request.finished]
        if dropped:
            self._pending = [text for text in self._pending if not text.request.finished]
            self.budget.release(len(dropped), sum(text.length for text in dropped))

    def _process_batch(self, batch: list[_Text]) -> None:
        try:
            self._process(batch)
        except Exception as exc:  # noqa: BLE001 - a fault here must not end the consumer: all get answers
            log.exception("a batch failed")
            for request in dict.fromkeys(text.request for text in batch):
                self._fail(request, exc)
        finally:
            self.budget.release(len(batch), sum(text.length for text in batch))

    def _process(self, batch: list[_Text]) -> None:
        started = time.perf_counter()
        requests = list(dict.fromkeys(text.request for text in batch))
        try:
            vectors = np.asarray(self._encode([text.ids for text in batch]))
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            if len(requests) > 1:
                # One bad request must not fail its neighbours: retry them one by one.
                for request in requests:
                    self._process([text for text in batch if text.request is request])
                return
            log.exception("encoding failed")
            self._fail(requests[0], exc)
            return
        completed = []
        for text, vector in zip(batch, vectors):
            request = text.request
            if request.vectors is None:
                request.vectors = np.empty((len(request.tokens), vectors.shape[1]), dtype=vectors.dtype)
            request.vectors[text.row] = vector
            request.remaining -= 1
            if request.remaining == 0:
                completed.append(request)
        found = self._search_completed(completed)
        seconds = time.perf_counter() - started
        self.budget.record_drain(len(batch), sum(text.length for text in batch), seconds)
        if self._on_batch is not None:
            self._on_batch(len(batch), len(requests), seconds)
        for request in completed:
            hits = found.get(id(request))
            if isinstance(hits, BaseException):
                self._fail(request, hits)
                continue
            encoded = Encoded(vectors=request.vectors, tokens=request.tokens)
            if hits is not None:
                encoded.hits, encoded.search_seconds = hits
            self._settle(request, result=encoded)

    def _search_completed(self, completed: list[_Request]) -> dict[int, Any]:
        """One search per distinct ``k`` over the requests this batch completed:
        ``{id(request): (its SearchHits, seconds of the shared call) or the exception}``."""
        found: dict[int, Any] = {}
        for k in dict.fromkeys(request.k for request in completed if request.k is not None):
            members = [request for request in completed if request.k == k]
            started = time.perf_counter()
            try:
                hits = self._search(np.concatenate([request.vectors for request in members]), k)
            except Exception as exc:  # noqa: BLE001 - each asking request gets the error
                found.update((id(request), exc) for request in members)
                continue
            seconds = time.perf_counter() - started
            start = 0
            for request in members:
                end = start + len(request.tokens)
                found[id(request)] = (_slice_hits(hits, start, end), seconds)
                start = end
        return found

    def _fail(self, request: _Request, error: BaseException) -> None:
        self._settle(request, error=error)

    def _settle(self, request: _Request, result: Encoded | None = None,
                error: BaseException | None = None) -> None:
        """Answer a request once (on its event loop); its texts still waiting are dropped."""
        if request.answered:
            return
        request.answered = True

        def settle() -> None:
            if request.future.done():  # the client went away and the request was cancelled
                return
            if error is not None:
                request.future.set_exception(error)
            else:
                request.future.set_result(result)

        try:
            request.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass


def _slice_hits(hits: Any, start: int, end: int) -> Any:
    """The hits of queries ``start:end`` of a batched search."""
    return replace(hits, ids=hits.ids[start:end], scores=hits.scores[start:end],
                   fields=None if hits.fields is None else hits.fields[start:end])
