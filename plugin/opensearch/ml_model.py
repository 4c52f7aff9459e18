"""Our query service as an ml-commons remote model, so OpenSearch embeds text with our encoder.

OpenSearch's ``neural`` query, ``hybrid`` query and ``text_embedding`` ingest processor call an
ml-commons model with a list of texts and expect one vector per text. A remote model is an HTTP
connector plus a registered, deployed model that uses it. The connector here POSTs the texts to
the service's OpenAI-compatible ``/v1/embeddings`` with ``input_type`` set, so the service applies
the query or the passage template; OpenSearch cannot tell a model which of the two it wants, so
each mode is a model of its own (queries use one, ingestion the other).

Everything is found again by name before it is created, so connecting twice reuses the same
connector and model; names carry the served model, the mode and the service URL.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

Mode = Literal["query", "passage"]
MODES: tuple[Mode, ...] = ("query", "passage")
MODEL_GROUP = "retrosearch"
TRUSTED_SETTING = "plugins.ml_commons.trusted_connector_endpoints_regex"
PRIVATE_IP_SETTING = "plugins.ml_commons.connector.private_ip_enabled"
# The text the connection check embeds through OpenSearch and directly, to compare the two.
CHECK_TEXT = "retrosearch connection check: does OpenSearch reach the encoder?"
# ml-commons refuses a connector without credentials; a service without an API key ignores this one.
NO_KEY = "none"


class ConnectError(RuntimeError):
    """The service or OpenSearch cannot be connected; the message names the URL and the cause."""


class RemoteModelError(RuntimeError):
    """OpenSearch could not run our model during a search (service down, model undeployed)."""


@dataclass
class ServiceInfo:
    """What the query service says it serves (its ``/info``)."""

    url: str
    model: str
    dim: int
    fingerprint: str
    query_template: str
    passage_template: str
    title_separator: str = " "


@dataclass
class RemoteModel:
    """One mode of the service as an ml-commons model."""

    mode: Mode
    name: str
    model_id: str
    connector_id: str
    created: bool


@dataclass
class Connection:
    """The service as OpenSearch knows it: a model per mode, in one model group."""

    service: ServiceInfo
    model_group_id: str
    models: dict[str, RemoteModel] = field(default_factory=dict)
    pipelines: dict[str, str] = field(default_factory=dict)
    trusted: list[str] = field(default_factory=list)

    @property
    def query_model_id(self) -> str:
        """The model ``neural`` queries use (query template)."""
        return self.models["query"].model_id

    @property
    def passage_model_id(self) -> str:
        """The model ingestion uses (passage template)."""
        return self.models["passage"].model_id

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``connect --json`` prints)."""
        return {
            "service_url": self.service.url,
            "model": self.service.model,
            "dim": self.service.dim,
            "model_group_id": self.model_group_id,
            "query_model_id": self.query_model_id,
            "passage_model_id": self.passage_model_id,
            "models": {mode: asdict(m) for mode, m in self.models.items()},
            "pipelines": self.pipelines,
            "trusted_endpoints_added": self.trusted,
        }


# ---------------------------------------------------------------------------------------------- the service


def _auth(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def describe_service(url: str, api_key: str | None = None, timeout: float = 10.0) -> ServiceInfo:
    """Ask the service at ``url`` what it serves; a :class:`ConnectError` naming the URL if it can't say."""
    url = url.rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectError(f"--service-url {url!r} is not of the form http(s)://host:port")
    try:
        response = httpx.get(f"{url}/info", headers=_auth(api_key), timeout=timeout)
    except httpx.HTTPError as exc:
        raise ConnectError(f"the query service at {url} does not answer ({type(exc).__name__}: {exc}); "
                           "start it with `retrosearch serve` or give the right --service-url") from None
    if response.status_code == 401:
        raise ConnectError(f"the query service at {url} wants an API key: give --api-key-env with the variable "
                           "that holds the key it was started with")
    if response.status_code == 503:
        raise ConnectError(f"the query service at {url} is not ready yet: {_service_error(response)}")
    if response.status_code != 200:
        raise ConnectError(f"the query service at {url} answered /info with HTTP {response.status_code}: "
                           f"{_service_error(response)}")
    info = response.json()
    try:
        return ServiceInfo(url=url, model=info["model"], dim=int(info["dim"]), fingerprint=info["fingerprint"],
                           query_template=info["query_template"], passage_template=info["passage_template"],
                           title_separator=info.get("title_separator", " "))
    except (KeyError, TypeError, ValueError):
        raise ConnectError(f"{url}/info does not look like a RetroSearch query service: {str(info)[:200]}") from None


def _service_error(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def embed_directly(service: ServiceInfo, texts: list[str], mode: Mode, api_key: str | None = None) -> np.ndarray:
    """The service's own vectors of ``texts`` (``/embed``), to check what OpenSearch gets."""
    response = httpx.post(f"{service.url}/embed", json={"texts": texts, "mode": mode}, headers=_auth(api_key),
                          timeout=60)
    response.raise_for_status()
    return np.asarray(response.json()["vectors"], dtype=np.float32)


# ---------------------------------------------------------------------------------------------- endpoint policy


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


# ---------------------------------------------------------------------------------------------- ml-commons objects


def connector_body(service: ServiceInfo, mode: Mode, name: str, api_key: str | None = None) -> dict[str, Any]:
    """An HTTP connector calling the service's ``/v1/embeddings`` with ``input_type=mode``.

    The built-in OpenAI pre- and post-processing map OpenSearch's ``text_docs`` to ``input`` and
    ``data[*].embedding`` back to vectors; our service speaks that API, so no script is needed.
    """
    request = {"input": "${parameters.input}", "model": "${parameters.model}", "input_type": "${parameters.input_type}"}
    # ${parameters.input} is a JSON array substituted verbatim, so it must not be quoted.
    request_body = json.dumps(request).replace('"${parameters.input}"', "${parameters.input}")
    return {
        "name": name,
        "description": f"RetroSearch query service at {service.url}: {service.model}, {mode} template",
        "version": 1,
        "protocol": "http",
        "parameters": {"endpoint": service.url, "model": service.model, "input_type": mode},
        "credential": {"api_key": api_key or NO_KEY},
        "client_config": {"max_connection": 32, "connection_timeout": 5000, "read_timeout": 60000},
        "actions": [
            {
                "action_type": "predict",
                "method": "POST",
                "url": "${parameters.endpoint}/v1/embeddings",
                "headers": {"Content-Type": "application/json", "Authorization": "Bearer ${credential.api_key}"},
                "request_body": request_body,
                "pre_process_function": "connector.pre_process.openai.embedding",
                "post_process_function": "connector.post_process.openai.embedding",
            }
        ],
    }


def object_name(service: ServiceInfo, mode: Mode) -> str:
    """The connector's and the model's name: what is served, in which mode, from where."""
    return f"retrosearch {service.model} {mode} @ {service.url}"


def _by_name(hits: dict[str, Any]) -> list[dict[str, Any]]:
    return hits.get("hits", {}).get("hits", [])


def _search(client: OpenSearch, kind: str, name: str, extra: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    query = {"query": {"bool": {"filter": [{"term": {"name.keyword": name}}, *(extra or [])]}}, "size": 10,
             "sort": [{"created_time": {"order": "asc", "unmapped_type": "date"}}]}
    ml = client.plugins.ml
    search = {"connector": ml.search_connectors, "model": ml.search_models, "group": ml.search_model_group}[kind]
    try:
        return _by_name(search(body=query))
    except os_exc.NotFoundError:  # the system index does not exist before the first object
        return []


def ensure_model_group(client: OpenSearch) -> str:
    """The id of the ``retrosearch`` model group (created on first use)."""
    found = _search(client, "group", MODEL_GROUP)
    if found:
        return found[0]["_id"]
    response = client.plugins.ml.register_model_group(
        body={"name": MODEL_GROUP, "description": "Encoders served by RetroSearch query services"}
    )
    return response["model_group_id"]


def wait_for_task(client: OpenSearch, task_id: str, what: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """Poll an ml-commons task until it completes; a :class:`ConnectError` with its error if it fails."""
    deadline = time.monotonic() + timeout_s
    while True:
        task = client.plugins.ml.get_task(task_id=task_id)
        state = task.get("state")
        if state == "COMPLETED":
            return task
        if state in ("FAILED", "COMPLETED_WITH_ERROR"):
            raise ConnectError(f"{what} failed in OpenSearch: {task.get('error') or task}")
        if time.monotonic() > deadline:
            raise ConnectError(f"{what} did not finish in {timeout_s:.0f}s (task {task_id}, state {state})")
        time.sleep(0.5)


def wait_deployed(client: OpenSearch, model_id: str, timeout_s: float = 120.0) -> None:
    """Poll until the model's state is DEPLOYED (registration with deploy=true deploys afterwards)."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = client.plugins.ml.get_model(model_id=model_id).get("model_state")
        if state == "DEPLOYED":
            return
        if state == "DEPLOY_FAILED" or time.monotonic() > deadline:
            raise ConnectError(f"model {model_id} did not deploy (state {state})")
        time.sleep(0.5)


def ensure_remote_model(
    client: OpenSearch, service: ServiceInfo, mode: Mode, group_id: str, api_key: str | None = None
) -> RemoteModel:
    """The connector and deployed remote model for one mode, reused when they already exist."""
    name = object_name(service, mode)
    created = False
    connectors = _search(client, "connector", name)
    if connectors:
        connector_id = connectors[0]["_id"]
    else:
        connector_id = client.plugins.ml.create_connector(body=connector_body(service, mode, name, api_key))["connector_id"]
        created = True
    models = _search(client, "model", name, [{"term": {"connector_id.keyword": connector_id}}])
    if models:
        # A deployed one first (an interrupted earlier run may have left a second, undeployed).
        chosen = next((m for m in models if m["_source"].get("model_state") == "DEPLOYED"), models[0])
        model_id, state = chosen["_id"], chosen["_source"].get("model_state")
        if state != "DEPLOYED":
            task = client.plugins.ml.deploy_model(model_id=model_id)
            wait_for_task(client, task["task_id"], f"deploying model {model_id}")
            wait_deployed(client, model_id)
    else:
        response = client.plugins.ml.register_model(
            body={"name": name, "function_name": "remote", "model_group_id": group_id, "connector_id": connector_id,
                  "description": f"{service.model} ({service.dim} dims), {mode} template, via {service.url}"},
            params={"deploy": "true"},
        )
        wait_for_task(client, response["task_id"], f"registering {name!r}")
        model_id, created = response["model_id"], True
        wait_deployed(client, model_id)
    return RemoteModel(mode=mode, name=name, model_id=model_id, connector_id=connector_id, created=created)


def predict(client: OpenSearch, model_id: str, texts: list[str]) -> np.ndarray:
    """Vectors of ``texts`` from a text-embedding model, as OpenSearch computes them."""
    response = client.plugins.ml.predict(algorithm_name="text_embedding", model_id=model_id, body={"text_docs": texts})
    rows = [result["output"][0]["data"] for result in response["inference_results"]]
    return np.asarray(rows, dtype=np.float32)


def explain_model_failure(reason: str, status: Any = None, service_url: str | None = None) -> str:
    """Why OpenSearch could not run our model (its error ``reason``), as one line that says what to do."""
    where = f" at {service_url}" if service_url else ""
    if re.search(r"connection refused|connect timed out|unknownhost|communicating with remote model", reason, re.I):
        return f"OpenSearch cannot reach the query service{where}: {reason}; is `retrosearch serve` running?"
    if re.search(r"not deployed|model not ready|no eligible node|does not exist|not found", reason, re.I):
        return (f"the encoder model is not usable in OpenSearch: {reason}; "
                "run `retrosearch opensearch connect` again to deploy it")
    if re.search(r"private ip|trusted|not allowed|endpoint", reason, re.I):
        return f"OpenSearch refuses to call the service{where}: {reason}"
    return f"OpenSearch failed to run the encoder model (HTTP {status}): {reason}"


def explain_model_error(exc: os_exc.TransportError, service_url: str | None = None) -> str:
    """:func:`explain_model_failure` of a client exception."""
    return explain_model_failure(_root_reason(exc.info) or str(exc.error), exc.status_code, service_url)


def _root_reason(info: Any) -> str | None:
    error = info.get("error") if isinstance(info, dict) else None
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        if causes and isinstance(causes[0], dict):
            return str(causes[0].get("reason"))
    return str(error) if error else None


def check_models(client: OpenSearch, connection: Connection, api_key: str | None = None) -> None:
    """Embed one text through each model and directly; they must agree (the right template arrived)."""
    for mode, remote in connection.models.items():
        try:
            through = predict(client, remote.model_id, [CHECK_TEXT])
        except os_exc.TransportError as exc:
            raise ConnectError(explain_model_error(exc, connection.service.url)) from None
        direct = embed_directly(connection.service, [CHECK_TEXT], mode, api_key)
        if through.shape != direct.shape:
            raise ConnectError(f"the {mode} model answers vectors of shape {through.shape}, the service {direct.shape}")
        cosine = float(through[0] @ direct[0] / (np.linalg.norm(through[0]) * np.linalg.norm(direct[0]) + 1e-12))
        if cosine < 0.9999:
            raise ConnectError(f"the {mode} model's vectors differ from the service's (cosine {cosine:.4f})")


def connect_service(
    client: OpenSearch, service_url: str, api_key: str | None = None, trust: bool = False
) -> Connection:
    """Make the service at ``service_url`` a query and a passage model of OpenSearch, checked.

    ``trust`` lifts the endpoint settings that would block this one URL (persistently, for this
    URL only); without it such a setting is a :class:`ConnectError` naming it.
    """
    service = describe_service(service_url, api_key)
    blockers = endpoint_blockers(client, service.url)
    trusted: list[str] = []
    if blockers and not trust:
        named = "; ".join(f"{setting}: {why}" for setting, why in blockers)
        raise ConnectError(f"OpenSearch will not call {service.url}: {named}. "
                           "Rerun with --trust-endpoint to allow this URL only, or change the setting yourself")
    if blockers:
        trusted = trust_endpoint(client, service.url, blockers)
    group_id = ensure_model_group(client)
    connection = Connection(service=service, model_group_id=group_id, trusted=trusted)
    for mode in MODES:
        connection.models[mode] = ensure_remote_model(client, service, mode, group_id, api_key)
    check_models(client, connection, api_key)
    return connection
