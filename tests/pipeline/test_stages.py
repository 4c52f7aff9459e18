"""Each stage's own outputs decide whether a finished run still counts; training stages read their
progress from the harness's run events."""

from __future__ import annotations

from pathlib import Path

import pytest

from retrosearch.pipeline.config import parse_config
from retrosearch.pipeline.stages import STAGES, build_stages
from retrosearch.trainers.harness.events import EventType, append_event
from tests.pipeline.conftest import tiny_pipeline


@pytest.fixture
def stages(tmp_path: Path) -> dict:
    pipeline = parse_config(tiny_pipeline(tmp_path / "collection", tmp_path / "encoder", tmp_path / "work"))
    return {stage.name: stage for stage in build_stages(pipeline)}


def _touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return str(path)


def test_every_stage_declares_its_outputs(stages):
    declared = {cls.name: cls.output_paths for cls in STAGES}
    assert declared == {
        "pretrain": ("model",), "mine": ("train_file",), "finetune": ("model",), "evaluate": ("eval",),
        "ingest": (), "serve": (),
    }


@pytest.mark.parametrize(
    ("name", "key", "others"),
    [
        ("pretrain", "model", {"checkpoint": "/gone/checkpoint_000001"}),
        ("finetune", "model", {"checkpoint": "/gone/checkpoint_000001"}),
        ("mine", "train_file", {}),
        ("evaluate", "eval", {}),
    ],
)
def test_a_stage_counts_only_its_own_outputs(stages, tmp_path, name, key, others):
    stage = stages[name]
    outputs = {key: _touch(tmp_path / name / "out"), **others}
    # Other outputs (a checkpoint Ray has since deleted) do not make the stage rerun.
    assert stage.outputs_exist(outputs)
    Path(outputs[key]).unlink()
    assert not stage.outputs_exist(outputs)
    assert not stage.outputs_exist(others)  # a manifest without the declared output


def test_ingest_and_serve_check_what_they_made(stages, tmp_path):
    index = tmp_path / "index"
    assert not stages["ingest"].outputs_exist({"index_dir": str(index)})
    _touch(index / "meta.json")
    assert stages["ingest"].outputs_exist({"index_dir": str(index)})
    assert stages["serve"].outputs_exist({"serve": "retrosearch serve --index x"})  # commands, no files


def test_training_progress_comes_from_the_run_events(stages):
    stage = stages["pretrain"]
    assert stage.progress() is None  # never ran
    run = stage.folder / "train" / "retromae"
    run.mkdir(parents=True)
    append_event(run, EventType.STARTED, 0, steps=12)
    append_event(run, EventType.PROGRESS, 4, loss=1.0)
    assert stage.progress() is None  # trained, but nothing a rerun could resume from
    append_event(run, EventType.CHECKPOINT, 3, path=str(run / "checkpoint_000000"))
    append_event(run, EventType.CHECKPOINT, 6, path=str(run / "checkpoint_000001"))
    assert stage.checkpoint_step() == 6 and stage.progress() == "checkpoint at step 6"


def test_the_pretrained_model_is_scored_with_the_fine_tunings_pooling(tmp_path):
    def evaluate_stage(**finetune):
        data = tiny_pipeline(tmp_path / "collection", tmp_path / "encoder", tmp_path / "work")
        data["stages"]["mine"]["model"] = "start"  # not mined by the pretrained model: evaluate scores it
        data["stages"]["evaluate"]["after_pretrain"] = True
        data["stages"]["finetune"].update(finetune)
        return {s.name: s for s in build_stages(parse_config(data))}["evaluate"]

    plain, mean = evaluate_stage(), evaluate_stage(pooling="mean")
    assert plain.scores_pretrain() and mean.scores_pretrain()
    # the figures before fine-tuning read the vectors fine-tuning starts from ...
    assert mean.pretrained_pooling() == "mean" and mean.extra_settings()["pretrained_pooling"] == "mean"
    # ... and a pipeline that sets no pooling keeps the settings (so the recipe key) it had before
    assert plain.pretrained_pooling() is None and plain.extra_settings() == {"score_pretrained": True}
    assert evaluate_stage(pooling="mean", enabled=False).pretrained_pooling() is None
