"""The OpenSearch bulk loader: idempotent by document id, sized by bytes, retrying 429s with backoff.

Documents are written with ``index`` actions keyed by their id, so loading the same corpus twice
leaves the index unchanged. Requests are cut at ``bulk_docs`` documents or ``bulk_bytes`` bytes,
whichever comes first. Rejections (HTTP 429, for a whole request or for single items) are retried
with exponential backoff; timeouts and dead nodes are retried by the client on another node.
Items that fail for a passing reason (a primary shard moving after a node left: 503, 500, 502,
504) are sent again, the same way, by id: a replayed item overwrites, never duplicates. Whatever
still fails is returned with its id and reason, never dropped silently.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opensearchpy import OpenSearch, helpers

from retrosearch.core.config import OpenSearchSettings

# Item statuses worth another try: the cluster is moving shards or a node is gone, not a bad document.
# (429 is retried inside each pass by the bulk helper already.)
RETRYABLE_ITEM_STATUS = frozenset({500, 502, 503, 504})


@dataclass
class BulkResult:
    """What a bulk load did: documents written, failures with reasons, 429s met on the way."""

    written: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    rejected_429: int = 0
    requests: int = 0
    seconds: float = 0.0

    def merge(self, other: "BulkResult") -> None:
        """Add another load's counts to this one."""
        self.written += other.written
        self.failed.extend(other.failed)
        self.rejected_429 += other.rejected_429
        self.requests += other.requests
        self.seconds += other.seconds


class _CountingClient:
    """Passes bulk calls to the real client, counting requests and 429 rejections on the way."""

    def __init__(self, client: OpenSearch, result: BulkResult) -> None:
        self._client, self._result = client, result
        self.transport = client.transport

    def bulk(self, *args: Any, **kwargs: Any) -> Any:
        self._result.requests += 1
        try:
            response = self._client.bulk(*args, **kwargs)
        except Exception as exc:
            if getattr(exc, "status_code", None) == 429:
                self._result.rejected_429 += 1
            raise
        if response.get("errors"):
            self._result.rejected_429 += sum(
                1 for item in response["items"] if next(iter(item.values())).get("status") == 429
            )
        return response


def _reason(error: Any) -> str:
    """The error's reason followed by its causes (the cause usually names the real problem)."""
    parts = []
    while isinstance(error, dict) and len(parts) < 4:
        parts.append(str(error.get("reason") or error.get("type")))
        error = error.get("caused_by")
    return " <- ".join(parts) if parts else str(error)


def _actions(index: str, docs: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for doc in docs:
        doc = dict(doc)
        yield {"_op_type": "index", "_index": index, "_id": doc.pop("_id"), "_source": doc}


def bulk_index(
    client: OpenSearch, index: str, docs: Iterable[dict[str, Any]], settings: OpenSearchSettings, progress: Any = None
) -> BulkResult:
    """Write ``docs`` (dicts with ``_id`` plus source fields) to ``index``.

    ``progress``, when given, is called with the number of documents each acknowledged item adds.
    """
    result = BulkResult()
    started = time.perf_counter()
    counting = _CountingClient(client, result)
    docs = iter(docs)
    # Documents are held one request's worth at a time, so failed items can be sent again by id.
    while batch := list(itertools.islice(docs, settings.bulk_docs)):
        for attempt in itertools.count():
            final = attempt >= settings.bulk_retries
            retry = []
            for ok, doc_id, status, reason in _pass(counting, index, batch, settings):
                if ok:
                    result.written += 1
                elif status in RETRYABLE_ITEM_STATUS and not final:
                    retry.append(doc_id)
                    continue
                else:
                    result.failed.append((doc_id, f"HTTP {status}: {reason}"))
                if progress is not None:
                    progress(1)
            if not retry:
                break
            time.sleep(min(settings.bulk_initial_backoff_s * 2**attempt, settings.bulk_max_backoff_s))
            by_id = {str(doc["_id"]): doc for doc in batch}
            batch = [by_id[doc_id] for doc_id in retry]
    result.seconds = time.perf_counter() - started
    return result


def _pass(client: Any, index: str, docs: Iterable[dict[str, Any]],
          settings: OpenSearchSettings) -> Iterator[tuple[bool, str, Any, str]]:
    """One bulk pass over ``docs``: (ok, id, status, reason) per item; 429s retried with backoff inside."""
    for ok, item in helpers.streaming_bulk(
        client,
        _actions(index, docs),
        chunk_size=settings.bulk_docs,
        max_chunk_bytes=settings.bulk_bytes,
        max_retries=settings.bulk_retries,
        initial_backoff=settings.bulk_initial_backoff_s,
        max_backoff=settings.bulk_max_backoff_s,
        raise_on_error=False,
        raise_on_exception=True,
        yield_ok=True,
        # These documents carry their vectors: an index's default ingest pipeline (one that embeds
        # text through a model, see pipelines.py) must not compute them again.
        pipeline="_none",
    ):
        info = next(iter(item.values()))
        yield ok, str(info.get("_id")), info.get("status"), "" if ok else _reason(info.get("error"))


@contextmanager
def loading_mode(client: OpenSearch, index: str, settings: OpenSearchSettings) -> Iterator[None]:
    """Refresh off (and on a single node no replicas) while loading; afterwards restore both, merge if
    asked, refresh.

    On one node replicas cannot be assigned anyway; on several they stay, so losing a node during the
    load loses no shard. The previous values are restored even when the load fails.
    """
    current = client.indices.get_settings(index=index)[index]["settings"]["index"]
    # A setting never set explicitly is restored as None, which resets it to the cluster default.
    # Values that look like a killed load's leftovers (refresh off, no replicas) are not kept:
    # they restore to the default refresh and the configured replica count.
    refresh = current.get("refresh_interval")
    replicas = current.get("number_of_replicas")
    previous = {
        "refresh_interval": None if refresh == "-1" else refresh,
        "number_of_replicas": settings.replicas if replicas in (None, "0") else replicas,
    }
    relaxed: dict[str, Any] = {"refresh_interval": "-1"}
    # Dropping replicas only pays where they could be placed, and there it would make the node holding
    # a primary a single point of failure for the load: a lost node would stall it. So several data
    # nodes keep their replicas during the load; a single node has none assigned anyway.
    if int(client.cluster.health().get("number_of_data_nodes", 1)) <= 1:
        relaxed["number_of_replicas"] = 0
    client.indices.put_settings(index=index, body={"index": relaxed})
    try:
        yield
    finally:
        client.indices.put_settings(index=index, body={"index": previous})
        if settings.force_merge:
            client.indices.forcemerge(index=index, max_num_segments=1, request_timeout=3600)
        client.indices.refresh(index=index)
