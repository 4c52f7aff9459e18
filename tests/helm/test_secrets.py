"""OpenSearch credentials reach the pods only from a Secret, as the environment variables the CLI reads."""

from __future__ import annotations

import base64
import json

import pytest

from tests.helm.chart import EXAMPLES, REPO, SENTINEL_PASSWORD, by_kind, one, pod_specs

ENV_USER, ENV_PASSWORD = "RETROSEARCH_OPENSEARCH_USER", "RETROSEARCH_OPENSEARCH_PASSWORD"
ENV_USER_FILE, ENV_PASSWORD_FILE = f"{ENV_USER}_FILE", f"{ENV_PASSWORD}_FILE"
GPU = REPO / "helm" / "examples" / "gpu-cluster.yaml"
# Every kind of pod on at once: RayService, all RayJobs, the connect hook, the test pod.
ALL_PODS = ("train.retromae.enabled=true", "train.llara.enabled=true")


def test_env_names_are_the_clients():
    from retrosearch.core.opensearch import client

    assert (client.ENV_USER, client.ENV_PASSWORD) == (ENV_USER, ENV_PASSWORD)
    assert client.ENV_CA_CERTS == "RETROSEARCH_OPENSEARCH_CA_CERTS"
    assert client.ENV_VERIFY == "RETROSEARCH_OPENSEARCH_VERIFY_CERTS"


def _containers(objects):
    for obj in objects:
        for spec in pod_specs(obj):
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield obj, container


def test_chart_created_secret_holds_the_password_and_nothing_else_does(helm):
    sets = (*ALL_PODS, "opensearch.credentials.create=true", "opensearch.credentials.username=admin",
            f"opensearch.credentials.password={SENTINEL_PASSWORD}", "opensearch.credentials.existingSecret=")
    objects = helm.template(GPU, sets=sets)
    secret = one(objects, "Secret")
    assert base64.b64decode(secret["data"]["password"]).decode() == SENTINEL_PASSWORD
    encoded = base64.b64encode(SENTINEL_PASSWORD.encode()).decode()
    for obj in objects:
        if obj is secret:
            continue
        text = json.dumps(obj)
        assert SENTINEL_PASSWORD not in text and encoded not in text, f"{obj['kind']} {obj['metadata']['name']} shows the password"
    _assert_env_from_secret(objects, secret["metadata"]["name"], wanted_pods=8)


@pytest.mark.parametrize("values", EXAMPLES, ids=[f.stem for f in EXAMPLES])
def test_examples_never_carry_credentials_inline(helm, values):
    objects = helm.template(values)
    assert not by_kind(objects, "Secret"), "examples use existing secrets (or none)"
    for _, container in _containers(objects):
        for env in container.get("env", []):
            if env["name"] in (ENV_USER, ENV_PASSWORD, "RETROSEARCH_API_KEY"):
                assert "value" not in env and "secretKeyRef" in env["valueFrom"], env
    for config in by_kind(objects, "ConfigMap"):
        assert not {ENV_USER, ENV_PASSWORD} & set(config["data"])


def test_existing_secret_is_referenced_by_every_retrosearch_container(helm):
    objects = helm.template(GPU, sets=ALL_PODS)
    _assert_env_from_secret(objects, "opensearch-admin", wanted_pods=8)


def _assert_env_from_secret(objects, secret_name, wanted_pods):
    """Every RetroSearch container gets the credentials from ``secret_name``: as environment variables
    taken from it, or (asFiles) as the files of it mounted read-only and named by the _FILE variables."""
    checked = 0
    for obj, container in _containers(objects):
        if obj["kind"] == "Pod" or container["name"] == "wait-for-service":
            continue  # the test pod and the wait only talk to our service
        env = {e["name"]: e for e in container["env"]}
        if ENV_USER_FILE in env:
            assert ENV_USER not in env and ENV_PASSWORD not in env, obj["kind"]
            _assert_files_from_secret(obj, container, env, secret_name)
        else:
            for name, key in ((ENV_USER, "username"), (ENV_PASSWORD, "password")):
                wanted = {"name": secret_name, "key": key}
                assert env[name]["valueFrom"]["secretKeyRef"] == wanted, (obj["kind"], name)
        checked += 1
    # 2 RayService pod templates, 4 RayJobs x 2, the connect hook.
    assert checked >= wanted_pods


def _assert_files_from_secret(obj, container, env, secret_name):
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "opensearch-credentials"]
    assert mount["readOnly"] is True
    for name, key in ((ENV_USER_FILE, "username"), (ENV_PASSWORD_FILE, "password")):
        assert env[name]["value"] == f"{mount['mountPath']}/{key}", (obj["kind"], name)
    volumes = [v for spec in pod_specs(obj) for v in spec["volumes"] if v["name"] == "opensearch-credentials"]
    assert volumes and all(v["secret"]["secretName"] == secret_name for v in volumes)
    assert all({i["key"] for i in v["secret"]["items"]} == {"username", "password"} for v in volumes)
    assert all(v["secret"]["defaultMode"] == 0o440 for v in volumes)  # the pods' group only


def test_credentials_as_files_or_as_variables(helm):
    from retrosearch.core.opensearch import client

    assert (client.ENV_USER_FILE, client.ENV_PASSWORD_FILE) == (ENV_USER_FILE, ENV_PASSWORD_FILE)
    external = REPO / "helm" / "examples" / "external-opensearch.yaml"
    as_files = helm.template(external)
    _assert_env_from_secret(as_files, "opensearch-credentials", wanted_pods=2)
    assert all(ENV_USER_FILE in {e["name"] for e in c["env"]} for o, c in _containers(as_files)
               if o["kind"] != "Pod" and c["name"] != "wait-for-service")
    as_variables = helm.template(external, sets=("opensearch.credentials.asFiles=false",))
    _assert_env_from_secret(as_variables, "opensearch-credentials", wanted_pods=2)
    for obj, container in _containers(as_variables):
        assert not [m for m in container.get("volumeMounts", []) if m["name"] == "opensearch-credentials"]


def test_ca_certificates_from_a_secret(helm):
    objects = helm.template(REPO / "helm" / "examples" / "external-opensearch.yaml")
    config = one(objects, "ConfigMap")["data"]
    assert config["RETROSEARCH_OPENSEARCH_CA_CERTS"] == "/etc/retrosearch/opensearch-ca/ca.crt"
    assert config["RETROSEARCH_OPENSEARCH_VERIFY_CERTS"] == "true"
    head = one(objects, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
    (volume,) = [v for v in head["volumes"] if v["name"] == "opensearch-ca"]
    assert volume["secret"]["secretName"] == "opensearch-ca"
    assert {"name": "opensearch-ca", "mountPath": "/etc/retrosearch/opensearch-ca", "readOnly": True} in head["containers"][0]["volumeMounts"]


def test_api_key_from_a_secret_reaches_the_service_and_the_test(helm):
    objects = helm.template(REPO / "helm" / "examples" / "external-opensearch.yaml")
    from tests.helm.chart import serve_argv

    argv = serve_argv(one(objects, "RayService"))
    assert argv[argv.index("--api-key-env") + 1] == "RETROSEARCH_API_KEY"
    for obj, container in _containers(objects):
        if obj["kind"] in ("RayService", "Pod"):
            env = {e["name"]: e for e in container["env"]}
            assert env["RETROSEARCH_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "retrosearch-api-key", "key": "api-key"}
