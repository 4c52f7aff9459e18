"""Ray Data sinks of the ingest job: OpenSearch (bulk by id), FAISS (parts, then one index), Parquet.

The Parquet sink's ``--out`` is itself a Parquet dataset: flat ``part-<chunk>-<uuid>.parquet``
files, each written under a hidden ``.``-prefixed name and renamed into place, with the resume
state in ``OUT/_ingest/<key>/`` (Parquet readers skip ``_`` and ``.`` names).

Every sink writes a block chunk by chunk and records each durable write in the
:class:`IngestState`, which is what a rerun resumes from. The indices themselves are the
``plugin.index`` backends: these classes only move Ray blocks into them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from ray.data import Datasink

from retrosearch.core.config import Settings
from retrosearch.core.index import create_index
from retrosearch.core.index.opensearch_index import OpenSearchIndex
from retrosearch.core.vector_space import IndexMeta
from retrosearch.ingest.embed import VECTOR_COLUMN
from retrosearch.ingest.source import CHUNK_COLUMN
from retrosearch.ingest.state import IngestState, PartLayout

_STAT_COLUMNS = ("_tokens", "_padded", "_embed_s")


def _empty_stats() -> dict[str, Any]:
    return {"rows": 0, "tokens": 0, "padded": 0.0, "embed_seconds": 0.0, "seconds": 0.0, "failed": []}


def _vectors(table: pa.Table) -> np.ndarray:
    column = table.column(VECTOR_COLUMN).combine_chunks()
    if pa.types.is_fixed_size_list(column.type) or pa.types.is_list(column.type):
        width = column.type.list_size if pa.types.is_fixed_size_list(column.type) else None
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return flat.reshape(len(column), width or -1)
    return np.stack(column.to_numpy(zero_copy_only=False)).astype(np.float32)


class ChunkSink(Datasink):
    """Shared part of the sinks: split blocks by chunk, write, record, gather statistics."""

    def __init__(self, state_root: Path) -> None:
        self.state_root = Path(state_root)
        self.totals: dict[str, Any] = _empty_stats()
        self.progress: Any = None  # a RowCounter actor handle, set by the pipeline

    def write_chunk(self, state: IngestState, chunk: str, table: pa.Table) -> tuple[int, list[tuple[str, str]]]:
        """Write one chunk's rows durably and record them; returns (rows written, failures)."""
        raise NotImplementedError

    def state(self) -> IngestState:
        """The resume state this sink records into."""
        return IngestState(self.state_root)

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        state = self.state()
        stats = _empty_stats()
        for block in blocks:
            table = block if isinstance(block, pa.Table) else pa.Table.from_pandas(block)
            if table.num_rows == 0:
                continue
            stats["tokens"] += int(pc.sum(table.column("_tokens")).as_py() or 0)
            stats["padded"] += float(pc.sum(table.column("_padded")).as_py() or 0.0)
            stats["embed_seconds"] += float(pc.sum(table.column("_embed_s")).as_py() or 0.0)
            chunks = table.column(CHUNK_COLUMN).to_pylist()
            for key in dict.fromkeys(chunks):
                part = table.filter(pc.equal(table.column(CHUNK_COLUMN), key))
                started = time.perf_counter()
                written, failed = self.write_chunk(state, key, part)
                stats["seconds"] += time.perf_counter() - started
                stats["rows"] += written
                stats["failed"] += failed
                if self.progress is not None:
                    self.progress.add.remote(written)
        return stats

    def on_write_complete(self, write_result: Any) -> None:
        """Runs on the driver: add up what the write tasks report."""
        totals = _empty_stats()
        for stats in write_result.write_returns:
            for key in totals:
                totals[key] += stats[key]
        self.totals = totals

    def loading(self) -> AbstractContextManager[None]:
        """Driver-side context around the whole write (server sinks relax refresh and replicas)."""
        return nullcontext()

    def finalize(self) -> dict[str, Any]:
        """Driver-side completion after every chunk is written (also after a resumed run)."""
        return {}


class OpenSearchSink(ChunkSink):
    """Bulk-loads rows by id through the OpenSearch backend; stores title and text beside the vector."""

    def __init__(self, state_root: Path, settings: Settings, meta: IndexMeta) -> None:
        super().__init__(state_root)
        self.settings = settings
        self.meta = meta
        self._index = None

    def prepare(self) -> None:
        """Create the index (or check an existing one was built by the same encoder)."""
        OpenSearchIndex.create(self.meta, self.settings.opensearch)

    def loading(self) -> AbstractContextManager[None]:
        return OpenSearchIndex.open(self.settings.opensearch).loading()

    def _target(self):
        if self._index is None:
            self._index = OpenSearchIndex.open(self.settings.opensearch)
        return self._index

    def write_chunk(self, state: IngestState, chunk: str, table: pa.Table) -> tuple[int, list[tuple[str, str]]]:
        index = self._target()
        keep = [c for c in table.column_names if c not in (VECTOR_COLUMN, CHUNK_COLUMN, "id", *_STAT_COLUMNS)]
        fields = table.select(keep).to_pylist()
        # The driver holds the loading mode and refreshes once at the end.
        result = index.write(table.column("id").to_pylist(), _vectors(table), fields, refresh=False)
        if not result.failed:
            state.record(chunk, result.written, ids=table.column("id").to_pylist())
        return result.written, result.failed

    def finalize(self) -> dict[str, Any]:
        index = OpenSearchIndex.open(self.settings.opensearch)
        return {"index": index.name, "count": index.count()}


class _PartFileSink(ChunkSink):
    """Sinks that keep each chunk's rows in part files (see :class:`PartLayout`)."""

    suffix = ".parquet"

    def layout(self) -> PartLayout:
        """Where the part files go: ``parts/<chunk>/`` under the state folder unless overridden."""
        return PartLayout(self.state_root, self.suffix)

    def state(self) -> IngestState:
        return IngestState(self.state_root, self.layout())

    def write_part(self, path: Path, table: pa.Table) -> None:
        raise NotImplementedError

    def write_chunk(self, state: IngestState, chunk: str, table: pa.Table) -> tuple[int, list[tuple[str, str]]]:
        layout = self.layout()
        relative = layout.new_part(chunk)
        target = layout.root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = layout.temporary(target)
        self.write_part(tmp, table)
        tmp.replace(target)
        state.record(chunk, table.num_rows, relative, ids=table.column("id").to_pylist())
        return table.num_rows, []


class ParquetSink(_PartFileSink):
    """Writes ``id``, ``vector`` and the text fields as Parquet files directly in ``out``, which is
    thereby a Parquet dataset (``pandas.read_parquet(out)``, ``pyarrow.dataset.dataset(out)``)."""

    def __init__(self, state_root: Path, out: Path) -> None:
        super().__init__(state_root)
        self.out = Path(out)

    def layout(self) -> PartLayout:
        return PartLayout(self.out, self.suffix, flat=True)

    def write_part(self, path: Path, table: pa.Table) -> None:
        vectors = _vectors(table)
        columns = [c for c in table.column_names if c not in (VECTOR_COLUMN, CHUNK_COLUMN, *_STAT_COLUMNS)]
        out = table.select(columns).append_column(
            VECTOR_COLUMN, pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
        )
        pq.write_table(out, path)

    def finalize(self) -> dict[str, Any]:
        state = self.state()
        # A write task retried after its rename but before its record leaves a file no record names.
        state.sweep()
        files = state.data_files()
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        return {"parts": len(files), "count": rows, "dataset": str(self.out)}


class FaissSink(_PartFileSink):
    """Gathers vectors as ``.npz`` parts; :meth:`finalize` builds and saves one FAISS index from them."""

    suffix = ".npz"

    def __init__(self, state_root: Path, out: Path, backend: str, settings: Settings, meta: IndexMeta) -> None:
        super().__init__(state_root)
        self.out, self.backend, self.settings, self.meta = Path(out), backend, settings, meta

    def write_part(self, path: Path, table: pa.Table) -> None:
        with path.open("wb") as handle:
            np.savez(handle, ids=np.array(table.column("id").to_pylist(), dtype=str), vectors=_vectors(table))

    def finalize(self) -> dict[str, Any]:
        state = self.state()
        # Parts of retried writes whose records were replaced, or of writes killed mid-way.
        state.sweep()
        files = state.data_files()
        ids: list[str] = []
        parts = []
        for part in files:
            with np.load(part) as data:
                ids.extend(data["ids"].tolist())
                parts.append(data["vectors"])
        vectors = np.concatenate(parts) if parts else np.empty((0, self.meta.dim), np.float32)
        index = create_index(self.backend, self.meta, self.settings)
        if ids:
            index.add(ids, vectors)
        index.save(self.out)
        return {"index": str(self.out), "count": index.count()}
