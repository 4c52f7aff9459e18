"""Pipeline fixtures: a tiny SciFact cut with a train and a test split, a tiny BERT encoder, and a
pipeline file small enough to run every stage in seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import DATA, cut_collection
from tests.trainers.conftest import build_tiny_bert_encoder


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT (hidden 32) with all-MiniLM's WordPiece tokenizer."""
    from retrosearch.core.encoder import resolve_model_path

    return build_tiny_bert_encoder(tmp_path_factory.mktemp("pipeline-encoder"), resolve_model_path("minilm"))


@pytest.fixture(scope="session")
def train_test_collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 SciFact training queries and 8 test queries, their relevant abstracts and 30 distractors."""
    source = DATA / "scifact"
    if not source.exists():
        pytest.skip(f"shared data not found at {source}")
    root = tmp_path_factory.mktemp("pipeline-collection")
    train = cut_collection(source, root / "train", num_queries=12, distractors=30, split="train")
    test = cut_collection(source, root / "test", num_queries=8, distractors=0, split="test")
    dest = root / "scifact-tiny"
    (dest / "qrels").mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        lines = {}
        for part in (train, test):
            for line in (part / name).read_text().splitlines():
                lines.setdefault(json.loads(line)["_id"], line)
        (dest / name).write_text("\n".join(lines.values()) + "\n")
    for part, split in ((train, "train"), (test, "test")):
        (dest / "qrels" / f"{split}.tsv").write_text((part / "qrels" / f"{split}.tsv").read_text())
    return dest


def tiny_pipeline(collection: Path, model: Path, work_dir: Path) -> dict[str, Any]:
    """Every stage, a few steps each, a FAISS sink."""
    return {
        "name": "tiny",
        "collection": str(collection),
        "model": str(model),
        "work_dir": str(work_dir),
        "embedding": {"batch_size": 16, "threads": 1, "show_progress": False},
        "stages": {
            "pretrain": {
                "method": "retromae", "steps": 4, "batch_size": 4, "max_length": 32, "max_blocks": 64,
                "checkpoint_every": 2, "log_every": 1,
            },
            "mine": {"rank_start": 2, "rank_end": 20, "num_negatives": 3},
            "finetune": {
                "steps": 3, "batch_size": 4, "group_size": 2, "query_max_length": 16, "passage_max_length": 32,
                "checkpoint_every": 2, "log_every": 1, "lr": 1e-4,
            },
            "evaluate": {"split": "test", "top_k": 20},
            "ingest": {"sink": "faiss", "workers": 1, "chunk_rows": 40},
        },
    }


def write_pipeline(path: Path, data: dict[str, Any]) -> Path:
    """``data`` as a YAML file at ``path``."""
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def corpus_size(collection: Path) -> int:
    return len((collection / "corpus.jsonl").read_text().splitlines())
