"""ml-commons REST calls: model group, HTTP connector, remote model registration, deployment, tasks,
prediction. Everything is found again by name before it is created, so a rerun reuses it."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from retrosearch.plugin.opensearch.errors import ConnectError
from retrosearch.plugin.opensearch.service_client import Mode, ServiceInfo

MODEL_GROUP = "retrosearch"
T = TypeVar("T")

# ml-commons encrypts a connector's credentials with a master key it keeps in a system index and reads
# with a wait of a few seconds; on a cluster that is still settling or busy that read times out and the
# request answers 500 "Fetching master key timed out" (the key is cached once read). Retried this long.
MASTER_KEY_WAIT_S = 90.0

# ml-commons refuses a connector without credentials; a service without an API key ignores this one.
NO_KEY = "none"


@dataclass
class RemoteModel:
    """One mode of the service as an ml-commons model."""

    mode: Mode
    name: str
    model_id: str
    connector_id: str
    created: bool


def master_key_pending(exc: os_exc.TransportError) -> bool:
    """Whether ``exc`` is ml-commons' transient failure to read its master key (worth a retry)."""
    return exc.status_code == 500 and "master key" in str(exc.info or exc.error).lower()


def retry_master_key(call: Callable[[], T], timeout_s: float = MASTER_KEY_WAIT_S) -> T:
    """``call()``, retried with backoff while ml-commons has not read its master key yet; any other
    error, or that one after ``timeout_s``, is raised as it came."""
    deadline = time.monotonic() + timeout_s
    delay = 0.5
    while True:
        try:
            return call()
        except os_exc.TransportError as exc:
            if not master_key_pending(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 8.0)


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


def deploy_remote(client: OpenSearch, model_id: str, under_way: bool = False, timeout_s: float = 120.0) -> None:
    """Wait until a remote model is DEPLOYED, deploying it unless a deployment is ``under_way``.

    Every node decrypts the connector's credentials with ml-commons' master key when it deploys,
    and a node that has not read the key yet fails (see :data:`MASTER_KEY_WAIT_S`): a failed
    deployment is redone until ``timeout_s``, then its error is raised. ml-commons answers
    "Duplicate deploy model task" where a deployment is already running; that one is waited for.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if not under_way:
                task = client.plugins.ml.deploy_model(model_id=model_id)
                try:
                    wait_for_task(client, task["task_id"], f"deploying model {model_id}", timeout_s)
                except ConnectError as exc:
                    if "duplicate deploy model task" not in str(exc).lower():
                        raise
            wait_deployed(client, model_id, max(deadline - time.monotonic(), 1.0))
            return
        except ConnectError:
            if time.monotonic() > deadline:
                raise
        under_way = False
        time.sleep(2.0)


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
        body = connector_body(service, mode, name, api_key)
        connector_id = retry_master_key(lambda: client.plugins.ml.create_connector(body=body))["connector_id"]
        created = True
    models = _search(client, "model", name, [{"term": {"connector_id.keyword": connector_id}}])
    if models:
        # A deployed one first (an interrupted earlier run may have left a second, undeployed).
        chosen = next((m for m in models if m["_source"].get("model_state") == "DEPLOYED"), models[0])
        model_id, state = chosen["_id"], chosen["_source"].get("model_state")
        if state != "DEPLOYED":
            deploy_remote(client, model_id)
    else:
        response = client.plugins.ml.register_model(
            body={"name": name, "function_name": "remote", "model_group_id": group_id, "connector_id": connector_id,
                  "description": f"{service.model} ({service.dim} dims), {mode} template, via {service.url}"},
            params={"deploy": "true"},
        )
        wait_for_task(client, response["task_id"], f"registering {name!r}")
        model_id, created = response["model_id"], True
        deploy_remote(client, model_id, under_way=True)
    return RemoteModel(mode=mode, name=name, model_id=model_id, connector_id=connector_id, created=created)


def predict(client: OpenSearch, model_id: str, texts: list[str]) -> np.ndarray:
    """Vectors of ``texts`` from a text-embedding model, as OpenSearch computes them."""
    # A remote model's node decrypts the connector's credentials with the master key on first use.
    response = retry_master_key(lambda: client.plugins.ml.predict(
        algorithm_name="text_embedding", model_id=model_id, body={"text_docs": texts}))
    rows = [result["output"][0]["data"] for result in response["inference_results"]]
    return np.asarray(rows, dtype=np.float32)
