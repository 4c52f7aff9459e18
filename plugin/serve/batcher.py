"""Dynamic batching: concurrent requests meet here and leave as one forward pass.

Requests from the event loop are queued; one consumer thread (the only user of the encoder and
its tokenizer, which are not safe to share between threads) takes everything that is waiting,
up to ``max_batch_size`` texts, encodes it in one call and hands each request its rows back on
the event loop. While the model computes, new requests pile up, so under load batches fill by
themselves; a lone request never waits for company: the consumer only lingers up to
``max_wait_ms`` for more when the previous batch was shared by several requests (the sign of
concurrent clients). Health checks keep answering because nothing here runs on the event loop.

Given a ``search`` function (an index that searches in-process, such as FAISS), requests that ask
for top-``k`` hits get them from the same consumer: one search call for all of the batch's
queries that share a ``k``, right after their forward pass, instead of one call per request from
another thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: ``encode(texts, mode) -> (vectors, token_counts)``; called from the consumer thread only.
EncodeFn = Callable[[Sequence[str], str], tuple[np.ndarray, np.ndarray]]
#: ``search(vectors, k) -> SearchHits`` of an in-process index; called from the consumer thread only.
SearchFn = Callable[[np.ndarray, int], Any]


@dataclass
class Encoded:
    """One request's rows of a batch: vectors, the token count of each text and, when the request
    asked for them and the batcher searches, its hits (``hits.ids[q]`` for its q-th text)."""

    vectors: np.ndarray
    tokens: np.ndarray
    hits: Any = None
    search_seconds: float = 0.0


@dataclass
class _Item:
    texts: Sequence[str]
    mode: str
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    k: int | None = None
    queued_at: float = field(default_factory=time.perf_counter)


class BatcherClosed(RuntimeError):
    """The batcher was stopped; no more requests are taken."""


class DynamicBatcher:
    """Gathers concurrent ``submit`` calls into batched calls of ``encode`` (and of ``search``).

    ``on_batch(texts, requests, seconds)`` is told about every batch (for metrics).
    """

    def __init__(
        self,
        encode: EncodeFn,
        max_batch_size: int = 32,
        max_wait_ms: float = 2.0,
        on_batch: Callable[[int, int, float], None] | None = None,
        search: SearchFn | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self._on_batch = on_batch
        self._search = search
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._held: _Item | None = None
        self._shared_last_batch = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="retrosearch-batcher", daemon=True)
        self._thread.start()

    # -- the event loop's side ------------------------------------------------------------------
    @property
    def searches(self) -> bool:
        """Whether ``submit(..., k=...)`` comes back with hits."""
        return self._search is not None

    async def submit(self, texts: Sequence[str], mode: str, k: int | None = None) -> Encoded:
        """Encode ``texts`` in ``mode`` (query or passage) as part of the next batch; with ``k``
        (and a ``search`` function) also their top-``k`` hits. A failed search raises its error."""
        if self._closed:
            raise BatcherClosed("the encoder is shutting down")
        loop = asyncio.get_running_loop()
        item = _Item(texts=texts, mode=mode, loop=loop, future=loop.create_future(),
                     k=k if self._search is not None else None)
        self._queue.put(item)
        return await item.future

    @property
    def depth(self) -> int:
        """Requests waiting for the consumer (not counting the batch being computed)."""
        return self._queue.qsize() + (self._held is not None)

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking requests, finish the batch in hand and end the consumer thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout)

    # -- the consumer thread --------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                break
            if batch:
                self._process(batch)
        # Whatever is still queued after close gets an answer too.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                _resolve(item, error=BatcherClosed("the encoder is shutting down"))

    def _gather(self) -> list[_Item] | None:
        """The next batch: everything waiting (same mode), up to the size limit; None to stop."""
        first = self._held or self._queue.get()
        self._held = None
        if first is None:
            return None
        batch, size = [first], len(first.texts)
        deadline = time.perf_counter() + (self.max_wait_s if self._shared_last_batch else 0.0)
        while size < self.max_batch_size:
            timeout = deadline - time.perf_counter()
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)  # stop after this batch
                break
            if item.mode != first.mode or size + len(item.texts) > self.max_batch_size:
                self._held = item  # starts the next batch
                break
            batch.append(item)
            size += len(item.texts)
        self._shared_last_batch = len(batch) > 1
        return batch

    def _process(self, batch: list[_Item]) -> None:
        texts = [text for item in batch for text in item.texts]
        started = time.perf_counter()
        try:
            vectors, tokens = self._encode(texts, batch[0].mode)
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            if len(batch) > 1:
                # One bad request must not fail its neighbours: retry them one by one.
                for item in batch:
                    self._process([item])
                return
            log.exception("encoding failed")
            _resolve(batch[0], error=exc)
            return
        seconds = time.perf_counter() - started
        if self._on_batch is not None:
            self._on_batch(len(texts), len(batch), seconds)
        rows, start = [], 0
        for item in batch:
            rows.append(slice(start, start + len(item.texts)))
            start += len(item.texts)
        found = self._search_batch(batch, rows, vectors)
        for item, row in zip(batch, rows):
            hits = found.get(id(item))
            if isinstance(hits, BaseException):
                _resolve(item, error=hits)
                continue
            encoded = Encoded(vectors=vectors[row], tokens=tokens[row])
            if hits is not None:
                encoded.hits, encoded.search_seconds = hits
            _resolve(item, result=encoded)

    def _search_batch(self, batch: list[_Item], rows: list[slice], vectors: np.ndarray) -> dict[int, Any]:
        """One search per distinct ``k`` over the rows of the items that asked for it:
        ``{id(item): (its SearchHits, seconds of the shared call) or the exception}``."""
        found: dict[int, Any] = {}
        for k in dict.fromkeys(item.k for item in batch if item.k is not None):
            members = [(item, row) for item, row in zip(batch, rows) if item.k == k]
            started = time.perf_counter()
            try:
                hits = self._search(np.concatenate([vectors[row] for _, row in members]), k)
            except Exception as exc:  # noqa: BLE001 - each asking request gets the error
                found.update((id(item), exc) for item, _ in members)
                continue
            seconds = time.perf_counter() - started
            start = 0
            for item, _ in members:
                end = start + len(item.texts)
                found[id(item)] = (_slice_hits(hits, start, end), seconds)
                start = end
        return found


def _slice_hits(hits: Any, start: int, end: int) -> Any:
    """The hits of queries ``start:end`` of a batched search."""
    return replace(hits, ids=hits.ids[start:end], scores=hits.scores[start:end],
                   fields=None if hits.fields is None else hits.fields[start:end])


def _resolve(item: _Item, result: Encoded | None = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if item.future.done():  # the client went away and the request was cancelled
            return
        if error is not None:
            item.future.set_exception(error)
        else:
            item.future.set_result(result)

    try:
        item.loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
