"""The whole pipeline on a tiny model and collection: real training, mining, evaluation and FAISS.

The tests share one work folder and run in order: a first run does everything, a second skips
everything, a changed fine-tuning setting reruns fine-tuning and what follows it only.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from retrosearch.pipeline.config import parse_config
from retrosearch.pipeline.manifest import MANIFEST_FILE, read_manifest
from retrosearch.pipeline.runner import plan, run
from tests.pipeline.conftest import corpus_size, tiny_pipeline

STAGES = ["pretrain", "mine", "finetune", "evaluate", "ingest", "serve"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory, train_test_collection, tiny_encoder, ray_local):
    work = tmp_path_factory.mktemp("pipeline-run") / "work"
    return {"data": tiny_pipeline(train_test_collection, tiny_encoder, work), "work": work,
            "collection": train_test_collection}


def _run(data: dict) -> tuple[dict, list[str]]:
    lines: list[str] = []
    records = run(parse_config(copy.deepcopy(data), "tiny.yaml"), lines.append)
    return {r.name: r for r in records}, lines


def _mtimes(work: Path) -> dict[str, int]:
    return {name: (work / name / MANIFEST_FILE).stat().st_mtime_ns for name in STAGES}


def test_first_run_does_every_stage(setup):
    from retrosearch.core.encoder import Encoder
    from retrosearch.core.index import load_index

    records, lines = _run(setup["data"])
    assert [records[name].status for name in STAGES] == ["ran"] * 6, lines
    assert any(line.startswith("[pipeline] 1/6 pretrain: running") for line in lines)

    work = setup["work"]
    for name in STAGES:
        manifest = read_manifest(work / name)
        assert manifest is not None and manifest.status == "done" and manifest.seconds is not None
    pretrain = read_manifest(work / "pretrain")
    assert pretrain.settings["steps"] == 4 and pretrain.settings["corpus"] is None  # keyed by content instead
    assert set(pretrain.inputs) >= {"file:corpus"}
    finetune = read_manifest(work / "finetune")
    # Fine-tuning is keyed on what it reads: the pretrained model and the mined file, by hash.
    assert finetune.inputs["stage:pretrain"] == pretrain.output_hash
    assert finetune.inputs["stage:mine"] == read_manifest(work / "mine").output_hash

    assert Encoder.load(records["pretrain"].outputs["model"]).spec.method == "retromae"
    mined = [json.loads(line) for line in Path(records["mine"].outputs["train_file"]).read_text().splitlines()]
    assert len(mined) == 12 and all(group["negatives"] for group in mined)
    assert 0.0 <= records["mine"].figures["pretrained"]["ndcg@10"] <= 1.0  # the pretrained model, scored too
    assert Encoder.load(records["finetune"].outputs["model"]).spec.method == "finetune"
    assert records["finetune"].figures["steps"] == 3 and records["finetune"].figures["loss"] > 0

    evaluation = json.loads(Path(records["evaluate"].outputs["eval"]).read_text())
    assert evaluation["num_queries"] == 8 and evaluation["config"]["model"] == records["finetune"].outputs["model"]
    assert records["evaluate"].figures["ndcg@10"] == round(evaluation["ndcg@10"], 4)
    # with it, how spread the queries' vectors are, before fine-tuning and after
    assert records["evaluate"].figures["query_cosine"] == round(evaluation["query_cosine"], 4)
    assert -1.0 <= records["mine"].figures["pretrained"]["query_cosine"] <= 1.0

    index = load_index(records["ingest"].outputs["index_dir"])
    assert index.count() == corpus_size(setup["collection"]) == records["ingest"].figures["docs"]
    assert index.meta.model_fingerprint == pretrain_fingerprint(records["finetune"].outputs["model"])
    assert records["serve"].outputs["serve"].startswith(f"retrosearch serve --index {work / 'ingest' / 'index'}")


def pretrain_fingerprint(model: str) -> str:
    from retrosearch.pipeline.stages import model_hash

    return model_hash(model)


def test_second_run_skips_every_stage(setup):
    before = _mtimes(setup["work"])
    decisions = plan(parse_config(copy.deepcopy(setup["data"])))
    assert [(d.stage.name, d.action) for d in decisions] == [(name, "skip") for name in STAGES]
    records, lines = _run(setup["data"])
    assert [records[name].status for name in STAGES] == ["skipped"] * 6, lines
    assert _mtimes(setup["work"]) == before
    # A skipped stage still hands its figures and outputs to the summary.
    assert "ndcg@10" in records["evaluate"].figures and records["serve"].outputs["serve"]


def test_a_changed_setting_reruns_its_stage_and_the_later_ones(setup):
    work = setup["work"]
    before = _mtimes(work)
    old_model_hash = read_manifest(work / "finetune").output_hash
    changed = copy.deepcopy(setup["data"])
    changed["stages"]["finetune"]["steps"] = 4

    decisions = {d.stage.name: d for d in plan(parse_config(copy.deepcopy(changed)))}
    assert [decisions[name].action for name in STAGES] == ["skip", "skip", "run", "run", "run", "run"]
    assert "settings changed: steps: 3 -> 4" in decisions["finetune"].reason
    assert decisions["evaluate"].reason == "upstream finetune runs first"

    records, lines = _run(changed)
    assert [records[name].status for name in STAGES] == ["skipped", "skipped", "ran", "ran", "ran", "ran"], lines
    after = _mtimes(work)
    assert after["pretrain"] == before["pretrain"] and after["mine"] == before["mine"]
    assert all(after[name] > before[name] for name in STAGES[2:])
    finetune = read_manifest(work / "finetune")
    assert finetune.settings["steps"] == 4 and finetune.output_hash != old_model_hash
    # A fresh run, not a resume of the 3-step run: the old checkpoints went with the old settings.
    assert "resumed_from_step" not in records["finetune"].figures
    assert read_manifest(work / "evaluate").inputs["stage:finetune"] == finetune.output_hash


def test_runtime_only_settings_rerun_nothing(setup):
    changed = copy.deepcopy(setup["data"])
    changed["stages"]["finetune"].update(steps=4, log_every=2)
    changed["embedding"]["threads"] = 2
    assert [d.action for d in plan(parse_config(changed))] == ["skip"] * 6
