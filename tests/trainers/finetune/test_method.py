"""The fine-tuning method on the shared harness (one local worker), and the mine-negatives command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from retrosearch.cli import app
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder import Encoder
from retrosearch.trainers.finetune.config import FinetuneConfig, MiningConfig
from retrosearch.trainers.finetune.data import read_groups
from retrosearch.trainers.finetune.method import FinetuneMethod
from retrosearch.trainers.harness import RunInfo, TrainConfig, WorkerContext, WorkerLoop


def _method(model: Path, collection: Path, tmp_path: Path, **fields) -> FinetuneMethod:
    config = FinetuneConfig(
        model=str(model), collection=collection, split="train", eval_split=None, group_size=2,
        mining=MiningConfig(rank_start=2, rank_end=20, num_negatives=3), mined_file=tmp_path / "mined.jsonl",
        query_max_length=16, passage_max_length=48, **fields,
    )
    return FinetuneMethod(config)


def test_trains_on_mined_groups_and_exports(tiny_bert_encoder: Path, scifact_train: Path, tmp_path: Path) -> None:
    method = _method(tiny_bert_encoder, scifact_train, tmp_path)
    groups = method.load_examples()
    assert method.load_examples() is groups  # mined once, reused when fit() asks again
    assert read_groups(tmp_path / "mined.jsonl") == groups
    assert all(len(g.negatives) == 3 for g in groups)

    loop = WorkerLoop(method, TrainConfig(out=tmp_path / "out", steps=3, batch_size=4, lr=1e-3), groups, WorkerContext.local("cpu"))
    losses = [loop.train_step().loss for _ in range(3)]
    assert all(0 < loss < 20 for loss in losses)
    method.export(loop.raw_model, tmp_path / "model", RunInfo(3, 3, 1, 4, 42, {"loss": losses[-1]}))

    spec = json.loads((tmp_path / "model" / "retrosearch.json").read_text())
    assert spec["method"] == "finetune" and spec["provenance"]["steps"] == 3
    assert spec["provenance"]["config"]["mining"]["rank_end"] == 20
    encoder = Encoder.load(EncoderSettings(model=str(tmp_path / "model"), device="cpu", show_progress=False, max_length=48))
    base = Encoder.load(EncoderSettings(model=str(tiny_bert_encoder), device="cpu", show_progress=False, max_length=48))
    queries = [g.query for g in groups[:3]]
    trained = torch.from_numpy(encoder.encode_queries(queries))
    with torch.no_grad():
        batch = encoder.tokenizer(queries, padding=True, return_tensors="pt")
        direct = loop.raw_model.encoder.eval()(batch["input_ids"], batch["attention_mask"])
    torch.testing.assert_close(trained, direct, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(trained, torch.from_numpy(base.encode_queries(queries)), atol=1e-4)


def test_matryoshka_finetune_records_its_dimensions(tiny_bert_encoder: Path, scifact_train: Path,
                                                    tmp_path: Path) -> None:
    """Trained with the loss summed over 32, 16 and 8 dimensions; the checkpoint says so, keeps the
    fingerprint rules (the record is not part of it), and the runtime cuts its vectors to 16."""
    import numpy as np

    from retrosearch.core.encoder.checkpoint import fingerprint, read_spec
    from retrosearch.trainers.finetune.loss import MatryoshkaLoss

    method = _method(tiny_bert_encoder, scifact_train, tmp_path, matryoshka_dimensions=[8, 32, 16])
    assert method.config.matryoshka_dimensions == [32, 16, 8]
    groups = method.load_examples()
    loop = WorkerLoop(method, TrainConfig(out=tmp_path / "out", steps=2, batch_size=4, lr=1e-3), groups,
                      WorkerContext.local("cpu"))
    assert isinstance(loop.raw_model.loss, MatryoshkaLoss) and loop.raw_model.loss.renormalize
    losses = [loop.train_step().loss for _ in range(2)]
    assert all(0 < loss < 60 for loss in losses)  # three InfoNCE terms summed
    method.export(loop.raw_model, tmp_path / "model", RunInfo(2, 2, 1, 4, 42, {"loss": losses[-1]}))

    spec = json.loads((tmp_path / "model" / "retrosearch.json").read_text())
    assert spec["matryoshka_dimensions"] == [32, 16, 8]
    assert spec["provenance"]["config"]["matryoshka_dimensions"] == [32, 16, 8]
    path = tmp_path / "model"
    unrecorded = read_spec(path).model_copy(update={"matryoshka_dimensions": None})
    assert fingerprint(path, read_spec(path)) == fingerprint(path, unrecorded)

    settings = dict(model=str(path), device="cpu", show_progress=False, max_length=48)
    full = Encoder.load(EncoderSettings(**settings)).encode_queries([g.query for g in groups[:3]])
    cut = Encoder.load(EncoderSettings(**settings, dimensions=16)).encode_queries(
        [g.query for g in groups[:3]])
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"matryoshka_dimensions \[64, 8\]: .* gives 32-dimensional"):
        _method(tiny_bert_encoder, scifact_train, tmp_path, matryoshka_dimensions=[64, 8]).build_model()


def test_refuses_groups_without_negatives(tiny_bert_encoder: Path, scifact_train: Path, tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"query": "q", "positives": ["p"], "negatives": ["n"]}\n{"query": "r", "positives": ["p"]}\n')
    method = FinetuneMethod(FinetuneConfig(model=str(tiny_bert_encoder), train_file=path, group_size=2))
    with pytest.raises(ValueError, match="1 of 2 training queries have no negatives"):
        method.load_examples()
    with pytest.raises(ValueError, match="hold out another one"):
        FinetuneConfig(collection=scifact_train, split="train", eval_split="train")


def test_mine_negatives_command(tiny_bert_encoder: Path, scifact_train: Path, tmp_path: Path) -> None:
    out = tmp_path / "hn.jsonl"
    args = [
        "mine-negatives", "--collection", str(scifact_train), "--out", str(out), "--model", str(tiny_bert_encoder),
        "--rank-start", "3", "--rank-end", "15", "--num-negatives", "2", "--max-length", "48", "--quiet",
        "--save-index", str(tmp_path / "index"), "--device", "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "mined" in result.output and len(read_groups(out)) == 12
    again = CliRunner().invoke(app, [*args[:-4], "--index", str(tmp_path / "index"), "--out", str(tmp_path / "b.jsonl")])
    assert again.exit_code == 0, again.output
    assert read_groups(tmp_path / "b.jsonl") == read_groups(out)
    bad = CliRunner().invoke(app, [*args[:2], str(tmp_path), *args[3:]])
    assert bad.exit_code == 2 and "corpus.jsonl" in bad.output
