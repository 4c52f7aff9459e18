"""The resume manifest: which chunks of a plan each sink has durably written.

Layout of a state folder (one per input fingerprint + encoder + destination)::

    plan.json                      the plan (chunks, expected rows, rejects)
    fragments/<chunk>/<uuid>.json  one record per durable write: {"rows": n, "data": file or null}

A write task writes its data first (a file sink's part file, or an acknowledged bulk load), then
its fragment record, each atomically. A chunk is done when its fragments add up to the rows the
plan expects. On a rerun, the fragments (and part files) of unfinished chunks are deleted and
those chunks are embedded again; finished chunks are skipped. Writes are idempotent by id
everywhere, so a chunk written twice can never leave a document twice.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from retrosearch.ingest.plan import Chunk, Plan


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see either the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class IngestState:
    """The state folder of one ingest destination."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.fragments = self.root / "fragments"

    def record(self, chunk: str, rows: int, data: str | None = None) -> None:
        """Record that ``rows`` rows of ``chunk`` are durably written (``data``: their part file)."""
        payload = json.dumps({"rows": rows, "data": data})
        atomic_write_text(self.fragments / chunk / f"{uuid.uuid4().hex}.json", payload)

    def written_rows(self) -> dict[str, int]:
        """Rows recorded per chunk."""
        counts: dict[str, int] = {}
        if not self.fragments.exists():
            return counts
        for record in self.fragments.glob("*/*.json"):
            counts[record.parent.name] = counts.get(record.parent.name, 0) + json.loads(record.read_text())["rows"]
        return counts

    def data_files(self) -> list[Path]:
        """Part files of all recorded fragments (file sinks)."""
        files = []
        for record in sorted(self.fragments.glob("*/*.json")):
            data = json.loads(record.read_text()).get("data")
            if data:
                files.append(self.root / data)
        return files

    def incomplete(self, plan: Plan) -> list[Chunk]:
        """Chunks whose rows are not all recorded (read-only; see :meth:`pending`)."""
        written = self.written_rows()
        return [c for c in plan.chunks if c.rows > 0 and written.get(c.key, 0) != c.rows]

    def pending(self, plan: Plan) -> tuple[list[Chunk], int]:
        """Chunks still to write and the rows already done; clears what unfinished chunks left.

        Must run before any writer starts: a chunk with some but not all of its rows recorded is
        wiped (records and part files) and written again from scratch.
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
        return pending, done_rows

    def clear(self, chunk: str) -> None:
        """Forget a chunk: its fragment records and their part files."""
        folder = self.fragments / chunk
        if folder.exists():
            for record in folder.glob("*.json"):
                data = json.loads(record.read_text()).get("data")
                if data:
                    (self.root / data).unlink(missing_ok=True)
            shutil.rmtree(folder)
        parts = self.root / "parts" / chunk
        if parts.exists():
            shutil.rmtree(parts)
