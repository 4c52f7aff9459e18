"""``retrosearch bench train``: the hand-written loop and the harness step on the same tiny model and data.

Only the logic is checked here (both loops train, tokens are counted, the figures and the plot
are written); the speed figures themselves live in benchmarks/results/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retrosearch.benchmarks import train_speed
from retrosearch.cli import app
from tests.conftest import scifact_head
from tests.trainers.conftest import bert_tokenizer_dir, tiny_bert_encoder  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scifact_head(tmp_path_factory, 40, "train-speed-corpus")


def test_both_loops_step_on_the_same_shapes(corpus: Path, tiny_bert_encoder: Path) -> None:
    args = ("retromae", corpus, str(tiny_bert_encoder), 32, 4, 2, 1, 1, 0)
    hand = train_speed.hand_written(*args)
    harness = train_speed.harness_step(*args)
    for result in (hand, harness):
        assert result["steps"] == 2 and result["step_s_median"] > 0 and result["examples_per_s"] > 0
    # Packed RetroMAE blocks are full: both loops see 4 blocks of at most 32 tokens per step.
    for result in (hand, harness):
        tokens_per_example = result["tokens_per_s"] / result["examples_per_s"]
        assert 16 < tokens_per_example <= 32


def test_command_writes_figures_and_plot(corpus: Path, tiny_bert_encoder: Path, tmp_path: Path, monkeypatch) -> None:
    # The two loops in this process (the spawned processes of the real run would re-import the test's modules).
    monkeypatch.setattr(train_speed, "in_fresh_process", lambda measure, *args: measure(*args))
    out = tmp_path / "train_speed.json"
    result = CliRunner().invoke(app, ["bench", "train", "--corpus", str(corpus.parent), "--model", str(tiny_bert_encoder),
                                      "--train-batch-size", "4", "--max-length", "32", "--steps", "2", "--warmup", "1",
                                      "--threads", "1", "--skip-ray", "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert set(payload["results"]) == {"a_hand_written", "b_harness"} and "b/a" in payload["ratios"]
    assert payload["ratios"]["b/a"] == pytest.approx(
        payload["results"]["b_harness"]["step_s_median"] / payload["results"]["a_hand_written"]["step_s_median"])
    assert out.with_suffix(".png").stat().st_size > 0


def test_unknown_method_is_one_line_error(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--corpus", str(corpus), "--method", "bert"])
    assert result.exit_code == 2 and "'bert' is not one of 'retromae'," in result.output and "'finetune'" in result.output


def test_both_loops_take_the_device_and_precision(corpus: Path, tiny_bert_encoder: Path) -> None:
    """bf16 autocast in both loops (the GPU check runs them so), here on the CPU, which autocasts too."""
    args = ("retromae", corpus, str(tiny_bert_encoder), 32, 4, 2, 1, 1, 0)
    for measure in (train_speed.hand_written, train_speed.harness_step):
        result = measure(*args, device="cpu", precision="bf16")
        assert result["steps"] == 2 and result["tokens_per_s"] > 0


def test_unknown_precision_is_one_line_error(corpus: Path) -> None:
    result = CliRunner().invoke(app, ["bench", "train", "--corpus", str(corpus), "--precision", "fp8"])
    assert result.exit_code == 2 and "'fp8' is not one of" in result.output and "'bf16'" in result.output
