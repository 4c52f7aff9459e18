"""Corpus and query readers for JSONL and Parquet, failing with file, line and reason.

A readable record needs an id (string, or an integer, which is turned into a string) and a text
(a string, which may be empty). Titles are optional. Ids must be unique within a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retrosearch.core.collections.errors import CollectionError
from retrosearch.core.collections.records import Document, FieldMap, Query


def _id_of(obj: dict[str, Any], name: str) -> str:
    if name not in obj or obj[name] is None:
        raise ValueError(f"missing id field {name!r}")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"id field {name!r} must be a string or an integer, got {type(value).__name__}")
    text = str(value)
    if not text.strip():
        raise ValueError(f"id field {name!r} is empty")
    return text


def _str_of(obj: dict[str, Any], name: str, required: bool) -> str:
    if name not in obj or obj[name] is None:
        if required:
            raise ValueError(f"missing text field {name!r}")
        return ""
    value = obj[name]
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} must be a string, got {type(value).__name__}")
    return value


def parse_document(obj: Any, fields: FieldMap) -> Document:
    """Turn one decoded source record into a :class:`Document`; raises ValueError with the reason."""
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    return Document(
        id=_id_of(obj, fields.id),
        text=_str_of(obj, fields.text, required=True),
        title=_str_of(obj, fields.title, required=False) if fields.title else "",
        fields={k: obj.get(k) for k in fields.keep},
    )


def iter_raw_records(path: str | Path) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_or_row_number, decoded_object)``; blank JSONL lines are skipped.

    Undecodable lines raise :class:`CollectionError`. Parquet rows are numbered from 1.
    """
    path = Path(path)
    if not path.exists():
        raise CollectionError(path, None, "file not found")
    suffix = path.suffix.lower()
    if suffix in {".jsonl", ".json", ".ndjson"}:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if not raw.strip():
                    continue
                try:
                    yield number, json.loads(raw)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise CollectionError(path, number, f"not valid JSON ({exc})") from None
    elif suffix in {".parquet", ".pq"}:
        import pyarrow.parquet as pq  # lazy: keeps pyarrow out of CLI start-up

        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                number += 1
                yield number, row
    else:
        raise CollectionError(path, None, f"unknown corpus format {suffix!r} (expected .jsonl or .parquet)")


def _unit(path: Path) -> str:
    return "row" if path.suffix.lower() in {".parquet", ".pq"} else "line"


def read_corpus(path: str | Path, fields: FieldMap | None = None) -> Iterator[Document]:
    """Yield the documents of a JSONL or Parquet corpus, validating every record."""
    path, fields = Path(path), fields or FieldMap()
    seen: dict[str, int] = {}
    for number, obj in iter_raw_records(path):
        try:
            doc = parse_document(obj, fields)
        except ValueError as exc:
            raise CollectionError(path, number, str(exc), unit=_unit(path)) from None
        if doc.id in seen:
            raise CollectionError(
                path, number, f"duplicate id {doc.id!r} (first seen at {_unit(path)} {seen[doc.id]})", _unit(path)
            )
        seen[doc.id] = number
        yield doc


def read_queries(path: str | Path, fields: FieldMap | None = None) -> Iterator[Query]:
    """Yield the queries of a JSONL file (``_id``, ``text``), validating every record."""
    fields = fields or FieldMap(title=None)
    for doc in read_corpus(path, fields.model_copy(update={"title": None})):
        yield Query(id=doc.id, text=doc.text)
