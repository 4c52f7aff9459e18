"""helm lint and helm template over the default and example values; the rendered objects against
Kubernetes' schemas (built-in kinds) and KubeRay's CRDs (RayService, RayJob)."""

from __future__ import annotations

import copy
import functools

import pytest
import yaml

from tests.helm.chart import CHART, EXAMPLES, KUBERAY_SCHEMAS, REPO, by_kind, one, pod_specs

# (id, values files, --set): the defaults, each example, and everything switched on at once.
RENDERS = [
    ("defaults", (), ()),
    *[(f.stem, (f,), ()) for f in EXAMPLES],
    ("everything", (REPO / "helm" / "examples" / "gpu-cluster.yaml",), (
        "train.retromae.enabled=true", "train.llara.enabled=true", "ingress.enabled=true",
        "networkPolicy.enabled=true", "networkPolicy.allowPodLabels.role=client", "serve.apiKeySecret.name=api-key",
        "opensearch.tls.caSecret=opensearch-ca", "metrics.serviceMonitor.enabled=true")),
]
IDS = [r[0] for r in RENDERS]
# Kubernetes versions the chart's kubeVersion admits, oldest and newest known to kubernetes-validate.
KUBE_VERSIONS = ("1.28.0", "1.37.0")


def render(helm, name):
    _, files, sets = next(r for r in RENDERS if r[0] == name)
    return helm.template(*files, sets=sets)


def test_examples_exist():
    assert {f.stem for f in EXAMPLES} >= {"cpu-laptop", "gpu-cluster", "external-opensearch"}


def test_chart_metadata():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["kubeVersion"] == ">=1.28.0-0"
    import tomllib

    assert chart["appVersion"] == tomllib.load(open(REPO / "pyproject.toml", "rb"))["project"]["version"]


@pytest.mark.parametrize("values", [None, *EXAMPLES], ids=["defaults", *[f.stem for f in EXAMPLES]])
def test_lint_strict(helm, values):
    proc = helm.run("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("name", IDS)
def test_template_renders(helm, name):
    objects = render(helm, name)
    kinds = {o["kind"] for o in objects}
    assert {"ConfigMap", "Service", "RayService", "Pod"} <= kinds
    for o in objects:
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "rs"


def test_without_kuberay_the_install_fails_with_what_to_do(helm):
    proc = helm.run("template", "rs", str(CHART))
    assert proc.returncode != 0
    assert "needs the KubeRay operator's CRDs" in proc.stderr
    assert "ray.io/v1/RayService" in proc.stderr and "ray.io/v1/RayJob" in proc.stderr
    assert "helm install kuberay-operator kuberay/kuberay-operator" in proc.stderr
    # One CRD present is not enough.
    proc = helm.run("template", "rs", str(CHART), "--api-versions", "ray.io/v1/RayService")
    assert proc.returncode != 0 and "this cluster has no ray.io/v1/RayJob." in proc.stderr


def test_kube_version_is_pinned(helm):
    proc = helm.run("template", "rs", str(CHART), "--kube-version", "1.27.0",
                    "--api-versions", "ray.io/v1/RayService", "--api-versions", "ray.io/v1/RayJob")
    assert proc.returncode != 0 and "kubeVersion" in proc.stderr and ">=1.28.0-0" in proc.stderr


@pytest.mark.parametrize("name", IDS)
def test_builtin_objects_match_kubernetes_schemas(helm, name):
    import kubernetes_validate

    builtin = [o for o in render(helm, name) if "." not in o["apiVersion"].split("/")[0] or
               o["apiVersion"].split("/")[0].endswith(".k8s.io")]
    assert builtin
    for obj in builtin:
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} (Kubernetes {version}): {exc.message} at {list(exc.path)}")


@functools.cache
def crd_validator(kind: str):
    """A validator of KubeRay's served ray.io/v1 schema of KIND, closed: a field the API server would
    silently prune (an unknown or misplaced key) is an error here."""
    import jsonschema

    crd = yaml.safe_load((KUBERAY_SCHEMAS / f"ray.io_{kind.lower()}s.yaml").read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def close(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
                node.setdefault("additionalProperties", False)
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("name", IDS)
def test_kuberay_objects_match_the_crds(helm, name):
    custom = [o for o in render(helm, name) if o["apiVersion"] == "ray.io/v1"]
    assert custom
    for obj in custom:
        errors = sorted(crd_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, "\n".join(f"{obj['kind']} {list(e.path)}: {e.message}" for e in errors)


def test_crd_check_catches_a_wrong_field():
    """The closed CRD schema is not vacuous: a misplaced field and a wrong type are errors."""
    rayjob = {"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "x"},
              "spec": {"entrypoint": "retrosearch ingest", "entrypointz": "typo", "backoffLimit": "three"}}
    messages = [e.message for e in crd_validator("RayJob").iter_errors(rayjob)]
    assert any("entrypointz" in m for m in messages) and any("'three'" in m for m in messages)


@pytest.mark.parametrize("name", IDS)
def test_every_container_has_requests_and_limits(helm, name):
    for obj in render(helm, name):
        for spec in pod_specs(obj):
            for container in spec.get("initContainers", []) + spec["containers"]:
                resources = container.get("resources", {})
                assert resources.get("requests") and resources.get("limits"), f"{obj['kind']} {container['name']}"
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert spec["securityContext"]["runAsNonRoot"] is True


def test_query_workers_probe_healthz_and_readyz_and_the_service_selects_them(helm):
    objects = render(helm, "defaults")
    cluster = one(objects, "RayService")["spec"]["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    container = workers["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "serve"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "serve"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "serve"}
    assert {"name": "serve", "containerPort": 8000} in container["ports"]
    # The head keeps KubeRay's own probes: its readiness gates the operator's deploys of the app.
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert "readinessProbe" not in head and "livenessProbe" not in head
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"

    service = one(objects, "Service")
    labels = workers["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert service["spec"]["ports"][0]["targetPort"] == "serve"
    for annotated in (service["metadata"], workers["template"]["metadata"]):
        assert annotated["annotations"]["prometheus.io/scrape"] == "true"
        assert annotated["annotations"]["prometheus.io/path"] == "/metrics"


def test_helm_test_pod_sends_one_search(helm):
    pod = one(render(helm, "defaults"), "Pod", "-test-search")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["ENDPOINT"] == "/search" and env["SERVICE_URL"] == "http://rs-retrosearch:8000"
    code = pod["spec"]["containers"][0]["command"][2]
    compile(code, "test-search", "exec")  # the script the pod runs is valid Python
    assert "httpx.post" in code


def test_optional_objects(helm):
    objects = render(helm, "everything")
    ingress = one(objects, "Ingress")
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "rs-retrosearch"
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["path"] == "/metrics"
    hook = one(objects, "Job", "-opensearch-connect")
    assert "post-install" in hook["metadata"]["annotations"]["helm.sh/hook"]
    assert not by_kind(render(helm, "defaults"), "Job"), "the connect hook is off by default"
    assert not by_kind(render(helm, "defaults"), "RayJob"), "no job runs by default"


def test_service_monitor_needs_its_crd(helm):
    proc = helm.run("template", "rs", str(CHART), "--api-versions", "ray.io/v1/RayService",
                    "--api-versions", "ray.io/v1/RayJob", "--set", "metrics.serviceMonitor.enabled=true")
    assert proc.returncode != 0 and "monitoring.coreos.com/v1 ServiceMonitor" in proc.stderr


@pytest.mark.parametrize(("sets", "message"), [
    (("train.finetune.enabled=true", "train.finetune.options.out=/data/m"), "train.finetune: this job writes files"),
    (("serve.options.index=/data/idx",), "give index (a FAISS folder) or indexName"),
    (("opensearch.credentials.existingSecret=s", "opensearch.credentials.create=true",
      "opensearch.credentials.username=u", "opensearch.credentials.password=p"), "give existingSecret or create, not both"),
])
def test_contradictory_values_fail_with_the_reason(helm, sets, message):
    proc = helm.run("template", "rs", str(CHART), "--api-versions", "ray.io/v1/RayService",
                    "--api-versions", "ray.io/v1/RayJob", *[a for s in sets for a in ("--set", s)])
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_kubernetes_check_catches_a_wrong_field():
    import kubernetes_validate

    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"},
           "spec": {"containers": [{"name": "c", "image": "i", "livenessProbes": {}}]}}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessProbes"):
        kubernetes_validate.validate(pod, KUBE_VERSIONS[0], strict=True)
