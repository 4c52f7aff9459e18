"""How the job is laid out: read tasks cut chunks into length-sorted blocks; how many actors start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retrosearch.ingest.pipeline import IngestConfig, resolve_workers
from retrosearch.ingest.plan import plan_ingest
from retrosearch.ingest.source import ChunkSource
from retrosearch.core.collections import FieldMap


def _corpus(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "c.jsonl"
    # Lengths in no particular order, all different so the sorted order is unique.
    lines = [json.dumps({"_id": f"d{i}", "title": "", "text": "w" * ((i * 7) % n + 1)}) for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_tasks_cover_each_chunk_once_in_length_sorted_blocks(tmp_path):
    plan = plan_ingest([_corpus(tmp_path, 23)], chunk_rows=10)
    assert [c.rows for c in plan.chunks] == [10, 10, 3]
    source = ChunkSource(plan.chunks, FieldMap(), block_rows=4)
    tasks = source.get_read_tasks(parallelism=1)
    # 10 rows -> blocks of 4, 4, 2; 3 rows -> one block.
    assert [t.metadata.num_rows for t in tasks] == [4, 4, 2, 4, 4, 2, 3]
    blocks = [block for task in tasks for block in task()]
    assert [b.num_rows for b in blocks] == [4, 4, 2, 4, 4, 2, 3]
    ids = [i for b in blocks for i in b.column("id").to_pylist()]
    assert sorted(ids) == sorted(f"d{i}" for i in range(23))
    for chunk_blocks in (blocks[0:3], blocks[3:6]):
        lengths = [len(t) for b in chunk_blocks for t in b.column("text").to_pylist()]
        assert lengths == sorted(lengths, reverse=True)
        assert len({b.column("_chunk")[0].as_py() for b in chunk_blocks}) == 1


def _config(**kwargs) -> IngestConfig:
    return IngestConfig(inputs=[Path("x.jsonl")], **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "resources", "expected"),
    [
        ({"workers": 3}, {"CPU": 64, "GPU": 8}, 3),  # an explicit --workers always wins
        ({}, {"CPU": 2}, 2),  # local CPU: one actor per core
        ({}, {"CPU": 64}, 16),  # ... up to 16 (then several threads each)
        ({"cpus_per_worker": 2}, {"CPU": 8}, 4),
        ({"gpus_per_worker": 1}, {"CPU": 16, "GPU": 4}, 4),
        ({"gpus_per_worker": 0.5}, {"CPU": 16, "GPU": 4}, 8),
        ({"ray_address": "auto"}, {"CPU": 10}, 9),  # a cluster keeps a CPU for reads and writes
    ],
)
def test_default_worker_count(kwargs, resources, expected):
    assert resolve_workers(_config(**kwargs), resources) == expected
