"""values.schema.json: every value typed, no unknown key anywhere, required values required; the
command options generated from the CLI and in step with it."""

from __future__ import annotations

import json

import pytest

from tests.helm.chart import CHART, load_cli_schema, write_values

SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def helm_error(helm, tmp_path, values: dict) -> str:
    proc = helm.run("template", "rs", str(CHART), "-f", str(write_values(tmp_path, values)),
                    "--api-versions", "ray.io/v1/RayService", "--api-versions", "ray.io/v1/RayJob")
    assert proc.returncode != 0, f"accepted: {values}"
    return proc.stderr


@pytest.mark.parametrize(("values", "names"), [
    ({"serve": {"port": "eighty"}}, ["/serve/port", "got string, want integer"]),
    ({"ingest": {"options": {"workers": "four"}}}, ["/ingest/options/workers", "got string, want integer"]),
    ({"train": {"finetune": {"options": {"lora": "yes"}}}}, ["/train/finetune/options/lora", "want boolean"]),
    ({"serve": {"workers": {"resources": {"limits": {"cpu": "two"}}}}}, ["/serve/workers/resources/limits/cpu"]),
], ids=["port", "ingest-option", "trainer-flag", "quantity"])
def test_wrong_type_is_rejected(helm, tmp_path, values, names):
    error = helm_error(helm, tmp_path, values)
    assert all(n in error for n in names), error


@pytest.mark.parametrize(("values", "names"), [
    ({"imagee": {"repository": "x"}}, ["'imagee'"]),
    ({"serve": {"options": {"noSuchOption": 1}}}, ["/serve/options", "'noSuchOption'"]),
    ({"serve": {"options": {"rayAddress": "ray://elsewhere:10001"}}}, ["/serve/options", "'rayAddress'"]),
    ({"train": {"llara": {"workers": {"gpus": 2}}}}, ["/train/llara/workers", "'gpus'"]),
], ids=["top-level", "serve-option", "chart-owned-option", "nested"])
def test_unknown_key_is_rejected(helm, tmp_path, values, names):
    error = helm_error(helm, tmp_path, values)
    assert all(n in error for n in names), error


@pytest.mark.parametrize(("values", "names"), [
    ({"opensearch": {"url": None}}, ["/opensearch", "'url'"]),
    ({"image": {"repository": None}}, ["/image", "'repository'"]),
    ({"ingest": {"enabled": True, "options": {"sink": "opensearch"}}}, ["/ingest/options", "'corpus'"]),
    ({"train": {"retromae": {"enabled": True, "options": {"out": "/data/m"}}}}, ["/train/retromae/options", "'corpus'"]),
    ({"opensearch": {"credentials": {"create": True, "username": "admin"}}}, ["/opensearch/credentials/password"]),
    ({"serve": {"options": {"indexName": None, "serveReplicas": 2}}}, ["/serve/options", "'index'", "'indexName'", "'model'"]),
], ids=["opensearch-url", "image", "ingest-corpus", "retromae-corpus", "secret-password", "serve-target"])
def test_missing_required_value_is_rejected(helm, tmp_path, values, names):
    error = helm_error(helm, tmp_path, values)
    assert all(n in error for n in names), error


def _objects(node, path="#"):
    """Object schemas; not the conditions (if/then/anyOf), which only add constraints to one."""
    if isinstance(node, dict):
        if node.get("type") == "object" or "properties" in node:
            yield path, node
        for key, value in node.items():
            if key not in ("if", "then", "anyOf"):
                yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _objects(value, f"{path}/{i}")


def test_every_object_in_the_schema_is_closed():
    """additionalProperties false everywhere, except maps of strings (labels, node selectors, env)
    and Kubernetes resource lists, whose keys are the user's."""
    open_maps = []
    for path, node in _objects(SCHEMA):
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} admits unknown keys"
        elif path != "#/properties/global":
            extra = node.get("additionalProperties")
            assert extra in ({"type": "string"}, {"$ref": "#/definitions/quantity"}), f"{path}: {extra}"
            open_maps.append(path)
    assert "#/properties/env" in open_maps


def test_every_value_is_described_by_the_schema():
    """values.yaml itself passes (helm would refuse it otherwise) and has no key the schema lacks."""
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value, schema, path):
        if "$ref" in schema:
            schema = SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]]
        for sub in schema.get("allOf", []):
            walk(value, sub, path)
        if isinstance(value, dict) and "properties" in schema:
            for key, item in value.items():
                assert key in schema["properties"], f"{path}.{key} is not in the schema"
                walk(item, schema["properties"][key], f"{path}.{key}")

    walk(values, SCHEMA, "values")


def test_option_definitions_follow_the_cli():
    cli_schema = load_cli_schema()
    assert cli_schema.main(["--check"]) == 0, "run python helm/cli_schema.py"
    ingest = SCHEMA["definitions"]["ingestOptions"]["properties"]
    assert ingest["gpusPerWorker"]["type"] == "number" and ingest["corpus"]["type"] == "array"
    assert SCHEMA["definitions"]["ingestOptionsRequired"] == {"required": ["corpus"]}
    assert "input" not in ingest and "numGpusPerWorker" not in ingest  # old spellings stay out of the chart
    assert "rayAddress" not in ingest and "opensearchUrl" not in ingest  # the chart sets those
