"""Every ``retrosearch train`` command: options derived from the config models, one --config file format.

The commands run in-process up to the point where training would start; the configs they built
are captured there (a stand-in for ``launch.run_training`` that records its arguments and stops).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from retrosearch.cli import app
from retrosearch.trainers import launch
from retrosearch.trainers.finetune import cli as finetune_cli
from retrosearch.trainers.harness.config import TrainConfig
from retrosearch.trainers.llara import cli as llara_cli
from retrosearch.trainers.retromae import cli as retromae_cli


class Captured(Exception):
    def __init__(self, method, train) -> None:
        self.method, self.train = method, train


@pytest.fixture
def capture(monkeypatch):
    def recording(method, train):
        raise Captured(method.config, train)

    monkeypatch.setattr(launch, "run_training", recording)


def _run(*argv: str) -> Captured:
    result = CliRunner().invoke(app, list(argv))
    assert isinstance(result.exception, Captured), (result.output, result.exception)
    return result.exception


def _corpus(tmp_path: Path) -> str:
    path = tmp_path / "corpus.jsonl"
    path.write_text(json.dumps({"text": "a passage"}) + "\n")
    return str(path)


# Per command: what it needs on the command line, and one method field set from the file and one from the line.
COMMANDS = {
    "retromae": (lambda tmp: ["--corpus", _corpus(tmp)], ("encoder_mask_ratio", 0.2), ("--max-length", "64")),
    "llara": (lambda tmp: ["--corpus", _corpus(tmp)], ("next_weight", 0.5), ("--max-length", "64")),
    "finetune": (lambda tmp: ["--train-file", str(tmp / "groups.jsonl")], ("temperature", 0.02),
                 ("--group-size", "3")),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_config_file_values_are_used_and_the_command_line_wins(command, suffix, capture, tmp_path):
    needs, (file_field, file_value), (flag, given) = COMMANDS[command]
    sections = {"train": {"steps": 7, "lr": 0.5, "seed": 3}, "method": {file_field: file_value},
                "encoder": {"threads": 2}}  # a Settings section: read by other commands, ignored here
    config = tmp_path / f"run{suffix}"
    config.write_text(yaml.safe_dump(sections) if suffix == ".yaml" else json.dumps(sections))
    got = _run("train", command, *needs(tmp_path), "--out", str(tmp_path / "out"), "--config", str(config),
               "--steps", "9", flag, given)
    assert got.train.steps == 9 and got.train.lr == 0.5 and got.train.seed == 3  # line wins, file used
    assert getattr(got.method, file_field) == file_value
    field = flag.removeprefix("--").replace("-", "_")
    assert getattr(got.method, field) == int(given)
    assert got.train.out == tmp_path / "out"


def test_defaults_apply_without_config_and_finetune_keeps_its_learning_rate(capture, tmp_path):
    got = _run("train", "retromae", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "out"))
    assert got.train.lr == TrainConfig.model_fields["lr"].default and got.method.model == "minilm"
    got = _run("train", "finetune", "--train-file", "g.jsonl", "--out", str(tmp_path / "ft"))
    assert got.train.lr == 2e-5
    assert got.method.mined_file == tmp_path / "ft.hard-negatives.jsonl"
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": {"lr": 1e-3}}))
    got = _run("train", "finetune", "--train-file", "g.jsonl", "--out", str(tmp_path / "ft"), "--config", str(config))
    assert got.train.lr == 1e-3  # the file beats the method's own default


def test_nested_options_merge_into_the_files_nested_sections(capture, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"method": {"mining": {"rank_end": 50, "seed": 4}, "lora_config": {"r": 4}}}))
    got = _run("train", "finetune", "--train-file", "g.jsonl", "--out", str(tmp_path / "ft"), "--config", str(config),
               "--rank-start", "5", "--lora-alpha", "8", "--lora-targets", "q_proj, v_proj")
    assert (got.method.mining.rank_start, got.method.mining.rank_end, got.method.mining.seed) == (5, 50, 4)
    assert (got.method.lora_config.r, got.method.lora_config.alpha) == (4, 8)
    assert got.method.lora_config.target_modules == ["q_proj", "v_proj"]


def test_empty_text_means_none_where_the_field_allows_it(capture, tmp_path):
    got = _run("train", "retromae", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "o"), "--title-field", "")
    assert got.method.title_field is None
    got = _run("train", "finetune", "--train-file", "g.jsonl", "--out", str(tmp_path / "o"), "--eval-split", "",
               "--no-cross-device", "--lora")
    assert got.method.eval_split is None and got.method.cross_device_negatives is False and got.method.lora is True


def test_bad_values_name_the_config_key_and_the_option(tmp_path):
    result = CliRunner().invoke(app, ["train", "retromae", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "o"),
                                      "--decoder-mask-ratio", "1.5"])
    assert result.exit_code == 2
    assert "method.decoder_mask_ratio (--decoder-mask-ratio)" in result.output
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": {"stepz": 3}}))
    result = CliRunner().invoke(app, ["train", "llara", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "o"),
                                      "--config", str(config)])
    assert result.exit_code == 2 and "train.stepz" in result.output
    result = CliRunner().invoke(app, ["train", "finetune", "--train-file", "g.jsonl", "--out", str(tmp_path / "o"),
                                      "--steps", "5", "--epochs", "2"])
    assert result.exit_code == 2 and "give steps or epochs, not both" in result.output
    assert not (tmp_path / "o").exists()


def test_epochs_set_the_steps_from_the_number_of_examples():
    train = TrainConfig(out=Path("o"), epochs=2, batch_size=16)
    assert train.for_examples(50).steps == 7  # ceil(2 * 50 / 16)
    assert TrainConfig(out=Path("o"), steps=5).for_examples(50).steps == 5
    with pytest.raises(ValueError, match="not both"):
        TrainConfig(out=Path("o"), steps=5, epochs=1)


def test_every_train_option_sets_a_config_field():
    """No option of a train command is declared outside the models (except the evaluation's own two)."""
    import typer

    from retrosearch.trainers.finetune.config import FinetuneConfig
    from retrosearch.trainers.llara.config import LLaRAConfig
    from retrosearch.trainers.options import RUN_OPTIONS, _field_info
    from retrosearch.trainers.retromae.config import RetroMAEConfig

    for option in RUN_OPTIONS:
        _field_info(TrainConfig, option.path)
    models = {"retromae": (RetroMAEConfig, retromae_cli.RETROMAE_OPTIONS), "llara": (LLaRAConfig, llara_cli.LLARA_OPTIONS),
              "finetune": (FinetuneConfig, finetune_cli.FINETUNE_OPTIONS)}
    group = typer.main.get_command(app).commands["train"]
    for name, (model, options) in models.items():
        for option in options:
            _field_info(model, option.path)  # KeyError if the option names no field
        flags = {o for p in group.commands[name].params if not p.hidden for o in p.opts if o.startswith("--")}
        own = flags - {f.split("/")[0] for o in (*RUN_OPTIONS, *options) for f in o.names} - {"--config", "--help"}
        assert own <= {"--eval-batch-size", "--eval-device"}, (name, own)


@pytest.mark.parametrize(("given", "use_gpu", "batch"), [
    (["--gpus-per-worker", "1", "--train-batch-size", "8"], True, 8),
    (["--gpus-per-worker", "0"], False, 16),
    (["--use-gpu", "--batch-size", "4"], True, 4),  # the spellings before the rename, for one release
    (["--no-gpu"], False, 16),
], ids=["gpus-1", "gpus-0", "old-use-gpu", "old-no-gpu"])
def test_gpus_per_worker_and_train_batch_size_set_the_run(capture, tmp_path, given, use_gpu, batch):
    got = _run("train", "retromae", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "o"), *given)
    assert (got.train.use_gpu, got.train.batch_size) == (use_gpu, batch)


def test_a_training_worker_takes_one_gpu_or_none(tmp_path):
    result = CliRunner().invoke(app, ["train", "retromae", "--corpus", _corpus(tmp_path), "--out", str(tmp_path / "o"),
                                      "--gpus-per-worker", "2"])
    assert result.exit_code == 2 and "--gpus-per-worker 2: a training worker uses 0 or 1 GPU" in result.output


@pytest.mark.parametrize("command", ["retromae", "mlm"])
def test_a_repeated_corpus_reads_every_one_in_turn(capture, tmp_path, command):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    first, second = _corpus(tmp_path / "a"), _corpus(tmp_path / "b")
    got = _run("train", command, "--corpus", first, "--corpus", second, "--out", str(tmp_path / "o"))
    assert got.method.corpus == [first, second]  # not only the last one given
    assert _run("train", command, "--corpus", first, "--out", str(tmp_path / "o")).method.corpus == [first]
