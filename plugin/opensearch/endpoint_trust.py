"""Which of OpenSearch's settings would stop ml-commons from calling a URL, and lifting them for
that one URL (``--trust-endpoint``): the trusted-endpoints regex and the private-address switch."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from opensearchpy import OpenSearch

TRUSTED_SETTING = "plugins.ml_commons.trusted_connector_endpoints_regex"


PRIVATE_IP_SETTING = "plugins.ml_commons.connector.private_ip_enabled"



def _effective_setting(flat: dict[str, dict[str, Any]], key: str) -> Any:
    # Transient beats persistent beats the node's own (opensearch.yml or built-in) value.
    for scope in ("transient", "persistent", "defaults"):
        if key in flat.get(scope, {}):
            return flat[scope][key]
    return None



def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return [value]
        return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
    return [str(v) for v in value]



def _private_address(host: str) -> bool:
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return any(ipaddress.ip_address(a.split("%")[0]).is_private or ipaddress.ip_address(a.split("%")[0]).is_loopback
               for a in addresses)



def endpoint_regex(url: str) -> str:
    """A trusted-endpoint pattern admitting exactly the service at ``url`` (any path under it)."""
    parts = urlsplit(url)
    return "^" + re.escape(f"{parts.scheme}://{parts.netloc}") + "(/.*)?$"



def endpoint_blockers(client: OpenSearch, url: str) -> list[tuple[str, str]]:
    """The cluster settings that would stop ml-commons from calling ``url``: (setting, why) pairs."""
    flat = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    blockers: list[tuple[str, str]] = []
    endpoint = url.rstrip("/") + "/v1/embeddings"
    patterns = _as_list(_effective_setting(flat, TRUSTED_SETTING))
    matched = False
    for pattern in patterns:
        try:
            matched = matched or re.fullmatch(pattern, endpoint) is not None
        except re.error:  # a Java-only construct: OpenSearch's own check decides
            matched = True
    if not matched:
        blockers.append((TRUSTED_SETTING, f"no pattern in it matches {endpoint}"))
    host = urlsplit(url).hostname or ""
    private_ok = str(_effective_setting(flat, PRIVATE_IP_SETTING)).lower() == "true"
    if not private_ok and _private_address(host):
        blockers.append((PRIVATE_IP_SETTING, f"it is false and {host} is a private or loopback address"))
    return blockers



def trust_endpoint(client: OpenSearch, url: str, blockers: Iterable[tuple[str, str]]) -> list[str]:
    """Lift ``blockers`` for ``url`` only, as persistent cluster settings; returns what changed."""
    flat = client.cluster.get_settings(include_defaults=True, flat_settings=True)
    changes: dict[str, Any] = {}
    for setting, _why in blockers:
        if setting == TRUSTED_SETTING:
            changes[setting] = _as_list(_effective_setting(flat, TRUSTED_SETTING)) + [endpoint_regex(url)]
        elif setting == PRIVATE_IP_SETTING:
            changes[setting] = True
    if changes:
        client.cluster.put_settings(body={"persistent": changes})
    return [f"{key}={json.dumps(value)}" for key, value in changes.items()]
