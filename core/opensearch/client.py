"""Connecting to OpenSearch: one client per process, credentials only from the environment.

``settings.url`` may name several nodes (comma-separated); the client gets them all, so requests
go on when one node dies. The user and password come from ``RETROSEARCH_OPENSEARCH_USER`` /
``RETROSEARCH_OPENSEARCH_PASSWORD`` or from the files ``RETROSEARCH_OPENSEARCH_USER_FILE`` /
``RETROSEARCH_OPENSEARCH_PASSWORD_FILE`` name (as Kubernetes mounts Secrets), never from settings
or arguments. Refused credentials, missing permissions and TLS mismatches become one-line
:class:`~retrosearch.core.errors.UserError` messages naming the URL, the user, the cause and the
variable to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from opensearchpy import OpenSearch, Transport
from opensearchpy import exceptions as os_exc
from opensearchpy.serializer import JSONSerializer

from retrosearch.core.config import OpenSearchSettings
from retrosearch.core.errors import UserError

ENV_USER = "RETROSEARCH_OPENSEARCH_USER"
ENV_PASSWORD = "RETROSEARCH_OPENSEARCH_PASSWORD"
ENV_USER_FILE = "RETROSEARCH_OPENSEARCH_USER_FILE"
ENV_PASSWORD_FILE = "RETROSEARCH_OPENSEARCH_PASSWORD_FILE"
ENV_CA_CERTS = "RETROSEARCH_OPENSEARCH_CA_CERTS"
ENV_VERIFY = "RETROSEARCH_OPENSEARCH_VERIFY_CERTS"
POOL_MAXSIZE = 32


class OpenSearchUnavailable(UserError, RuntimeError):
    """OpenSearch cannot be reached or refused the credentials; the message says which and where."""


class _Explained(UserError, os_exc.TransportError):
    """A transport error that keeps its status and body for callers but reads as one explained line."""

    def __init__(self, message: str, exc: os_exc.TransportError) -> None:
        os_exc.TransportError.__init__(self, exc.status_code, exc.error, exc.info)
        self.message = message

    def __str__(self) -> str:
        return self.message


class OpenSearchForbidden(_Explained, os_exc.AuthorizationException):
    """The user lacks a permission (HTTP 403); still an AuthorizationException for callers that catch it."""


class OpenSearchUnauthorized(_Explained, os_exc.AuthenticationException):
    """The credentials were refused (HTTP 401) in the middle of a job."""


def opensearch_urls(url: str) -> list[str]:
    """The node URLs in ``url`` (comma-separated); each must be http(s)://host[:port]."""
    urls = [part.strip().rstrip("/") for part in url.split(",") if part.strip()]
    if not urls:
        raise OpenSearchUnavailable("the OpenSearch URL is empty (give --opensearch-url http(s)://host:port[,...])")
    for one in urls:
        parts = urlsplit(one)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OpenSearchUnavailable(f"OpenSearch URL {one!r} is not of the form http(s)://host:port")
    if len({urlsplit(one).scheme for one in urls}) > 1:
        raise OpenSearchUnavailable(f"OpenSearch URLs {url!r} mix http and https; a cluster speaks one")
    return urls


def _from_env_or_file(value_var: str, file_var: str) -> str | None:
    """A secret from ``value_var``, else from the file ``file_var`` names (trailing newline dropped)."""
    if os.environ.get(value_var):
        return os.environ[value_var]
    path = os.environ.get(file_var)
    if not path:
        return None
    try:
        return Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise OpenSearchUnavailable(f"cannot read {file_var}={path}: {exc.strerror or exc}") from None


def credentials() -> tuple[str | None, str | None]:
    """(user, password) from the environment or the files it names; None where not set."""
    return _from_env_or_file(ENV_USER, ENV_USER_FILE), _from_env_or_file(ENV_PASSWORD, ENV_PASSWORD_FILE)


def _who(user: str | None) -> str:
    return f"user {user!r}" if user else "no user (anonymous)"


def _request_line(method: str, url: str) -> str:
    return f"{method} {url.split('?')[0]}"


def _explained_transport(urls: str, user: str | None) -> type:
    """A Transport class that turns 401 and 403 into one-line errors naming ``urls`` and ``user``."""

    class ExplainedTransport(Transport):
        def perform_request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().perform_request(method, url, *args, **kwargs)
            except os_exc.AuthorizationException as exc:
                raise OpenSearchForbidden(
                    f"OpenSearch at {urls} refused {_request_line(method, url)} to {_who(user)} (HTTP 403: "
                    f"{_reason(exc)}); give {ENV_USER} a user whose roles allow it", exc) from None
            except os_exc.AuthenticationException as exc:
                raise OpenSearchUnauthorized(_refused(urls, user), exc) from None

    return ExplainedTransport


def _reason(exc: os_exc.TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        return str(error.get("reason") or error.get("type") or exc.error)
    return str(error or exc.error)


def _refused(urls: str, user: str | None) -> str:
    if user:
        return (f"OpenSearch at {urls} refused the credentials of user {user!r} (HTTP 401: wrong password or "
                f"unknown user); check {ENV_PASSWORD} or {ENV_PASSWORD_FILE}")
    return (f"OpenSearch at {urls} needs credentials (HTTP 401); set {ENV_USER} and {ENV_PASSWORD} "
            f"or {ENV_PASSWORD_FILE}")


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
    """A client for every node in ``settings.url``; raises :class:`OpenSearchUnavailable` if none answers."""
    urls = opensearch_urls(settings.url)
    user, password = credentials()
    options: dict[str, Any] = {
        "hosts": urls,
        "transport_class": _explained_transport(",".join(urls), user),
        "timeout": settings.request_timeout_s,
        "retry_on_timeout": True,
        # A dead node's requests go to the next one; several retries so one lost node never fails a request.
        "max_retries": max(3, len(urls)),
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
    if urlsplit(urls[0]).scheme == "https":
        options["use_ssl"] = True
        options["verify_certs"] = os.environ.get(ENV_VERIFY, "true").lower() not in ("0", "false", "no")
        if os.environ.get(ENV_CA_CERTS):
            options["ca_certs"] = os.environ[ENV_CA_CERTS]
    client = OpenSearch(**options)
    check(client, ",".join(urls), user)
    return client


def _connection_cause(exc: os_exc.ConnectionError, url: str) -> str:
    """Why a connection failed, with the fix for the TLS mismatches users meet most."""
    text = f"{getattr(exc, 'error', '')} {getattr(exc, 'info', '')}"
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return (f"its TLS certificate is not signed by a CA we trust; set {ENV_CA_CERTS} to the cluster's "
                "CA file (e.g. the `ca_certs` that `retrosearch opensearch status` prints)")
    if "WRONG_VERSION_NUMBER" in text or "record layer failure" in text or "packet length too long" in text:
        return "it answers plain http, not https; use http:// in --opensearch-url"
    if url.startswith("http://") and any(w in text for w in ("RemoteDisconnected", "Connection aborted",
                                                             "ConnectionResetError", "BadStatusLine")):
        return ("it closed the connection without an answer, as an https-only node does; "
                "use https:// in --opensearch-url")
    return str(getattr(exc, "error", None) or type(exc).__name__)


def check(client: OpenSearch, url: str, user: str | None = None) -> dict[str, Any]:
    """The cluster's info; a one-line :class:`OpenSearchUnavailable` when it cannot be had."""
    try:
        return client.info()
    except OpenSearchUnauthorized as exc:
        raise OpenSearchUnavailable(str(exc)) from None
    except OpenSearchForbidden:
        # Allowed to search or write but not to read the cluster's info: not our business here.
        return {}
    except os_exc.ConnectionError as exc:
        raise OpenSearchUnavailable(
            f"cannot reach OpenSearch at {url} as {_who(user)}: {_connection_cause(exc, url)}") from None
    except os_exc.TransportError as exc:
        raise OpenSearchUnavailable(f"OpenSearch at {url} answered HTTP {exc.status_code}: {exc.error}") from None
