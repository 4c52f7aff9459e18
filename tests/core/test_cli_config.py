"""One option vocabulary: a value in --config is used unless the command line names another one.

The commands are invoked in-process; the settings they build are captured at the point where
they would start work (a stand-in for build_settings that records its result and stops).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from retrosearch.core import cli_options


class Captured(Exception):
    def __init__(self, settings) -> None:
        self.settings = settings


@pytest.fixture
def capture(monkeypatch):
    real = cli_options.build_settings

    def recording(config=None, **options):
        raise Captured(real(config, **options))

    monkeypatch.setattr(cli_options, "build_settings", recording)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({
        "encoder": {"model": "model-from-config", "threads": 3, "runtime": "onnx", "quantize": "int8"},
        "faiss": {"hnsw_m": 7, "hnsw_ef_search": 99},
        "opensearch": {"hnsw_m": 7, "url": "http://127.0.0.1:9999"},
        "serve": {"max_batch_size": 5},
    }))
    return path


def _settings(args: list[str]):
    from retrosearch.cli import app

    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, Captured), (result.output, result.exception)
    return result.exception.settings


COMMANDS = {
    "index": ["index", "--corpus", "c.jsonl", "--out", "x"],
    "eval": ["eval", "--collection", "c"],
    "ingest": ["ingest", "--corpus", "c.jsonl"],
    "search": ["search", "--index", "x", "q"],
    "serve": ["serve", "--index", "x"],
    "quickstart": ["quickstart"],
    "mine-negatives": ["mine-negatives", "--collection", "c", "--out", "o.jsonl"],
}
# What each command takes from the shared vocabulary (search picks its model from the index).
CHECKS = {
    "index": ("model", "hnsw_m"), "eval": ("model", "hnsw_m", "ef_search"), "ingest": ("model", "hnsw_m"),
    "search": ("ef_search",), "serve": ("ef_search", "serve"), "quickstart": ("model",), "mine-negatives": ("model",),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_values_are_used(command: str, capture, config_file: Path):
    settings = _settings([*COMMANDS[command], "--config", str(config_file)])
    checks = CHECKS[command]
    assert settings.encoder.threads == 3
    assert settings.encoder.runtime == "onnx" and settings.encoder.quantize == "int8"
    assert settings.opensearch.url == "http://127.0.0.1:9999"
    if "model" in checks:
        assert settings.encoder.model == "model-from-config"
    if "hnsw_m" in checks:
        assert settings.faiss.hnsw_m == 7 and settings.opensearch.hnsw_m == 7
    if "ef_search" in checks:
        assert settings.faiss.hnsw_ef_search == 99
    if "serve" in checks:
        assert settings.serve.max_batch_size == 5


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_command_line_wins_over_config(command: str, capture, config_file: Path):
    checks = CHECKS[command]
    extra = ["--threads", "1"] if command not in ("search", "serve") else []
    if command == "serve":
        extra = ["--threads", "1", "--max-batch-size", "9", "--ef-search", "11"]
    if "model" in checks:
        extra += ["--model", "model-from-cli"]
    if "hnsw_m" in checks:
        extra += ["--hnsw-m", "12"]
    if command in ("eval", "search"):
        extra += ["--ef-search", "11"]
    if command == "search":
        extra += ["--opensearch-url", "http://127.0.0.1:1"]
    extra += ["--runtime", "torch", "--quantize", "none"]
    settings = _settings([*COMMANDS[command], "--config", str(config_file), *extra])
    assert settings.encoder.runtime == "torch" and settings.encoder.quantize == "none"
    if command != "search":
        assert settings.encoder.threads == 1
    else:
        assert settings.opensearch.url == "http://127.0.0.1:1"
    if "model" in checks:
        assert settings.encoder.model == "model-from-cli"
    if "hnsw_m" in checks:
        assert settings.faiss.hnsw_m == 12 and settings.opensearch.hnsw_m == 12
    if "ef_search" in checks:
        assert settings.faiss.hnsw_ef_search == 11
    if command == "serve":
        assert settings.serve.max_batch_size == 9


def test_without_config_the_settings_defaults_apply(capture):
    settings = _settings(COMMANDS["index"])
    assert settings.encoder.model == "minilm" and settings.faiss.hnsw_m == 32 and settings.opensearch.hnsw_m == 32


def test_a_bad_config_names_the_key(tmp_path: Path):
    from retrosearch.cli import app

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"faiss": {"hnsw_mm": 3}}))
    result = CliRunner().invoke(app, ["index", "--corpus", "c.jsonl", "--out", "x", "--config", str(bad)])
    assert result.exit_code == 2 and "hnsw_mm" in result.output


def test_one_yaml_file_configures_settings_and_training_commands_alike(capture, tmp_path: Path):
    """The same file, with Settings sections and the train commands' sections, is read by every command."""
    import yaml

    from retrosearch.cli import app

    shared = tmp_path / "workflow.yaml"
    shared.write_text(yaml.safe_dump({"encoder": {"model": "m-from-yaml", "threads": 2}, "train": {"steps": 4},
                                      "method": {"max_length": 64}}))
    settings = _settings([*COMMANDS["eval"], "--config", str(shared)])
    assert settings.encoder.model == "m-from-yaml" and settings.encoder.threads == 2
    shared.write_text("encoder: [unclosed\n")
    result = CliRunner().invoke(app, [*COMMANDS["eval"], "--config", str(shared)])
    assert result.exit_code == 2 and f"--config {shared}: not valid YAML" in result.output and "line 1" in result.output
    shared.write_text(yaml.safe_dump({"encoder": {}, "enocder": {}}))
    result = CliRunner().invoke(app, [*COMMANDS["eval"], "--config", str(shared)])
    assert result.exit_code == 2 and "unknown sections ['enocder']" in result.output


def test_a_bad_runtime_is_one_line_error():
    from retrosearch.cli import app

    result = CliRunner().invoke(app, ["index", "--corpus", "c.jsonl", "--out", "x", "--runtime", "tensorrt"])
    assert result.exit_code == 2 and "runtime" in result.output


# Commands that take only part of the vocabulary: a value from --config for one of their options
# is used, and the same option on the command line wins.
PARTIAL = {
    "bench quality": (["bench", "quality", "--collection", "c"], "--threads", "1", lambda s: s.encoder.threads),
    "bench ann": (["bench", "ann", "--collection", "c"], "--opensearch-url", "http://127.0.0.1:1",
                  lambda s: s.opensearch.url),
    "bench methods": (["bench", "methods", "--collection", "c"], "--model", "m-cli", lambda s: s.encoder.model),
    "bench ingest": (["bench", "ingest", "--corpus", "c.jsonl"], "--runtime", "torch", lambda s: s.encoder.runtime),
    "bench serve": (["bench", "serve", "--collection", "c"], "--model", "m-cli", lambda s: s.encoder.model),
    "opensearch connect": (["opensearch", "connect", "--service-url", "http://127.0.0.1:2"], "--opensearch-url",
                           "http://127.0.0.1:1", lambda s: s.opensearch.url),
}
FROM_CONFIG = {"--threads": 3, "--opensearch-url": "http://127.0.0.1:9999", "--model": "model-from-config",
               "--runtime": "onnx"}


@pytest.mark.parametrize("command", sorted(PARTIAL))
def test_every_settings_command_reads_config_and_the_command_line_wins(command: str, capture, config_file: Path):
    args, flag, value, read = PARTIAL[command]
    assert read(_settings([*args, "--config", str(config_file)])) == FROM_CONFIG[flag]
    assert str(read(_settings([*args, "--config", str(config_file), flag, value]))) == value


# Options that share a name with a setting but mean something else in that command.
OWN_MEANING = {
    ("search", "--model"), ("serve", "--model"),  # default: the index's model
    ("bench report", "--model"),  # handed to each benchmark as given
    # Training: the start checkpoint, tokens per training block, threads per worker, GPUs per Ray Train worker.
    *((f"train {m}", o) for m in ("retromae", "mlm", "llara", "finetune")
      for o in ("--model", "--max-length", "--threads", "--gpus-per-worker")),
    # Resources of each Ray worker of the command: here an embedding actor, in `serve` a replica.
    ("ingest", "--gpus-per-worker"), ("ingest", "--cpus-per-worker"), ("bench ingest", "--gpus-per-worker"),
    # The OpenSearch node's port, a background service's port, the key a connector sends.
    *(("opensearch " + c, "--port") for c in ("start", "stop", "status")), ("serve stop", "--port"),
    ("bench opensearch-cluster", "--port"),  # the secured local cluster's first port
    ("serve status", "--port"), ("opensearch connect", "--api-key-env"),
    ("bench ann", "--oversample"), ("bench vectors", "--oversample"),  # the sweeps' oversample values (repeatable)
    # The training benchmark: tokens per block, threads and device of every run.
    *(("bench train", o) for o in ("--max-length", "--threads", "--device")),
}


def _commands(group, path=()):
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))
    if getattr(group, "params", None) is not None and path:
        yield " ".join(path), group


def test_one_vocabulary_every_settings_option_reads_the_same_everywhere():
    import typer.main

    from retrosearch.cli import app

    derived = {}
    for field, spec in cli_options.SETTING_OPTIONS.items():
        info = typer.main.get_command(_probe(field)).params[0]
        derived.setdefault(spec.names[0].split("/")[0], []).append((info.help, repr(info.type_descriptor.annotation)))
    seen = 0
    for path, command in _commands(typer.main.get_command(app)):
        for param in command.params:
            if param.hidden:  # an old spelling (tests/test_cli_vocabulary.py checks those)
                continue
            long = next((o for o in param.opts if o.startswith("--")), None)
            if long in derived and (path, long) not in OWN_MEANING:
                assert (param.help, repr(param.type_descriptor.annotation)) in derived[long], (path, long)
                seen += 1
    assert seen > 100  # the shared options of a dozen commands


def _probe(field: str):
    probe = typer.Typer()

    @probe.command()
    @cli_options.with_settings(cli_options.OptionGroup("probe", (field,)), config=False)
    def one(settings=None) -> None:
        """Only the option under test."""

    return probe


def test_an_option_that_hides_a_setting_is_refused():
    with pytest.raises(TypeError, match="hide settings options"):
        @cli_options.with_settings(cli_options.ENCODER)
        def clash(model: str = "", settings=None) -> None: ...
