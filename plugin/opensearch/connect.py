"""Our encoder connected to OpenSearch, and to one index: what ``opensearch connect`` and
``opensearch deploy-model`` do.

``connect``: a running query service becomes ml-commons remote models (``remote_model``).
``deploy-model``: the checkpoint itself becomes an ml-commons local model (``local_model``).
Either way, with an index named in the settings, the model must be the one the index was built
with, and the index gets its default search and ingest pipelines (``pipelines``), so one command
switches an index between the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from retrosearch.core.config import Settings
from retrosearch.core.index import load_index
from retrosearch.core.opensearch import pipelines
from retrosearch.core.opensearch.client import connect as os_connect
from retrosearch.plugin.opensearch import remote_model
from retrosearch.plugin.opensearch.errors import ConnectError, LocalModelError
from retrosearch.plugin.opensearch.local_model import LocalDeployment, deploy_local_model, require_ml
from retrosearch.plugin.opensearch.local_package import build_packages

if TYPE_CHECKING:
    from retrosearch.plugin.opensearch.local_model import LocalDeployment


def connect_index(settings: Settings, service_url: str, api_key: str | None = None,
                  trust: bool = False) -> remote_model.Connection:
    """Connect the service at ``service_url`` (and ``settings.opensearch.index``, when set); reruns reuse what exists."""
    index_name = settings.opensearch.index
    client = os_connect(settings.opensearch)
    meta = None
    if index_name:  # checked before anything is created
        meta = load_index(None, settings, backend="opensearch").meta
    connection = remote_model.connect_service(client, service_url, api_key=api_key, trust=trust)
    if meta is not None and meta.model_fingerprint != connection.service.fingerprint:
        raise ConnectError(
            f"index {index_name!r} was built with {meta.model_name} ({meta.model_fingerprint[:12]}) but the "
            f"service at {service_url} serves {connection.service.model} ({connection.service.fingerprint[:12]})"
        )
    if index_name:
        connection.pipelines = pipelines.install(
            client, index_name, connection.query_model_id, connection.passage_model_id,
            settings.opensearch.vector_field, connection.service.title_separator,
            settings.opensearch.hybrid_dense_weight, connection.service.url,
            settings.opensearch.hybrid_normalization,
        )
    return connection


# What the index's mapping records in place of a service URL when the model runs inside OpenSearch.
LOCAL_SOURCE = "local model in OpenSearch"


def deploy_local(settings: Settings, model: str) -> "LocalDeployment":
    """Deploy the checkpoint ``model`` as a local model, wire ``settings.opensearch.index``; reruns reuse."""
    index_name = settings.opensearch.index
    client = os_connect(settings.opensearch)
    require_ml(client, settings.opensearch.url)
    meta = None
    if index_name:  # checked before anything is exported or created
        meta = load_index(None, settings, backend="opensearch").meta
    packages = build_packages(model)
    package = packages[0]
    if meta is not None and meta.model_fingerprint != package.fingerprint:
        raise LocalModelError(
            f"index {index_name!r} was built with {meta.model_name} ({meta.model_fingerprint[:12]}) but "
            f"--model {model} is {package.fingerprint[:12]}; "
            "deploy the index's model or name another --index-name"
        )
    models = [deploy_local_model(client, p, settings.opensearch.url) for p in packages]
    local = LocalDeployment(package.fingerprint, models)
    if index_name:
        local.pipelines = pipelines.install(
            client, index_name, local.model_id("query"), local.model_id("passage"),
            settings.opensearch.vector_field,
            package.spec.title_separator, settings.opensearch.hybrid_dense_weight, LOCAL_SOURCE,
            settings.opensearch.hybrid_normalization,
        )
    return local
