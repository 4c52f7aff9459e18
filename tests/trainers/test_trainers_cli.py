"""``retrosearch train retromae``: settings from a file and the command line, refused before any work."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from retrosearch.cli import app


def _train(tmp_path, *extra: str):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"text": "a passage"}) + "\n")
    argv = ["train", "retromae", "--corpus", str(corpus), "--out", str(tmp_path / "out"), *extra]
    return CliRunner().invoke(app, argv)


def test_unknown_config_section_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("train:\n  steps: 3\nmodel:\n  lr: 1\n")
    result = _train(tmp_path, "--config", str(config))
    assert result.exit_code == 2
    assert "unknown sections ['model']" in result.output


def test_file_and_options_merge_and_invalid_settings_name_the_field(tmp_path):
    result = _train(tmp_path, "--decoder-mask-ratio", "1.5")
    assert result.exit_code == 2 and "decoder_mask_ratio" in result.output
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": {"batch_size": 6}}))
    result = _train(tmp_path, "--config", str(config), "--workers", "4")  # 6 from the file, 4 from the option
    assert (
        result.exit_code == 2 and "batch_size 6 must be a multiple of workers x grad_accum" in result.output
    )
    assert not (tmp_path / "out").exists()
