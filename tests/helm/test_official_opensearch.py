"""The official OpenSearch chart's values (helm/examples/opensearch/secure.yaml) and ours pass the same
CA and users: the nodes serve certificates from the Secret whose CA our pods trust, the admin and node
DNs and the roles are those of `retrosearch opensearch start --secure`, and OpenSearch may call our
chart's Service. The official chart is not rendered here (offline: it is not vendored); its values are
checked against its documented keys (opensearch/opensearch 3.6.0, values.yaml)."""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath

import yaml

from retrosearch.local.opensearch import security
from tests.helm.chart import REPO, one

OFFICIAL = REPO / "helm" / "examples" / "opensearch" / "secure.yaml"
GPU = REPO / "helm" / "examples" / "gpu-cluster.yaml"
# The top-level keys of the official chart's values.yaml (opensearch/opensearch 3.6.0).
OFFICIAL_KEYS = {
    "clusterName",
    "nodeGroup",
    "singleNode",
    "masterService",
    "roles",
    "replicas",
    "majorVersion",
    "global",
    "opensearchHome",
    "config",
    "extraEnvs",
    "envFrom",
    "secretMounts",
    "hostAliases",
    "image",
    "podAnnotations",
    "openSearchAnnotations",
    "labels",
    "opensearchJavaOpts",
    "resources",
    "initResources",
    "sidecarResources",
    "networkHost",
    "rbac",
    "podSecurityPolicy",
    "persistence",
    "extraVolumes",
    "extraVolumeMounts",
    "extraContainers",
    "extraInitContainers",
    "priorityClassName",
    "antiAffinityTopologyKey",
    "antiAffinity",
    "customAntiAffinity",
    "nodeAffinity",
    "podAffinity",
    "topologySpreadConstraints",
    "podManagementPolicy",
    "enableServiceLinks",
    "protocol",
    "httpPort",
    "transportPort",
    "metricsPort",
    "httpHostPort",
    "transportHostPort",
    "service",
    "updateStrategy",
    "maxUnavailable",
    "podSecurityContext",
    "securityContext",
    "securityConfig",
    "terminationGracePeriod",
    "sysctlVmMaxMapCount",
    "startupProbe",
    "livenessProbe",
    "readinessProbe",
    "schedulerName",
    "imagePullSecrets",
    "nodeSelector",
    "tolerations",
    "ingress",
    "nameOverride",
    "fullnameOverride",
    "masterTerminationFix",
    "opensearchLifecycle",
    "lifecycle",
    "keystore",
    "networkPolicy",
    "fsGroup",
    "sysctl",
    "sysctlInit",
    "plugins",
    "extraObjects",
    "serviceMonitor",
}
CONFIG_DIR = PurePosixPath("/usr/share/opensearch/config")


def _official() -> tuple[dict, dict]:
    values = yaml.safe_load(OFFICIAL.read_text())
    return values, yaml.safe_load(values["config"]["opensearch.yml"])


def test_only_keys_the_official_chart_has():
    values, _ = _official()
    assert set(values) <= OFFICIAL_KEYS, set(values) - OFFICIAL_KEYS
    for mount in values["secretMounts"]:
        assert {"name", "secretName", "path"} <= set(mount)
    assert values["securityConfig"]["enabled"] is True
    # data and securityConfigSecret exclude each other in the official chart.
    assert not values["securityConfig"]["config"].get("securityConfigSecret")


def test_tls_on_both_layers_from_the_secret_our_pods_take_the_ca_from(helm):
    values, config = _official()
    ours = yaml.safe_load(GPU.read_text())["opensearch"]
    (certs,) = [m for m in values["secretMounts"] if m["secretName"] == ours["tls"]["caSecret"]]
    for layer in ("transport", "http"):
        for key in ("pemcert_filepath", "pemkey_filepath", "pemtrustedcas_filepath"):
            path = CONFIG_DIR / config[f"plugins.security.ssl.{layer}.{key}"]
            assert path.parent == PurePosixPath(certs["path"]), (layer, key)  # a file of the mounted Secret
        ca = PurePosixPath(config[f"plugins.security.ssl.{layer}.pemtrustedcas_filepath"]).name
        assert ca == ours["tls"]["caKey"]  # the very CA file our pods trust
    assert config["plugins.security.ssl.http.enabled"] is True
    assert ours["url"].startswith("https://") and ours["tls"]["verifyCerts"] is True
    rendered = one(helm.template(GPU), "ConfigMap")["data"]
    assert rendered["RETROSEARCH_OPENSEARCH_CA_CERTS"].endswith("/" + ours["tls"]["caKey"])


def test_the_users_dns_and_roles_are_the_local_secured_clusters():
    values, config = _official()
    assert config["plugins.security.authcz.admin_dn"] == [security.ADMIN_DN]
    assert config["plugins.security.nodes_dn"] == [security.NODE_DN_PATTERN]
    local = security.security_files({user: "-" for user in security.USERS}, with_ml=True)
    data = values["securityConfig"]["config"]["data"]
    assert (
        values["securityConfig"]["config"]["dataComplete"] is False
    )  # internal_users.yml comes from its Secret
    for name in ("roles.yml", "roles_mapping.yml"):
        assert yaml.safe_load(data[name]) == json.loads(local[name]), name
    assert values["securityConfig"]["internalUsersSecret"]
    assert {"name": "DISABLE_INSTALL_DEMO_CONFIG", "value": "true"} in values["extraEnvs"]


def test_opensearch_may_call_our_service(helm):
    _, config = _official()
    hook = one(helm.template(GPU), "Job", "-opensearch-connect")
    argv = hook["spec"]["template"]["spec"]["containers"][0]["args"]
    service_url = argv[argv.index("--service-url") + 1]
    (pattern,) = config["plugins.ml_commons.trusted_connector_endpoints_regex"]
    assert re.fullmatch(pattern, f"{service_url}/v1/embeddings"), (pattern, service_url)
    assert config["plugins.ml_commons.connector.private_ip_enabled"] is True
