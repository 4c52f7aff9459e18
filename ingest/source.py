"""A Ray Data source that reads the planned chunks: one read task per chunk, rows tagged with it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from ray.data import Datasource, ReadTask
from ray.data.block import BlockMetadata

from retrosearch.ingest.plan import Chunk
from retrosearch.plugin.collections import FieldMap
from retrosearch.plugin.collections.readers import parse_document

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
        import pyarrow.parquet as pq

        table = pq.read_table(chunk.path).slice(chunk.start, chunk.end - chunk.start)
    else:
        from datasets import load_from_disk

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


class ChunkSource(Datasource):
    """Reads the chunks of a plan; one read task per chunk keeps chunks whole within a block."""

    def __init__(self, chunks: list[Chunk], fields: FieldMap) -> None:
        self.chunks = chunks
        self.fields = fields

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for chunk in self.chunks:
            size = chunk.end - chunk.start if chunk.kind == "jsonl" else None
            metadata = BlockMetadata(num_rows=chunk.rows, size_bytes=size, exec_stats=None, input_files=(chunk.path,))
            tasks.append(ReadTask(lambda c=chunk: [read_chunk(c, self.fields)], metadata))
        return tasks

    def get_name(self) -> str:
        return f"ReadCorpus({Path(self.chunks[0].path).name if self.chunks else 'empty'})"
