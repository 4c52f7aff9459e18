"""A Ray Data source that reads the planned chunks as length-sorted blocks, rows tagged with their chunk.

Each read task yields one block of ``block_rows`` rows of a chunk, taken from the chunk's rows
sorted by text length. Small blocks keep every embedding actor busy until the end of the job (a
chunk is the unit of resume, too coarse a unit of work for a few slow CPU actors), and sorted
blocks need little padding when the encoder batches them. Sinks split blocks by chunk again, so
neither changes what a chunk's manifest records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets import load_from_disk
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from retrosearch.core.collections import FieldMap
from retrosearch.core.collections.readers import parse_document
from retrosearch.ingest.plan import Chunk

CHUNK_COLUMN = "_chunk"


def _jsonl_records(chunk: Chunk, skip: set[int]) -> Iterator[tuple[int, Any]]:
    with open(chunk.path, "rb") as handle:
        handle.seek(chunk.start)
        data = handle.read(chunk.end - chunk.start)
    for number, raw in enumerate(data.split(b"\n"), start=chunk.first_line):
        if raw.strip() and number not in skip:
            yield number, orjson.loads(raw)


def _row_records(chunk: Chunk, skip: set[int]) -> Iterator[tuple[int, Any]]:
    if chunk.kind == "parquet":
        table = pq.read_table(chunk.path).slice(chunk.start, chunk.end - chunk.start)
    else:
        table = load_from_disk(chunk.path).select(range(chunk.start, chunk.end)).data.table
    for number, obj in enumerate(table.to_pylist(), start=chunk.first_line):
        if number not in skip:
            yield number, obj


def read_chunk(chunk: Chunk, fields: FieldMap) -> pa.Table:
    """The good records of one chunk as a table: ``id``, ``title``, ``text``, kept fields, ``_chunk``."""
    skip = set(chunk.skip_lines)
    records = _jsonl_records(chunk, skip) if chunk.kind == "jsonl" else _row_records(chunk, skip)
    # A kept field named like a core column is that column already.
    keep = [name for name in fields.keep if name not in ("id", "title", "text", CHUNK_COLUMN)]
    columns: dict[str, list[Any]] = {"id": [], "title": [], "text": [], **{k: [] for k in keep}}
    for _, obj in records:
        doc = parse_document(obj, fields)
        columns["id"].append(doc.id)
        columns["title"].append(doc.title)
        columns["text"].append(doc.text)
        for name in keep:
            value = doc.fields.get(name)
            # Kept fields may hold any JSON; a string column keeps Arrow from guessing types per block.
            columns[name].append(value if isinstance(value, str) or value is None else json.dumps(value))
    if len(columns["id"]) != chunk.rows:
        raise RuntimeError(
            f"{chunk.path}: chunk {chunk.key} read {len(columns['id'])} records but the plan expected {chunk.rows}; "
            "the input changed after planning"
        )
    columns[CHUNK_COLUMN] = [chunk.key] * chunk.rows
    return pa.table({name: pa.array(values, type=pa.string()) for name, values in columns.items()})


def length_sorted_slice(table: pa.Table, index: int, rows: int) -> pa.Table:
    """Rows ``[index * rows, (index + 1) * rows)`` of ``table`` sorted by title + text length."""
    lengths = pc.add(pc.utf8_length(table.column("title").fill_null("")), pc.utf8_length(table.column("text")))
    order = pc.sort_indices(lengths, sort_keys=[("", "descending")])
    return table.take(order.slice(index * rows, rows))


class ChunkSource(Datasource):
    """Reads the chunks of a plan: one read task per ``block_rows`` rows of a chunk.

    Ray hands all blocks of one read task to one actor call, so a chunk is cut into several
    read tasks; each reads the whole chunk (cheap next to embedding it) and keeps its share of
    the chunk's length-sorted rows.
    """

    def __init__(self, chunks: list[Chunk], fields: FieldMap, block_rows: int = 1 << 30) -> None:
        self.chunks = chunks
        self.fields = fields
        self.block_rows = block_rows

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def slices(self) -> list[tuple[Chunk, int]]:
        """(chunk, slice index) of every read task."""
        return [(c, i) for c in self.chunks for i in range(max(1, -(-c.rows // self.block_rows)))]

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for chunk, index in self.slices():
            rows = min(self.block_rows, chunk.rows - index * self.block_rows)
            metadata = BlockMetadata(num_rows=rows, size_bytes=None, exec_stats=None, input_files=(chunk.path,))
            read = lambda c=chunk, i=index: [length_sorted_slice(read_chunk(c, self.fields), i, self.block_rows)]  # noqa: E731
            tasks.append(ReadTask(read, metadata))
        return tasks

    def get_name(self) -> str:
        return f"ReadCorpus({Path(self.chunks[0].path).name if self.chunks else 'empty'})"
