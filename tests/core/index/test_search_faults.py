"""How a failed OpenSearch search is classed: the caller's mistake (400), a model that cannot run (502),
or a passing fault of the cluster (503: a lost node, no shard copy, overload), as the query service
answers each. The error bodies are OpenSearch's own shapes (msearch items and client exceptions)."""

from __future__ import annotations

import pytest
from opensearchpy import exceptions as os_exc

from retrosearch.core.index.base import IndexUnavailable, UnsupportedSearchOption
from retrosearch.core.index.opensearch_index import _raise_search_error
from retrosearch.core.opensearch.model_errors import RemoteModelError
from retrosearch.plugin.serve.engine import (
    BackendUnavailable,
    BadSearchRequest,
    IndexTarget,
    _translate_backend_error,
)


def _item(status: int, kind: str, reason: str, cause_kind: str | None = None) -> dict:
    cause = {"type": cause_kind or kind, "reason": reason}
    return {"status": status, "error": {"type": kind, "reason": reason, "root_cause": [cause]}}


NODE_LOST = _item(
    500, "search_phase_execution_exception", "all shards failed", "node_not_connected_exception"
)
NO_COPY = _item(
    503, "search_phase_execution_exception", "all shards failed", "no_shard_available_action_exception"
)
BUSY = _item(429, "rejected_execution_exception", "rejected execution of search")
# What a restarting node answers ml-commons' predict call for a neural query (seen under load).
RESTARTING = _item(503, "security_exception",
                   "OpenSearch Security not initialized for cluster:admin/opensearch/ml/predict")
MODEL_DOWN = _item(500, "status_exception", "Error communicating with remote model: Connection refused")
BAD_FILTER = _item(400, "parsing_exception", "unknown query [no_such_query]")


@pytest.mark.parametrize("item", [NODE_LOST, NO_COPY, BUSY, RESTARTING],
                         ids=["node-lost", "no-shard-copy", "rejected", "restarting"])
@pytest.mark.parametrize("neural", [False, True])
def test_a_lost_node_or_a_busy_cluster_is_passing(item, neural):
    with pytest.raises(IndexUnavailable, match="retrosearch-x"):
        _raise_search_error("retrosearch-x", item, neural=neural)


def test_a_model_that_cannot_run_stays_a_model_error_and_a_bad_filter_the_callers():
    with pytest.raises(RemoteModelError, match="cannot reach the query service"):
        _raise_search_error("retrosearch-x", MODEL_DOWN, neural=True)
    with pytest.raises(UnsupportedSearchOption, match="HTTP 400"):
        _raise_search_error("retrosearch-x", BAD_FILTER)
    with pytest.raises(IndexUnavailable, match="HTTP 500"):  # any other server-side failure of a k-NN search
        _raise_search_error("retrosearch-x", MODEL_DOWN)


@pytest.mark.parametrize(
    "exc, kind",
    [
        (os_exc.ConnectionError("N/A", "refused", None), BackendUnavailable),
        (os_exc.ConnectionTimeout("TIMEOUT", "timed out", None), BackendUnavailable),
        (os_exc.TransportError(503, "unavailable", {}), BackendUnavailable),
        (os_exc.TransportError(500, "node_not_connected_exception", {}), BackendUnavailable),
        (os_exc.TransportError(429, "circuit_breaking_exception", {}), BackendUnavailable),
        (os_exc.TransportError(404, "index_not_found_exception", {}), BadSearchRequest),
    ],
)
def test_client_exceptions_become_the_services_statuses(exc, kind):
    translated = _translate_backend_error(exc, IndexTarget(index_name="retrosearch-x"))
    assert type(translated) is kind and translated.message
