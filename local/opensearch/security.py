"""The security plugin's pieces for a local cluster: certificates, users, roles and node settings.

Production OpenSearch runs with the security plugin on: TLS on the transport and HTTP layers,
basic-auth users and roles. A local cluster gets the same, with files this module writes once per
cluster directory and reuses on every later start:

* ``certs/``: a CA, one certificate per node (serverAuth and clientAuth: transport TLS uses it both
  ways) and an admin client certificate; private keys PKCS#8, mode 0600;
* ``credentials/<user>``: one generated password per user, mode 0600 in a 0700 folder, never printed
  and never on a command line (the bcrypt hashes come from the plugin's ``hash.sh -env``);
* the ``opensearch-security/*.yml`` users, roles and mappings, loaded when the security index is
  created at the first start.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

from .node_config import ServerError

ORG = "retrosearch"
NODE_DN_PATTERN = f"CN=node-*,OU=nodes,O={ORG}"
ADMIN_DN = f"CN=admin,OU=admins,O={ORG}"
#: The users every secured cluster gets: an administrator, a loader and a reader.
USERS = ("admin", "writer", "searcher")
#: The indices the writer may create and write and the searcher may read (the project's index names).
INDEX_PATTERN = "retrosearch-*"
_CERT_DAYS = 825


def credentials_dir(cluster_dir: Path) -> Path:
    """Where each user's password lives, one 0600 file per user."""
    return cluster_dir / "credentials"


def certs_dir(cluster_dir: Path) -> Path:
    """The CA, node and admin certificates of the cluster."""
    return cluster_dir / "certs"


def ca_file(cluster_dir: Path) -> Path:
    """The CA certificate clients trust (``RETROSEARCH_OPENSEARCH_CA_CERTS``)."""
    return certs_dir(cluster_dir) / "ca.pem"


def password_file(cluster_dir: Path, user: str) -> Path:
    """The file holding ``user``'s password (``RETROSEARCH_OPENSEARCH_PASSWORD_FILE``)."""
    return credentials_dir(cluster_dir) / user


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a file that is 0600 from its creation on, never readable by others meanwhile."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def ensure_passwords(cluster_dir: Path) -> dict[str, str]:
    """Each user's password, generated at the first start and read back afterwards."""
    folder = credentials_dir(cluster_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    passwords = {}
    for user in USERS:
        path = password_file(cluster_dir, user)
        if not path.is_file():
            # Letters and digits only: the password goes into basic-auth headers and netrc files as is.
            _write_private(path, secrets.token_hex(20).encode())
        passwords[user] = path.read_text().strip()
    return passwords


def _name(common_name: str, unit: str) -> Any:
    # lazy: keeps cryptography out of CLI start-up
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(
    subject: Any, issuer: Any, public_key: Any, signing_key: Any, *, ca: bool, hosts: tuple[str, ...] = ()
) -> Any:
    # lazy: keeps cryptography out of CLI start-up
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=_CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    if hosts:
        names = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(signing_key, hashes.SHA256())


def _pem_key(key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization  # lazy: keeps cryptography out of CLI start-up

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization  # lazy: keeps cryptography out of CLI start-up

    return cert.public_bytes(serialization.Encoding.PEM)


def ensure_certificates(cluster_dir: Path, node_names: list[str], host: str) -> Path:
    """The CA, a certificate per node in ``node_names`` and the admin's; made once, kept afterwards.

    Node certificates name ``localhost`` and ``host`` so clients can verify the hostname.
    """
    # lazy: keeps cryptography out of CLI start-up
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    folder = certs_dir(cluster_dir)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o755)
    ca_key_path, ca_path = folder / "ca-key.pem", ca_file(cluster_dir)
    if ca_path.is_file() and ca_key_path.is_file():
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
    else:
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = _name(f"{ORG} local CA", "ca")
        ca_cert = _issue(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
        _write_private(ca_key_path, _pem_key(ca_key))
        ca_path.write_bytes(_pem_cert(ca_cert))
    hosts = tuple(dict.fromkeys(("localhost", "127.0.0.1", host)))
    wanted = [(f"node-{name}", "nodes", hosts) for name in node_names] + [("admin", "admins", ())]
    for common_name, unit, san in wanted:
        cert_path, key_path = folder / f"{common_name}.pem", folder / f"{common_name}-key.pem"
        if cert_path.is_file() and key_path.is_file():
            continue
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = _issue(
            _name(common_name, unit), ca_cert.subject, key.public_key(), ca_key, ca=False, hosts=san
        )
        _write_private(key_path, _pem_key(key))
        cert_path.write_bytes(_pem_cert(cert))
    return folder


def install_node_certificates(cluster_dir: Path, node_name: str, config_dir: Path) -> None:
    """Copy the node's certificate, key (0600) and the CA into its config folder (the CA key stays behind)."""
    target = config_dir / "certs"
    target.mkdir(exist_ok=True)
    source = certs_dir(cluster_dir)
    for name in ("ca.pem", f"node-{node_name}.pem"):
        (target / name).write_bytes((source / name).read_bytes())
    _write_private(target / f"node-{node_name}-key.pem", (source / f"node-{node_name}-key.pem").read_bytes())


def node_security_settings(node_name: str) -> dict[str, Any]:
    """opensearch.yml entries for TLS on both layers, the admin and node DNs and the REST API roles."""
    pem = {
        "pemcert_filepath": f"certs/node-{node_name}.pem",
        "pemkey_filepath": f"certs/node-{node_name}-key.pem",
        "pemtrustedcas_filepath": "certs/ca.pem",
    }
    values: dict[str, Any] = {}
    for layer in ("transport", "http"):
        values.update({f"plugins.security.ssl.{layer}.{key}": value for key, value in pem.items()})
    values.update(
        {
            "plugins.security.ssl.http.enabled": True,
            "plugins.security.ssl.transport.enforce_hostname_verification": False,
            "plugins.security.authcz.admin_dn": [ADMIN_DN],
            "plugins.security.nodes_dn": [NODE_DN_PATTERN],
            # The users and roles below are loaded when the security index is first created.
            "plugins.security.allow_default_init_securityindex": True,
            "plugins.security.restapi.roles_enabled": ["all_access"],
            "plugins.security.check_snapshot_restore_write_privileges": True,
        }
    )
    return values


def hash_passwords(home: Path, env: dict[str, str], passwords: dict[str, str]) -> dict[str, str]:
    """bcrypt hashes by user, from the plugin's own hasher; each password passes in the environment only."""
    tool = home / "plugins" / "opensearch-security" / "tools" / "hash.sh"
    hashes = {}
    for user, password in passwords.items():
        result = subprocess.run(
            ["bash", str(tool), "-env", "RETROSEARCH_HASH_INPUT"],
            env={**env, "RETROSEARCH_HASH_INPUT": password},
            capture_output=True,
            text=True,
        )
        found = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("$2")]
        if result.returncode != 0 or not found:
            raise ServerError(
                f"hashing the password of {user!r} with {tool} failed (exit {result.returncode})"
            )
        hashes[user] = found[-1]
    return hashes


def cached_hashes(
    cluster_dir: Path, home: Path, env: dict[str, str], passwords: dict[str, str]
) -> dict[str, str]:
    """:func:`hash_passwords`, kept in a 0600 file beside the passwords: each start needs the users'
    files, and the plugin's hasher costs a JVM start per user. A changed password is hashed again."""
    path = credentials_dir(cluster_dir) / "hashes.json"
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        kept = {}
    digests = {user: hashlib.sha256(password.encode()).hexdigest() for user, password in passwords.items()}
    stale = {user: pw for user, pw in passwords.items() if kept.get(user, {}).get("sha256") != digests[user]}
    if stale:
        for user, hashed in hash_passwords(home, env, stale).items():
            kept[user] = {"sha256": digests[user], "hash": hashed}
        _write_private(path, json.dumps(kept).encode())
    return {user: kept[user]["hash"] for user in passwords}


def _role(cluster: list[str], index_actions: list[str] | None = None) -> dict[str, Any]:
    """A role: cluster permissions and, when given, actions on the project's indices only."""
    role: dict[str, Any] = {"cluster_permissions": cluster}
    if index_actions:
        role["index_permissions"] = [{"index_patterns": [INDEX_PATTERN], "allowed_actions": index_actions}]
    return role


_READ_INDEX = ["read", "indices_monitor", "indices:admin/get", "indices:admin/mappings/get",
               "indices:monitor/settings/get", "indices:admin/refresh*"]
# What loading an index needs and no more: no deleting, no other indices, no security index.
_WRITER = _role(
    ["cluster_monitor", "indices:data/write/bulk", "indices:data/read/mget", "indices:data/read/msearch",
     "indices:data/read/scroll", "indices:data/read/scroll/clear",
     "cluster:admin/ingest/pipeline/get", "cluster:admin/ingest/pipeline/put",
     "cluster:admin/search/pipeline/get", "cluster:admin/search/pipeline/put"],
    ["create_index", "write", *_READ_INDEX, "indices:admin/mapping/put", "indices:admin/settings/update",
     "indices:admin/forcemerge"],
)
_SEARCHER = _role(["cluster_monitor", "cluster_composite_ops_ro", "cluster:admin/search/pipeline/get"],
                  _READ_INDEX)
# neural queries and embedding ingest pipelines call the model; managing models stays with admin.
_ML_USER = _role(["cluster:admin/opensearch/ml/predict", "cluster:admin/opensearch/ml/models/get",
                  "cluster:admin/opensearch/ml/models/search"])


def security_files(hashes: dict[str, str], with_ml: bool) -> dict[str, str]:
    """The contents of internal_users.yml, roles.yml and roles_mapping.yml (JSON is valid YAML)."""
    users = {"_meta": {"type": "internalusers", "config_version": 2}}
    descriptions = {
        "admin": "administrator",
        "writer": f"creates and loads {INDEX_PATTERN} indices",
        "searcher": f"reads {INDEX_PATTERN} indices",
    }
    for user in USERS:
        users[user] = {"hash": hashes[user], "reserved": user == "admin", "description": descriptions[user]}
    roles: dict[str, Any] = {
        "_meta": {"type": "roles", "config_version": 2},
        "retrosearch_writer": _WRITER,
        "retrosearch_searcher": _SEARCHER,
    }
    mapping: dict[str, Any] = {
        "_meta": {"type": "rolesmapping", "config_version": 2},
        "all_access": {"reserved": False, "users": ["admin"]},
        "retrosearch_writer": {"users": ["writer"]},
        "retrosearch_searcher": {"users": ["searcher"]},
    }
    if with_ml:
        roles["retrosearch_ml_user"] = _ML_USER
        mapping["retrosearch_ml_user"] = {"users": ["writer", "searcher"]}
    return {
        name: json.dumps(body, indent=2) + "\n"
        for name, body in (
            ("internal_users.yml", users),
            ("roles.yml", roles),
            ("roles_mapping.yml", mapping),
        )
    }


def install_security_files(config_dir: Path, files: dict[str, str]) -> None:
    """Write the users and roles over the plugin's demo files in a node's config folder."""
    folder = config_dir / "opensearch-security"
    for name, text in files.items():
        _write_private(folder / name, text.encode())
