"""Planning an ingest: validate every input record once and cut the input into chunks.

The plan is what makes ingestion resumable: a chunk is a fixed range of one input file (bytes
of a JSONL file, rows of a Parquet file or on-disk Hugging Face dataset) with a stable key and the
number of good records it holds. Sinks record how many rows of each chunk they have durably
written; a chunk whose count is complete is skipped when the same command runs again.

Validation happens here, in one pass before any embedding, so ``on_error="fail"`` stops with the
file, line and reason before anything is written, and ``on_error="skip"`` knows exactly which
lines to leave out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from retrosearch.core.collections import CollectionError, FieldMap
from retrosearch.core.collections.readers import parse_document
from retrosearch.ingest.choices import OnError

SourceKind = Literal["jsonl", "parquet", "hf"]


@dataclass(frozen=True)
class Reject:
    """A record left out, with where it was and why."""

    path: str
    line: int
    reason: str


@dataclass(frozen=True)
class Chunk:
    """A range of one input: ``[start, end)`` in bytes (JSONL) or rows (Parquet, HF dataset)."""

    key: str
    path: str
    kind: SourceKind
    start: int
    end: int
    first_line: int
    rows: int
    skip_lines: tuple[int, ...] = ()


@dataclass
class Plan:
    """All chunks of an input, the rejected records and a fingerprint of what was read."""

    chunks: list[Chunk]
    rejects: list[Reject]
    total_records: int
    fingerprint: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def good_rows(self) -> int:
        """Records that will be written."""
        return sum(c.rows for c in self.chunks)

    def to_json(self) -> str:
        """The plan as JSON (kept in the state folder for inspection)."""
        return json.dumps({**asdict(self), "good_rows": self.good_rows}, indent=1)


def source_kind(path: Path) -> SourceKind:
    """What kind of input ``path`` is: a JSONL file, a Parquet file or a saved HF dataset folder."""
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "state.json").exists():
            return "hf"
        raise CollectionError(path, None, "a folder that is not a saved Hugging Face dataset (datasets.save_to_disk)")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise CollectionError(path, None, f"unknown input format {suffix!r} (expected .jsonl, .parquet or a dataset folder)")


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Input files in a stable order: folders of JSONL/Parquet files are expanded, HF folders kept."""
    files: list[Path] = []
    for path in inputs:
        if not path.exists():
            raise CollectionError(path, None, "input not found")
        if path.is_dir() and not ((path / "dataset_info.json").exists() or (path / "state.json").exists()):
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".jsonl", ".parquet", ".pq", ".ndjson"))
            if not found:
                raise CollectionError(path, None, "folder holds no .jsonl or .parquet files")
            files.extend(found)
        else:
            files.append(path)
    return files


def _records(path: Path, kind: SourceKind) -> Iterator[tuple[int, int, Any]]:
    """``(line_or_row, end_position, decoded_or_exception)`` for every record of one input."""
    if kind == "jsonl":
        offset = 0
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                offset += len(raw)
                if not raw.strip():
                    continue
                try:
                    yield number, offset, orjson.loads(raw)
                except orjson.JSONDecodeError as exc:
                    yield number, offset, ValueError(f"not valid JSON ({exc})")
    elif kind == "parquet":
        import pyarrow.parquet as pq  # lazy: keeps pyarrow out of importing this module

        row = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for obj in batch.to_pylist():
                row += 1
                yield row, row, obj
    else:
        from datasets import load_from_disk  # lazy: keeps datasets out of importing this module

        dataset = load_from_disk(str(path))
        if not hasattr(dataset, "iter"):
            raise CollectionError(path, None, f"a DatasetDict with splits {list(dataset)}: point --corpus at one split")
        row = 0
        for batch in dataset.iter(batch_size=4096):
            for obj in (dict(zip(batch, values)) for values in zip(*batch.values())):
                row += 1
                yield row, row, obj


def fingerprint_inputs(files: list[Path], fields: FieldMap, extra: dict[str, Any]) -> str:
    """Changes when an input file, the field mapping or the validation options change."""
    digest = hashlib.sha256()
    for path in files:
        stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*")) if p.is_file()] if path.is_dir() else [(path.name, path.stat().st_size, path.stat().st_mtime_ns)]
        digest.update(f"{path.resolve()}|{stats}".encode())
    digest.update(fields.model_dump_json().encode())
    digest.update(json.dumps(extra, sort_keys=True).encode())
    return digest.hexdigest()


def plan_ingest(
    inputs: list[Path],
    fields: FieldMap | None = None,
    on_error: OnError = "fail",
    max_text_chars: int = 100_000,
    chunk_rows: int = 1000,
) -> Plan:
    """Validate every record of ``inputs`` and cut them into chunks of about ``chunk_rows`` records.

    Bad records (malformed, missing or mistyped id/text, oversize text, repeated id) raise a
    :class:`CollectionError` naming file and line when ``on_error="fail"``; with ``"skip"`` they
    are listed in ``Plan.rejects`` and left out of the chunks.
    """
    fields = fields or FieldMap()
    files = expand_inputs(inputs)
    chunks: list[Chunk] = []
    rejects: list[Reject] = []
    seen: dict[str, tuple[str, int]] = {}
    total = 0
    for file_number, path in enumerate(files):
        kind = source_kind(path)
        unit = "line" if kind == "jsonl" else "row"
        start, first_line, good, skips, last_end, last_line = 0, 1, 0, [], 0, 0

        def close(end: int, line: int) -> None:
            nonlocal start, first_line, good, skips
            if end > start:
                key = f"{file_number:04d}-{first_line:012d}"
                chunks.append(Chunk(key, str(path), kind, start, end, first_line, good, tuple(skips)))
            start, first_line, good, skips = end, line + 1, 0, []

        for line, end, obj in _records(path, kind):
            total += 1
            try:
                if isinstance(obj, Exception):
                    raise obj
                doc = parse_document(obj, fields)
                if len(doc.text) + len(doc.title) > max_text_chars:
                    raise ValueError(f"text of {len(doc.text) + len(doc.title)} characters exceeds --max-text-chars {max_text_chars}")
                if doc.id in seen:
                    where = seen[doc.id]
                    raise ValueError(f"duplicate id {doc.id!r} (first seen at {where[0]}:{where[1]})")
                seen[doc.id] = (path.name, line)
                good += 1
            except ValueError as exc:
                if on_error == "fail":
                    raise CollectionError(path, line, str(exc), unit=unit) from None
                rejects.append(Reject(str(path), line, str(exc)))
                skips.append(line)
            last_end, last_line = end, line
            if good + len(skips) >= chunk_rows:
                close(end if kind == "jsonl" else line, line)
        close(last_end if kind == "jsonl" else last_line, last_line)
    options = {"on_error": on_error, "max_text_chars": max_text_chars, "chunk_rows": chunk_rows}
    return Plan(chunks, rejects, total, fingerprint_inputs(files, fields, options), fields.model_dump())
