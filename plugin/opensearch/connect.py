"""A running query service connected to OpenSearch, and to one index: what ``opensearch connect`` does.

The service becomes ml-commons models (``remote_model``); with an index named in the settings, the
service must serve the model the index was built with, and the index gets its default search and
ingest pipelines (``pipelines``).
"""

from __future__ import annotations

from retrosearch.core.config import Settings
from retrosearch.core.opensearch.client import connect as os_connect
from retrosearch.core.opensearch import pipelines
from retrosearch.plugin.opensearch import remote_model
from retrosearch.plugin.opensearch.errors import ConnectError


def connect_index(settings: Settings, service_url: str, api_key: str | None = None,
                  trust: bool = False) -> remote_model.Connection:
    """Connect the service at ``service_url`` (and ``settings.opensearch.index``, when set); reruns reuse what exists."""
    index_name = settings.opensearch.index
    client = os_connect(settings.opensearch)
    meta = None
    if index_name:  # checked before anything is created
        from retrosearch.core.index import load_index

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
