"""Connecting to OpenSearch: one client per process, credentials only from the environment."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

import orjson
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc
from opensearchpy.serializer import JSONSerializer

from retrosearch.core.config import OpenSearchSettings
from retrosearch.core.errors import UserError

ENV_USER = "RETROSEARCH_OPENSEARCH_USER"
ENV_PASSWORD = "RETROSEARCH_OPENSEARCH_PASSWORD"
ENV_CA_CERTS = "RETROSEARCH_OPENSEARCH_CA_CERTS"
ENV_VERIFY = "RETROSEARCH_OPENSEARCH_VERIFY_CERTS"
POOL_MAXSIZE = 32


class OpenSearchUnavailable(UserError, RuntimeError):
    """OpenSearch cannot be reached or refused the credentials; the message says which and where."""


class FastJSONSerializer(JSONSerializer):
    """orjson with numpy support: bulk requests are mostly float vectors, and json is slow at those."""

    def dumps(self, data: Any) -> str:
        if isinstance(data, str):
            return data
        try:
            return orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY).decode()
        except TypeError:
            return super().dumps(data)


def connect(settings: OpenSearchSettings) -> OpenSearch:
    """A client for ``settings.url``; raises :class:`OpenSearchUnavailable` if nothing answers."""
    parts = urlsplit(settings.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OpenSearchUnavailable(f"OpenSearch URL {settings.url!r} is not of the form http(s)://host:port")
    user, password = os.environ.get(ENV_USER), os.environ.get(ENV_PASSWORD)
    options: dict[str, Any] = {
        "hosts": [settings.url],
        "timeout": settings.request_timeout_s,
        "retry_on_timeout": True,
        "max_retries": 3,
        # 429 is left to the bulk loader, which backs off exponentially instead of retrying at once.
        "retry_on_status": (502, 503, 504),
        "serializer": FastJSONSerializer(),
        "http_compress": False,
        # Connections kept per host: the default of 1 makes every concurrent search (a query
        # service's threads share one client) open and drop a connection of its own.
        "pool_maxsize": POOL_MAXSIZE,
    }
    if user or password:
        options["http_auth"] = (user or "", password or "")
    if parts.scheme == "https":
        options["use_ssl"] = True
        options["verify_certs"] = os.environ.get(ENV_VERIFY, "true").lower() not in ("0", "false", "no")
        if os.environ.get(ENV_CA_CERTS):
            options["ca_certs"] = os.environ[ENV_CA_CERTS]
    client = OpenSearch(**options)
    check(client, settings.url)
    return client


def check(client: OpenSearch, url: str) -> dict[str, Any]:
    """The cluster's info; a one-line :class:`OpenSearchUnavailable` when it cannot be had."""
    try:
        return client.info()
    except os_exc.AuthenticationException:
        raise OpenSearchUnavailable(f"OpenSearch at {url} refused the credentials (set {ENV_USER}/{ENV_PASSWORD})") from None
    except os_exc.ConnectionError as exc:
        reason = getattr(exc, "error", None) or type(exc).__name__
        raise OpenSearchUnavailable(f"cannot reach OpenSearch at {url}: {reason}") from None
    except os_exc.TransportError as exc:
        raise OpenSearchUnavailable(f"OpenSearch at {url} answered HTTP {exc.status_code}: {exc.error}") from None
