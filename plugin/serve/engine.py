"""What the query service computes with: one encoder and, optionally, the index ingestion filled.

The engine knows nothing about HTTP. It opens the encoder the index was built with (or the one
asked for, checked against the index), encodes texts in query or passage mode exactly as
ingestion and evaluation do, searches, and says whether it is ready. ``tokenize`` is meant for one
thread and ``encode_ids`` for one other (the batcher's tokenizer and consumer threads: the model
never touches the tokenizer); ``search`` is safe from many threads.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from retrosearch.core.collections.records import Document
from retrosearch.core.config import Settings
from retrosearch.core.index import load_index
from retrosearch.core.index.base import IndexUnavailable, SearchModeUnavailable, UnsupportedSearchOption

log = logging.getLogger(__name__)

Mode = Literal["query", "passage"]

# OpenSearch error types that mean the request (its filter) was wrong, not the backend.
_CLIENT_ERRORS = re.compile(r"pars(e|ing)|illegal_argument|query_shard|number_format|mapper", re.I)


class EngineError(Exception):
    """A request the engine cannot answer; ``status`` is the HTTP status that fits."""

    status = 500

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class BadSearchRequest(EngineError):
    """The search itself is invalid (an option the backend lacks, a malformed filter)."""

    status = 400


class BackendUnavailable(EngineError):
    """The index backend does not answer; the service recovers when it does again."""

    status = 503


class UpstreamModelError(EngineError):
    """OpenSearch could not run our model for a neural search (its service down, model undeployed)."""

    status = 502


class NoIndex(EngineError):
    """The service was started for embedding only."""

    status = 404


@dataclass
class IndexTarget:
    """Which index the service searches: a FAISS folder or an OpenSearch index."""

    index_dir: Path | None = None
    index_name: str | None = None

    @property
    def backend(self) -> str | None:
        """``faiss``, ``opensearch`` or None (embedding only)."""
        if self.index_dir is not None:
            return "faiss"
        return "opensearch" if self.index_name else None


class QueryEngine:
    """An encoder plus an optional index, as the service uses them."""

    def __init__(self, encoder: Any, index: Any | None, settings: Settings, target: IndexTarget) -> None:
        self.encoder = encoder
        self.index = index
        self.settings = settings
        self.target = target

    @classmethod
    def open(cls, settings: Settings, target: IndexTarget, model: str | None = None) -> "QueryEngine":
        """Open the index (if any), then the encoder: ``model`` or the one that built the index.

        Raises FileNotFoundError, ModelNotFoundError, IndexMismatchError or OpenSearchUnavailable
        with a one-line message when something does not fit.
        """
        # lazy: keeps torch, transformers out of importing this module
        from retrosearch.core.encoder import Encoder

        settings = settings.model_copy(deep=True)
        index = None
        if target.backend == "faiss":
            index = load_index(target.index_dir, settings, backend="faiss")
            _one_faiss_thread_per_search()
        elif target.backend == "opensearch":
            settings.opensearch.index = target.index_name
            index = load_index(None, settings, backend="opensearch")
        if model:
            settings.encoder.model = model
        elif index is not None:
            settings.encoder.model = index.meta.model_name
        # The batcher decides which texts go together; the runtime still cuts a gathered batch into
        # its device's micro-batches (16 texts on CPU: 32 short queries as two length-sorted passes of
        # 16 ran ~25% faster than one of 32 with MiniLM here, padding being the difference).
        settings.encoder.show_progress = False
        encoder = Encoder.load(settings.encoder, workload="queries")
        if index is not None:
            index.check_query_encoder(encoder.index_meta())
        engine = cls(encoder, index, settings, target)
        engine.encode(["warm-up"], "query")  # the first forward pass allocates; no client should pay for it
        return engine

    # -- identity -------------------------------------------------------------------------------
    @property
    def model_name(self) -> str:
        """The name clients see (OpenAI's ``model`` field)."""
        return self.encoder.name

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return int(self.encoder.dim)

    def describe(self) -> dict[str, Any]:
        """What the service serves: model, fingerprint, dimension, similarity, templates, index."""
        spec = self.encoder.spec
        info: dict[str, Any] = {
            "model": self.model_name,
            "fingerprint": self.encoder.fingerprint,
            "dim": self.dim,
            "similarity": spec.similarity,
            "pooling": spec.pooling,
            "query_template": spec.query_template,
            "passage_template": spec.passage_template,
            "title_separator": spec.title_separator,
            "max_length": self.encoder.max_length,
            "device": str(self.encoder.device),
            "runtime": self.encoder.runtime,
            "quantize": self.encoder.settings.quantize,
            "backend": self.target.backend,
        }
        if self.index is not None:
            info["index"] = str(self.target.index_dir or self.target.index_name)
            info["index_backend"] = self.index.meta.backend
            info["documents"] = self.count()
        return info

    @property
    def searches_in_process(self) -> bool:
        """Whether searching is local CPU/GPU work (FAISS) rather than a call to a server."""
        return self.target.backend == "faiss" and self.index is not None

    # -- encoding: tokenize (one tokenizer thread), then a forward pass (one consumer thread) -------
    def tokenize(self, texts: Sequence[str], mode: Mode) -> list[list[int]]:
        """Token ids of ``texts`` under the query or passage template, cut to the model's length.

        The ids are what :meth:`encode_ids` takes: a text is tokenized once, and its length is what
        the batcher counts. Raises ValueError when a template leaves no room for the text.
        """
        tokenizer = self.encoder.text_tokenizer
        if mode == "query":
            return tokenizer.queries(texts)

        return tokenizer.documents([Document(id="", text=text) for text in texts])

    def encode_ids(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors of tokenized texts (rows in input order): the forward pass alone."""
        vectors, _stats = self.encoder.encode_with_stats(token_ids)
        return vectors

    def encode(self, texts: Sequence[str], mode: Mode) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of ``texts`` under the query or passage template, and each text's token count."""
        token_ids = self.tokenize(texts, mode)
        tokens = np.fromiter((len(ids) for ids in token_ids), dtype=np.int64, count=len(token_ids))
        return self.encode_ids(token_ids), tokens

    # -- searching (any thread) -----------------------------------------------------------------
    def search(
        self,
        vectors: np.ndarray | None,
        k: int,
        filter: dict[str, Any] | None = None,
        fields: Sequence[str] | None = None,
        texts: Sequence[str] | None = None,
        mode: str = "dense",
        dense_weight: float | None = None,
        normalization: str | None = None,
    ) -> Any:
        """Top-``k`` hits of each query (``vectors`` for dense and hybrid, ``texts`` for the modes
        OpenSearch computes); errors become :class:`EngineError` subclasses."""
        # lazy: keeps opensearchpy out of importing this module
        from retrosearch.core.opensearch.model_errors import RemoteModelError

        if self.index is None:
            raise NoIndex("this service was started without an index (--index or --index-name); only embedding is served")
        fields = list(fields) if fields else None
        try:
            if mode == "dense" and texts is None:
                return self.index.search(vectors, k, filter=filter, fields=fields)
            return self.index.search_texts(list(texts or []), vectors, k, mode=mode, filter=filter, fields=fields,
                                           dense_weight=dense_weight, normalization=normalization)
        except IndexUnavailable as exc:
            raise BackendUnavailable(str(exc)) from None
        except SearchModeUnavailable as exc:
            raise BadSearchRequest(str(exc), param="mode") from None
        except RemoteModelError as exc:
            raise UpstreamModelError(str(exc)) from None
        except UnsupportedSearchOption as exc:
            raise BadSearchRequest(str(exc), param="filter") from None
        except Exception as exc:  # noqa: BLE001 - translated by kind below
            raise _translate_backend_error(exc, self.target) from exc

    def count(self) -> int | None:
        """Documents in the index (None when it cannot be asked)."""
        if self.index is None:
            return None
        try:
            return int(self.index.count())
        except Exception:  # noqa: BLE001 - a description must not fail on a sleeping backend
            return None

    # -- readiness ------------------------------------------------------------------------------
    def not_ready_reason(self) -> str | None:
        """None when the service can answer searches; otherwise why not (backend down)."""
        if self.target.backend != "opensearch":
            return None
        try:
            self.index.client.cluster.health(index=self.index.name, params={"request_timeout": 2})
        except Exception as exc:  # noqa: BLE001
            return str(_translate_backend_error(exc, self.target))
        return None


def _one_faiss_thread_per_search() -> None:
    """A service searches one request's few queries at a time, from several threads at once.

    FAISS would start an OpenMP team for each of those tiny searches, and its idle threads spin
    on the cores the encoder's forward pass needs; one thread per search is faster here, and the
    search thread pool gives the parallelism.
    """
    import faiss  # lazy: keeps faiss out of importing this module

    faiss.omp_set_num_threads(1)


def _translate_backend_error(exc: Exception, target: IndexTarget) -> EngineError:
    """OpenSearch's exceptions as the service reports them: down -> 503, bad filter -> 400."""
    try:
        from opensearchpy import exceptions as os_exc  # lazy: optional here (ImportError handled)
    except ImportError:  # pragma: no cover - opensearch-py is a dependency
        os_exc = None
    if isinstance(exc, EngineError):
        return exc
    if os_exc is not None and isinstance(exc, (os_exc.ConnectionError, os_exc.ConnectionTimeout)):
        return BackendUnavailable(f"OpenSearch index {target.index_name!r} is unreachable: {type(exc).__name__}")
    if os_exc is not None and isinstance(exc, os_exc.TransportError):
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        # Busy (429), failing (5xx) or silent: the backend's passing state, not the request's fault.
        if status == 429 or status >= 500 or status == 0:
            return BackendUnavailable(f"OpenSearch answered {status or 'nothing'}: {exc.error}")
        if 400 <= status < 500:
            return BadSearchRequest(f"OpenSearch rejected the search ({status}): {exc.error}")
    message = str(exc)
    if isinstance(exc, RuntimeError) and _CLIENT_ERRORS.search(message):
        return BadSearchRequest(message, param="filter")
    log.exception("search failed")
    return EngineError(f"search failed: {type(exc).__name__}: {message[:300]}")
