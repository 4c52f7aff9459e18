"""How a local cluster is laid out: ports, per-node folders, certificates and users (no nodes started)."""

from __future__ import annotations

import json
import stat

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from retrosearch.local.opensearch import cluster, security
from retrosearch.local.opensearch.node_config import ServerSettings


def test_nodes_get_their_own_ports_folders_and_discovery(tmp_path):
    base = ServerSettings(port=9270, cache_dir=tmp_path)
    group = cluster.cluster_settings(base, 3, secure=True, heap_given=False)
    assert group.urls == ["https://127.0.0.1:9270", "https://127.0.0.1:9271", "https://127.0.0.1:9272"]
    node = group.node(9271)
    assert node.heap == "512m" and "opensearch-security" in node.plugins
    assert node.extra["transport.port"] == 9371 and node.extra["discovery.type"] is None
    assert node.extra["discovery.seed_hosts"] == ["127.0.0.1:9370", "127.0.0.1:9371", "127.0.0.1:9372"]
    assert len({group.node(p).node_dir for p in group.ports}) == 3
    assert node.extra["plugins.security.ssl.http.enabled"] is True


def test_certificates_and_passwords_are_private_and_kept(tmp_path):
    folder = security.ensure_certificates(tmp_path, ["n1", "n2"], "127.0.0.1")
    ca = x509.load_pem_x509_certificate(security.ca_file(tmp_path).read_bytes())
    node = x509.load_pem_x509_certificate((folder / "node-n1.pem").read_bytes())
    assert node.issuer == ca.subject and node.subject.rfc4514_string() == "CN=node-n1,OU=nodes,O=retrosearch"
    usages = node.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in folder.glob("*-key.pem"))
    before = (folder / "node-n1.pem").read_bytes()
    security.ensure_certificates(tmp_path, ["n1", "n2"], "127.0.0.1")
    assert (folder / "node-n1.pem").read_bytes() == before  # made once, kept on later starts

    first = security.ensure_passwords(tmp_path)
    assert security.ensure_passwords(tmp_path) == first and len(set(first.values())) == 3
    assert all(stat.S_IMODE(security.password_file(tmp_path, u).stat().st_mode) == 0o600 for u in first)


def test_writer_may_only_touch_the_project_indices_and_ml_roles_come_with_ml():
    files = security.security_files({u: "$2y$12$x" for u in security.USERS}, with_ml=False)
    roles = json.loads(files["roles.yml"])
    assert roles["retrosearch_writer"]["index_permissions"][0]["index_patterns"] == ["retrosearch-*"]
    assert "delete" not in json.dumps(roles["retrosearch_writer"])
    assert "retrosearch_ml_user" not in roles
    with_ml = security.security_files({u: "h" for u in security.USERS}, with_ml=True)
    ml = json.loads(with_ml["roles_mapping.yml"])
    assert ml["retrosearch_ml_user"]["users"] == ["writer", "searcher"]


def test_password_hashes_are_kept_until_a_password_changes(tmp_path, monkeypatch):
    """The plugin's hasher (a JVM start per user) runs once per password, not at every start."""
    hashed: list[str] = []

    def fake_hasher(home, env, passwords):  # stands in for the plugin's hash.sh: only the caching is tested
        hashed.extend(passwords)
        return {user: f"$2y$fake-{len(hashed)}-{user}" for user in passwords}

    monkeypatch.setattr(security, "hash_passwords", fake_hasher)
    passwords = security.ensure_passwords(tmp_path)
    first = security.cached_hashes(tmp_path, tmp_path, {}, passwords)
    assert security.cached_hashes(tmp_path, tmp_path, {}, passwords) == first
    assert sorted(hashed) == sorted(security.USERS)  # hashed once each
    kept = security.credentials_dir(tmp_path) / "hashes.json"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert not any(password in kept.read_text() for password in passwords.values())
    again = security.cached_hashes(tmp_path, tmp_path, {}, {**passwords, "writer": "changed"})
    assert hashed[-1] == "writer" and again["writer"] == "$2y$fake-4-writer"
    assert again["admin"] == first["admin"]
