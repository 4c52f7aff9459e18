"""Backend names as the CLI spells them, and the one place that turns a name into an index.

The same names create and open an index: ``faiss-flat``, ``faiss-hnsw``, ``faiss-ivfpq``, the
quantized ``faiss-int8``, ``faiss-int8-hnsw``, ``faiss-binary``, ``faiss-binary-hnsw`` (codes searched,
candidates rescored; see :mod:`~retrosearch.core.index.faiss_index`) and ``opensearch``. Opening
also accepts ``faiss``, meaning "whatever kind the folder holds" (the name every saved folder was
opened with before the names were unified).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from retrosearch.core.config import Settings
from retrosearch.core.index.base import VectorIndex
from retrosearch.core.vector_space import IndexMeta

_FAISS = "retrosearch.core.index.faiss_index"
_OPENSEARCH = "retrosearch.core.index.opensearch_index"


@dataclass(frozen=True)
class Backend:
    """Where a backend's class lives (imported on first use: FAISS and opensearch-py are heavy) and
    which variant of it a name stands for (``None``: the class's default, or what was saved)."""

    module: str
    class_name: str
    kind: str | None = None

    def index_class(self) -> type[VectorIndex]:
        return getattr(importlib.import_module(self.module), self.class_name)


REGISTRY: dict[str, Backend] = {
    "faiss-flat": Backend(_FAISS, "FaissIndex", "flat"),
    "faiss-hnsw": Backend(_FAISS, "FaissIndex", "hnsw"),
    "faiss-ivfpq": Backend(_FAISS, "FaissIndex", "ivfpq"),
    "faiss-int8": Backend(_FAISS, "FaissIndex", "int8"),
    "faiss-int8-hnsw": Backend(_FAISS, "FaissIndex", "int8-hnsw"),
    "faiss-binary": Backend(_FAISS, "FaissIndex", "binary"),
    "faiss-binary-hnsw": Backend(_FAISS, "FaissIndex", "binary-hnsw"),
    "opensearch": Backend(_OPENSEARCH, "OpenSearchIndex"),
}
# Names only opening accepts: "faiss" opens a FAISS folder of any kind.
LOAD_ALIASES: dict[str, Backend] = {"faiss": Backend(_FAISS, "FaissIndex")}

BACKENDS = tuple(REGISTRY)
LOAD_BACKENDS = (*BACKENDS, *LOAD_ALIASES)
FAISS_BACKENDS = tuple(name for name, entry in REGISTRY.items() if entry.module == _FAISS)
# The names as types, for options and settings files that take one (their help and errors list them).
BackendName = Literal[BACKENDS]  # type: ignore[valid-type]
FaissBackendName = Literal[FAISS_BACKENDS]  # type: ignore[valid-type]


def _backend(name: str, names: dict[str, Backend]) -> Backend:
    try:
        return names[name]
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(names)}") from None


def create_index(backend: str, meta: IndexMeta, settings: Settings | None = None, recreate: bool = False) -> VectorIndex:
    """A new, empty index of ``backend`` for vectors described by ``meta``.

    For ``opensearch`` the index is ``settings.opensearch.index``; an existing one built with the
    same encoder is reused unless ``recreate``.
    """
    entry = _backend(backend, REGISTRY)
    return entry.index_class().create_empty(meta, settings or Settings(), kind=entry.kind, recreate=recreate)


def load_index(path: str | Path | None, settings: Settings | None = None, backend: str = "faiss") -> VectorIndex:
    """Open a saved FAISS index folder, or (``backend="opensearch"``) the index ``settings.opensearch.index``.

    ``backend`` takes the names :func:`create_index` takes, plus ``faiss`` (any FAISS kind); a
    FAISS folder holding another kind than the one named is a ValueError.
    """
    entry = _backend(backend, {**REGISTRY, **LOAD_ALIASES})
    return entry.index_class().open_saved(path, settings or Settings(), kind=entry.kind)


def open_index(settings: Settings, index_dir: str | Path | None = None, backend: str | None = None) -> VectorIndex:
    """The index a command was pointed at: the FAISS folder ``index_dir`` when given, else the
    OpenSearch index ``settings.opensearch.index``.

    ``backend`` (any name :func:`load_index` takes) overrides the choice, and for a folder checks
    its kind.
    """
    if backend is None:
        if index_dir is not None:
            backend = "faiss"
        elif settings.opensearch.index:
            backend = "opensearch"
        else:
            raise ValueError("no index given: name a FAISS index folder or an OpenSearch index")
    return load_index(index_dir, settings, backend=backend)
