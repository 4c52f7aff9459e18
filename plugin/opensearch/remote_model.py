"""Our query service as an ml-commons remote model, so OpenSearch embeds text with our encoder.

OpenSearch's ``neural`` query, ``hybrid`` query and ``text_embedding`` ingest processor call an
ml-commons model with a list of texts and expect one vector per text. A remote model is an HTTP
connector plus a registered, deployed model that uses it. The connector here POSTs the texts to
the service's OpenAI-compatible ``/v1/embeddings`` with ``input_type`` set, so the service applies
the query or the passage template; OpenSearch cannot tell a model which of the two it wants, so
each mode is a model of its own (queries use one, ingestion the other).

Everything is found again by name before it is created, so connecting twice reuses the same
connector and model; names carry the served model, the mode and the service URL.

The pieces: :mod:`.service_client` (the service), :mod:`.endpoint_trust` (the cluster's endpoint
settings), :mod:`.ml_commons` (the REST calls); this module connects and checks them together.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from retrosearch.core.opensearch.model_errors import explain_model_error
from retrosearch.plugin.opensearch.endpoint_trust import endpoint_blockers, trust_endpoint
from retrosearch.plugin.opensearch.errors import ConnectError
from retrosearch.plugin.opensearch.ml_commons import (
    RemoteModel,
    ensure_model_group,
    ensure_remote_model,
    predict,
)
from retrosearch.plugin.opensearch.service_client import MODES, ServiceInfo, describe_service, embed_directly

# The text the connection check embeds through OpenSearch and directly, to compare the two.
CHECK_TEXT = "retrosearch connection check: does OpenSearch reach the encoder?"



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
        """A JSON-ready summary (what ``connect --json-out -`` prints)."""
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
