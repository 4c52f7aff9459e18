"""The resume manifest: which chunks of a plan each sink has durably written.

Layout of a state folder (one per input fingerprint + encoder + destination)::

    plan.json                      the plan (chunks, expected rows, rejects)
    fragments/<chunk>/<uuid>.json  one record per durable write: {"rows": n, "data": file or null}

File sinks keep their part files in a :class:`PartLayout`: nested under the state folder
(``parts/<chunk>/<uuid>.npz``, the FAISS sink) or flat in a folder of their own
(``part-<chunk>-<uuid>.parquet`` directly in the Parquet dataset folder, whose state then lives
in ``OUT/_ingest/<key>/``, a folder Parquet readers skip). A record's ``data`` is relative to the
layout's folder.

A write task writes its data first (a part file, written under a hidden ``.``-prefixed name and
renamed into place, or an acknowledged bulk load), then its fragment record, each atomically. A
chunk is done when its fragments add up to the rows the plan expects (and their part files still
exist). On a rerun, the fragments and part files of unfinished chunks are deleted and those
chunks are embedded again; finished chunks are skipped; part files no record names (a write killed
between its rename and its record, a write retried after its node was lost, or an earlier ingest
of other input into the same dataset) are deleted. A record is named after the ids of its rows,
so a retried write replaces the record of its first attempt rather than adding to it. Writes are idempotent by id everywhere, so a chunk written twice can never leave a
document twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from retrosearch.ingest.plan import Chunk, Plan


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@dataclass(frozen=True)
class PartLayout:
    """Where a file sink's part files go: ``root/parts/<chunk>/<uuid><suffix>`` (nested) or
    ``root/part-<chunk>-<uuid><suffix>`` (flat, so that ``root`` is itself a dataset folder)."""

    root: Path
    suffix: str
    flat: bool = False

    def new_part(self, chunk: str) -> str:
        """A fresh part file name for ``chunk``, relative to :attr:`root`."""
        name = f"{uuid.uuid4().hex}{self.suffix}"
        return f"part-{chunk}-{name}" if self.flat else f"parts/{chunk}/{name}"

    @staticmethod
    def temporary(path: Path) -> Path:
        """The hidden name a part file is written under before its rename (readers skip ``.`` files)."""
        return path.with_name(f".{path.name}.tmp")

    def files(self) -> list[Path]:
        """Every part file (and leftover temporary file) of this layout, recorded or not."""
        if self.flat:
            pattern = re.compile(rf"\.?part-\d+-\d+-[0-9a-f]{{32}}{re.escape(self.suffix)}(\.tmp)?")
            if not self.root.is_dir():
                return []
            return sorted(p for p in self.root.iterdir() if p.is_file() and pattern.fullmatch(p.name))
        return sorted(p for p in self.root.glob("parts/*/*") if p.is_file())


class IngestState:
    """The state folder of one ingest destination (``parts``: where a file sink's part files go)."""

    def __init__(self, root: Path, parts: PartLayout | None = None) -> None:
        self.root = Path(root)
        self.fragments = self.root / "fragments"
        self.parts = parts
        self.data_root = parts.root if parts else self.root

    def record(self, chunk: str, rows: int, data: str | None = None, ids: Sequence[str] | None = None) -> None:
        """Record that ``rows`` rows of ``chunk`` are durably written (``data``: their part file).

        With ``ids`` (the rows' document ids) the record is named after them, so writing the same
        rows again replaces the record instead of adding one: Ray retries a write task whose node
        was lost, and the rows its first attempt recorded would otherwise count twice, leaving the
        chunk "incomplete" (more rows than planned) and the job asking for a rerun.
        """
        name = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:32] if ids is not None else uuid.uuid4().hex
        payload = json.dumps({"rows": rows, "data": data})
        atomic_write_text(self.fragments / chunk / f"{name}.json", payload)

    def _records(self) -> list[tuple[str, dict]]:
        if not self.fragments.exists():
            return []
        return [(r.parent.name, json.loads(r.read_text())) for r in sorted(self.fragments.glob("*/*.json"))]

    def written_rows(self) -> dict[str, int]:
        """Rows recorded per chunk (a record whose part file has gone counts for nothing)."""
        counts: dict[str, int] = {}
        for chunk, record in self._records():
            data = record.get("data")
            rows = record["rows"] if not data or (self.data_root / data).exists() else 0
            counts[chunk] = counts.get(chunk, 0) + rows
        return counts

    def data_files(self) -> list[Path]:
        """Part files of all recorded fragments (file sinks)."""
        return [self.data_root / r["data"] for _, r in self._records() if r.get("data")]

    def incomplete(self, plan: Plan) -> list[Chunk]:
        """Chunks whose rows are not all recorded (read-only; see :meth:`pending`)."""
        written = self.written_rows()
        return [c for c in plan.chunks if c.rows > 0 and written.get(c.key, 0) != c.rows]

    def pending(self, plan: Plan) -> tuple[list[Chunk], int]:
        """Chunks still to write and the rows already done; clears what unfinished chunks left.

        Must run before any writer starts: a chunk with some but not all of its rows recorded is
        wiped (records and part files) and written again from scratch, records of chunks the plan
        does not have are dropped, and part files no record names are deleted (:meth:`sweep`).
        """
        written = self.written_rows()
        pending, done_rows = [], 0
        for chunk in plan.chunks:
            have = written.get(chunk.key, 0)
            if have == chunk.rows and chunk.rows > 0:
                done_rows += have
                continue
            self.clear(chunk.key)
            if chunk.rows > 0:
                pending.append(chunk)
        for key in set(written) - {c.key for c in plan.chunks}:
            self.clear(key)
        self.sweep()
        return pending, done_rows

    def sweep(self) -> int:
        """Delete part files (and temporary files) that no record names; returns how many.

        Only while no writer runs: before the job (from :meth:`pending`) or after it.
        """
        if self.parts is None:
            return 0
        recorded = {(self.data_root / r["data"]).resolve() for _, r in self._records() if r.get("data")}
        stray = [p for p in self.parts.files() if p.resolve() not in recorded]
        for path in stray:
            path.unlink(missing_ok=True)
        return len(stray)

    def clear(self, chunk: str) -> None:
        """Forget a chunk: its fragment records and their part files (flat layout: the recorded
        ones; :meth:`sweep` takes the rest)."""
        folder = self.fragments / chunk
        if folder.exists():
            for record in folder.glob("*.json"):
                data = json.loads(record.read_text()).get("data")
                if data:
                    (self.data_root / data).unlink(missing_ok=True)
            shutil.rmtree(folder)
        # A flat layout's strays of this chunk (unrecorded or temporary files) go in the sweep
        # that follows in pending(); a nested layout keeps them in the chunk's own folder.
        if self.parts is None or not self.parts.flat:
            parts = self.data_root / "parts" / chunk
            if parts.exists():
                shutil.rmtree(parts)
