"""The bodies RetroSearch sends to ml-commons and neural-search, checked without a node."""

from __future__ import annotations

import json
import re

import pytest

from retrosearch.core.opensearch import pipelines, queries
from retrosearch.core.opensearch.model_errors import explain_model_failure
from retrosearch.plugin.opensearch import endpoint_trust, ml_commons
from retrosearch.plugin.opensearch.service_client import MODES, ServiceInfo

SERVICE = ServiceInfo(url="http://127.0.0.1:8000", model="minilm", dim=384, fingerprint="f" * 64,
                               query_template="query: {text}", passage_template="{text}")


def test_connector_request_body_is_json_once_opensearch_substitutes_the_texts():
    body = ml_commons.connector_body(SERVICE, "passage", "name")
    action = body["actions"][0]
    assert action["url"] == "${parameters.endpoint}/v1/embeddings"
    substituted = action["request_body"]
    for key, value in {"${parameters.input}": json.dumps(["a", "b \"c\""]), "${parameters.model}": "minilm",
                       "${parameters.input_type}": body["parameters"]["input_type"]}.items():
        substituted = substituted.replace(key, value)
    assert json.loads(substituted) == {"input": ["a", 'b "c"'], "model": "minilm", "input_type": "passage"}
    assert body["credential"] == {"api_key": ml_commons.NO_KEY}  # ml-commons refuses an empty credential
    assert ml_commons.connector_body(SERVICE, "query", "n", api_key="k")["credential"] == {"api_key": "k"}


def test_each_mode_has_its_own_name():
    names = {ml_commons.object_name(SERVICE, mode) for mode in MODES}
    assert len(names) == 2 and all(SERVICE.url in n for n in names)


def test_endpoint_regex_admits_exactly_one_service():
    pattern = endpoint_trust.endpoint_regex("http://encoder.svc:8000")
    assert re.fullmatch(pattern, "http://encoder.svc:8000/v1/embeddings")
    assert not re.fullmatch(pattern, "http://encoder.svc:8001/v1/embeddings")
    assert not re.fullmatch(pattern, "http://encoderXsvc:8000/v1/embeddings")  # the dot is literal


def test_effective_setting_prefers_transient_then_persistent_then_the_node():
    flat = {"defaults": {"k": "a"}, "persistent": {"k": "b"}, "transient": {}}
    assert endpoint_trust._effective_setting(flat, "k") == "b"
    flat["transient"]["k"] = "c"
    assert endpoint_trust._effective_setting(flat, "k") == "c"
    assert endpoint_trust._as_list('["x", "y"]') == ["x", "y"] and endpoint_trust._as_list("^x$") == ["^x$"]


@pytest.mark.parametrize("reason, expected", [
    ("Error communicating with remote model: Connection refused: /127.0.0.1:8000", "cannot reach the query service"),
    ("Model not ready yet. Please deploy the model first.", "connect` again"),
    ("Remote inference host name has private ip address: 10.0.0.1", "refuses to call"),
])
def test_model_failures_say_what_to_do(reason, expected):
    assert expected in explain_model_failure(reason, 500)


def test_hybrid_weights_follow_the_part_order_and_are_bounded():
    weights = pipelines.normalization_processor(0.3)["normalization-processor"]["combination"]["parameters"]["weights"]
    assert weights == [0.7, 0.3]
    with pytest.raises(ValueError, match="within"):
        pipelines.normalization_processor(1.5)
    assert pipelines.hybrid_pipeline_name(0.3) != pipelines.hybrid_pipeline_name(0.35)
    body = queries.hybrid_clause(queries.bm25_clause("q", ("title", "text")), {"knn": {}})
    assert list(body["hybrid"]["queries"][0]) == ["multi_match"]


def test_search_pipeline_sets_the_default_model_only_when_there_is_one():
    with_model = pipelines.search_pipeline_body("m1", "embedding", 0.5)
    enricher = with_model["request_processors"][0]["neural_query_enricher"]
    assert enricher["default_model_id"] == "m1" and enricher["neural_field_default_id"] == {"embedding": "m1"}
    assert "request_processors" not in pipelines.search_pipeline_body(None, "embedding", 0.5)


def test_filters_restrict_every_part():
    clause = queries.bm25_clause("q", ("title", "text"), {"term": {"lang": "en"}})
    assert clause["bool"]["filter"] == [{"term": {"lang": "en"}}]
    neural = queries.neural_clause("emb", "q", 5, "m", {"term": {"lang": "en"}}, {"ef_search": 64})["neural"]["emb"]
    assert neural["filter"] == {"term": {"lang": "en"}} and neural["method_parameters"] == {"ef_search": 64}


def _master_key_timeout() -> Exception:
    from opensearchpy import exceptions as os_exc

    return os_exc.TransportError(500, "m_l_exception", {"error": {"type": "m_l_exception",
                                                                  "reason": "Fetching master key timed out."}})


def test_a_master_key_timeout_is_retried_until_the_call_answers(monkeypatch: pytest.MonkeyPatch):
    waits: list[float] = []
    monkeypatch.setattr(ml_commons.time, "sleep", waits.append)
    answers = iter([_master_key_timeout(), _master_key_timeout(), {"connector_id": "c1"}])

    def call() -> dict:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert ml_commons.retry_master_key(call) == {"connector_id": "c1"}
    assert waits == [0.5, 1.0]  # backing off


def test_other_errors_and_a_key_that_never_comes_are_raised(monkeypatch: pytest.MonkeyPatch):
    from opensearchpy import exceptions as os_exc

    monkeypatch.setattr(ml_commons.time, "sleep", lambda _s: None)
    other = os_exc.TransportError(500, "m_l_exception", {"error": {"reason": "Connector endpoint is required"}})
    calls = []

    def failing(exc: Exception):
        def call():
            calls.append(1)
            raise exc
        return call

    with pytest.raises(os_exc.TransportError) as caught:
        ml_commons.retry_master_key(failing(other))
    assert caught.value is other and len(calls) == 1
    calls.clear()
    with pytest.raises(os_exc.TransportError) as caught:
        ml_commons.retry_master_key(failing(_master_key_timeout()), timeout_s=0.0)
    assert ml_commons.master_key_pending(caught.value) and len(calls) == 1


class _FakeMl:
    """ml-commons' deploy, task and model calls, answering from scripted lists (a unit test of our retry logic)."""

    def __init__(self, task_states: list[dict], model_states: list[str]) -> None:
        self.task_states, self.model_states, self.deploys = task_states, model_states, 0

    def deploy_model(self, model_id: str) -> dict:
        self.deploys += 1
        return {"task_id": f"t{self.deploys}"}

    def get_task(self, task_id: str) -> dict:
        return self.task_states.pop(0)

    def get_model(self, model_id: str) -> dict:
        return {"model_state": self.model_states.pop(0) if len(self.model_states) > 1 else self.model_states[0]}


def _client(ml: _FakeMl):
    from types import SimpleNamespace

    return SimpleNamespace(plugins=SimpleNamespace(ml=ml))


def test_a_deployment_under_way_is_waited_for_and_a_failed_one_redone(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ml_commons.time, "sleep", lambda _s: None)
    # registered with deploy=true: nothing more is deployed while it comes up
    ml = _FakeMl([], ["REGISTERED", "DEPLOYING", "DEPLOYED"])
    ml_commons.deploy_remote(_client(ml), "m", under_way=True)
    assert ml.deploys == 0
    # the first deployment failed on a node that had not read the master key: deployed again
    failed = {"state": "FAILED", "error": '{"node-2": "Fetching master key timed out."}'}
    ml = _FakeMl([failed, {"state": "COMPLETED"}], ["DEPLOYED"])
    ml_commons.deploy_remote(_client(ml), "m")
    assert ml.deploys == 2
    # another deployment is running: ours is refused as a duplicate, and that one is waited for
    duplicate = {"state": "FAILED", "error": '{"node-1": "Duplicate deploy model task"}'}
    ml = _FakeMl([duplicate], ["DEPLOYING", "DEPLOYED"])
    ml_commons.deploy_remote(_client(ml), "m")
    assert ml.deploys == 1


def test_a_deployment_that_keeps_failing_is_raised_with_its_error(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(ml_commons.time, "sleep", lambda _s: None)
    ml = _FakeMl([{"state": "FAILED", "error": "connector refused"}], ["DEPLOY_FAILED"])
    with pytest.raises(ml_commons.ConnectError, match="connector refused"):
        ml_commons.deploy_remote(_client(ml), "m", timeout_s=0.0)
