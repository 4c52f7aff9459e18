"""Hard-negative mining through the encoder runtime and a FAISS index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from retrosearch.core.collections import BeirCollection
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.finetune.config import MiningConfig
from retrosearch.trainers.finetune.data import read_groups
from retrosearch.trainers.finetune.mining import mine_collection, mining_provenance, write_mined


@pytest.fixture(scope="module")
def with_duplicate(scifact_train: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small train cut plus a copy, under another id, of the first query's first positive."""
    root = tmp_path_factory.mktemp("dup") / "scifact-dup"
    shutil.copytree(scifact_train, root)
    collection = BeirCollection(root)
    qid, judged = next(iter(collection.qrels("train").items()))
    original = next(d for d in collection.corpus if d.id == next(iter(judged)))
    with (root / "corpus.jsonl").open("a") as handle:
        handle.write(json.dumps({"_id": "dup-of-" + original.id, "title": original.title, "text": original.text}) + "\n")
    return root


@pytest.fixture(scope="module")
def encoder(tiny_bert_encoder: Path) -> Encoder:
    return Encoder.load(EncoderSettings(model=str(tiny_bert_encoder), device="cpu", show_progress=False, batch_size=32, max_length=64))


def test_mined_negatives_never_contain_a_positive(with_duplicate: Path, encoder: Encoder, tmp_path: Path) -> None:
    collection = BeirCollection(with_duplicate)
    count = len(collection.corpus)
    # A window over the whole ranking: every positive is a candidate the filter has to remove.
    config = MiningConfig(rank_start=1, rank_end=count, num_negatives=count)
    result = mine_collection(collection, "train", encoder, config)
    qrels = collection.qrels("train")
    texts = {d.id: (d.title, d.text) for d in collection.corpus}
    assert result.stats["positives_skipped_in_window"] == sum(len(j) for j in qrels.values())
    for group in result.groups:
        positive_ids = set(qrels[group.query_id])
        negative_ids = {n.id for n in group.negatives}
        assert not negative_ids & positive_ids
        assert not {texts[i] for i in negative_ids} & {texts[i] for i in positive_ids}
        # Everything else is a negative: the filter removed nothing but positives and their copies.
        copies = {i for i in texts if texts[i] in {texts[p] for p in positive_ids}} - positive_ids
        assert len(negative_ids) == count - len(positive_ids) - len(copies)
    first = result.groups[0]
    assert "dup-of-" + next(iter(qrels[first.query_id])) not in {n.id for n in first.negatives}

    out = tmp_path / "negatives.jsonl"
    meta_path = write_mined(out, result, mining_provenance(collection, "train", encoder, config))
    assert read_groups(out) == result.groups
    meta = json.loads(meta_path.read_text())
    assert meta["split"] == "train" and meta["model_fingerprint"] == encoder.fingerprint


def test_window_and_sampling(scifact_train: Path, encoder: Encoder) -> None:
    collection = BeirCollection(scifact_train)
    config = MiningConfig(rank_start=5, rank_end=20, num_negatives=4, seed=1)
    first = mine_collection(collection, "train", encoder, config)
    again = mine_collection(collection, "train", encoder, config, index=first.index)
    assert again.groups == first.groups
    for group in first.groups:
        ranks = [n.extra["rank"] for n in group.negatives]
        assert len(ranks) == 4 and ranks == sorted(ranks) and all(5 <= r <= 20 for r in ranks)
    reseeded = mine_collection(collection, "train", encoder, config.model_copy(update={"seed": 2}), index=first.index)
    assert [g.negatives for g in reseeded.groups] != [g.negatives for g in first.groups]
