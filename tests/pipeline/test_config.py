"""The pipeline file: bad settings are refused with the file and the key path, in one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrosearch.pipeline.config import PipelineConfigError, load_config
from tests.pipeline.conftest import write_pipeline

REPO = Path(__file__).resolve().parents[2]


def _base(tmp_path: Path) -> dict:
    return {
        "collection": str(tmp_path / "collection"),
        "work_dir": str(tmp_path / "work"),
        "stages": {"pretrain": {"method": "retromae", "steps": 2}, "finetune": {"steps": 2}},
    }


def _error(tmp_path: Path, data: dict) -> str:
    path = write_pipeline(tmp_path / "x.yaml", data)
    with pytest.raises(PipelineConfigError) as caught:
        load_config(path)
    return str(caught.value)


@pytest.mark.parametrize(
    ("stage", "key", "value", "expected"),
    [
        ("finetune", "steps", "many", "stages.finetune.steps: Input should be a valid integer"),
        ("mine", "rank_begin", 3, "stages.mine.rank_begin: Extra inputs are not permitted"),
        # The pretrain section is a union picked by `method`; its tag is not part of the key path.
        ("pretrain", "steps", 0, "stages.pretrain.steps: Input should be greater than 0"),
        ("pretrain", "decoder_mask_ratio", 1.5, "stages.pretrain.decoder_mask_ratio: Input should be less than 1"),
        ("ingest", "sink", "parquet", "stages.ingest.sink: Input should be 'faiss' or 'opensearch'"),
        ("evaluate", "after_pretrain", "maybe", "stages.evaluate.after_pretrain: Input should be a valid boolean"),
    ],
)
def test_a_bad_value_names_the_file_and_the_key(tmp_path, stage, key, value, expected):
    data = _base(tmp_path)
    data["stages"].setdefault(stage, {})[key] = value
    message = _error(tmp_path, data)
    assert message.startswith(f"{tmp_path / 'x.yaml'}: "), message
    assert expected in message, message


def test_rules_of_the_trainers_apply_to_their_stage(tmp_path):
    data = _base(tmp_path)
    data["stages"]["finetune"].update(batch_size=6, workers=4)
    assert "stages.finetune: batch_size 6 must be a multiple of workers x grad_accum" in _error(tmp_path, data)
    data = _base(tmp_path)
    data["stages"]["mine"] = {"rank_start": 10, "rank_end": 5}
    assert "stages.mine: rank_end 5 is before rank_start 10" in _error(tmp_path, data)


def test_missing_and_unknown_keys_at_every_level(tmp_path):
    data = _base(tmp_path)
    del data["collection"]
    data["stagez"] = {}
    data["stages"]["pretrain"] = {"method": "bert"}
    message = _error(tmp_path, data)
    assert "collection: Field required" in message
    assert "stagez: Extra inputs are not permitted" in message
    assert "stages.pretrain: Input tag 'bert' found using 'method' does not match" in message
    data = _base(tmp_path)
    data["stages"]["ingest"] = {"sink": "opensearch"}
    assert "stages.ingest: sink opensearch needs opensearch.index" in _error(tmp_path, data)


def test_settings_that_cannot_work_together_are_refused(tmp_path):
    data = _base(tmp_path)
    data["stages"]["mine"] = {"enabled": False}
    data["stages"]["finetune"]["group_size"] = 4
    assert "group_size > 1 needs mined negatives" in _error(tmp_path, data)
    data = _base(tmp_path)
    data["stages"]["finetune"]["epochs"] = 1
    assert "stages.finetune: give steps or epochs, not both" in _error(tmp_path, data)


def test_yaml_syntax_errors_name_the_line(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("name: x\nstages:\n  pretrain: [unclosed\n")
    with pytest.raises(PipelineConfigError, match=r"x\.yaml: line \d+: "):
        load_config(path)


def test_the_command_prints_one_line_and_exits_2(tmp_path):
    from retrosearch.cli import app

    data = _base(tmp_path)
    data["stages"]["finetune"]["steps"] = "many"
    path = write_pipeline(tmp_path / "x.yaml", data)
    for command in ("run", "plan"):
        result = CliRunner().invoke(app, ["pipeline", command, str(path)])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "stages.finetune.steps" in lines[0]
    assert not (tmp_path / "work").exists()
    missing = CliRunner().invoke(app, ["pipeline", "plan", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and "nope.yaml" in missing.output


def test_the_examples_are_valid(monkeypatch):
    monkeypatch.setenv("RETROSEARCH_DATA", "/data")
    scifact = load_config(REPO / "examples" / "scifact.yaml")
    assert scifact.stages.pretrain.method == "retromae" and scifact.stages.ingest.sink == "faiss"
    assert scifact.stages.finetune.steps > 0 and scifact.stages.evaluate.split == "test"
    msmarco = load_config(REPO / "examples" / "msmarco-gpu.yaml")
    assert msmarco.collection == Path("/data/msmarco")  # ${RETROSEARCH_DATA} expanded
    assert msmarco.stages.pretrain.use_gpu and msmarco.stages.ingest.sink == "opensearch"


def test_ingest_stage_takes_the_ingest_jobs_own_settings(tmp_path, capsys):
    """The ingest stage's keys are the ingest job's fields (same names, same rules); the keys of
    before the rename still load for one release, each with one warning line naming the new key."""
    from retrosearch.ingest.pipeline import IngestConfig
    from retrosearch.pipeline.config import INGEST_FIELDS, IngestSection

    assert INGEST_FIELDS <= set(IngestSection.model_fields) and INGEST_FIELDS <= set(IngestConfig.model_fields)
    data = _base(tmp_path)
    data["stages"]["ingest"] = {"block_rows": 0}
    assert "stages.ingest.block_rows: Input should be greater than 0" in _error(tmp_path, data)

    data["stages"]["ingest"] = {"ray_batch_size": 512, "num_gpus_per_worker": 1}
    ingest = load_config(write_pipeline(tmp_path / "old.yaml", data)).stages.ingest
    assert (ingest.block_rows, ingest.gpus_per_worker) == (512, 1)
    warned = capsys.readouterr().err.splitlines()
    assert warned == ["warning: stages.ingest.ray_batch_size is deprecated and will be removed; use stages.ingest.block_rows",
                      "warning: stages.ingest.num_gpus_per_worker is deprecated and will be removed; use "
                      "stages.ingest.gpus_per_worker"]
