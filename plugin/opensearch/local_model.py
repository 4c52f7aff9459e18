"""Our encoder inside OpenSearch: a checkpoint registered, deployed and checked as an ml-commons local model.

The model zip (:mod:`.local_package`) is uploaded in chunks (no URL, no file shared with the
node), deployed, and then checked: OpenSearch's vectors for real texts of several lengths, one
beyond the max length, must equal our encoder's. The model's name carries the checkpoint's
fingerprint, so a rerun finds it again; a deploy that fails is undeployed and deleted, so nothing
half-registered stays behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from opensearchpy import OpenSearch
from opensearchpy import exceptions as os_exc

from retrosearch.core.collections.records import Document
from retrosearch.core.config import EncoderSettings
from retrosearch.core.encoder.runtime import Encoder
from retrosearch.plugin.opensearch import ml_commons
from retrosearch.plugin.opensearch.errors import ConnectError, LocalModelError
from retrosearch.plugin.opensearch.local_package import BOTH, ModelPackage

# ml-commons takes chunks of at most 10 MB.
CHUNK_BYTES = 10_000_000
PARITY_MIN_COSINE = 0.9999
ML_PLUGIN_COMPONENTS = ("opensearch-ml", "opensearch-neural-search")
MODEL_INDEX = ".plugins-ml-model"
LOCAL_FILE_SETTING = "plugins.ml_commons.allow_registering_model_via_local_file"

# Real texts for the parity check; the last is repeated past any max length.
_PARITY_TEXTS = (
    "vitamin D deficiency",
    "Does smoking increase the risk of lung cancer in women more than in men?",
    "Mesenchymal stem cells were isolated from human bone marrow and expanded in culture. Their "
    "differentiation into osteoblasts, chondrocytes and adipocytes was followed for three weeks.",
)
_LONG_TEXT = (
    "Alterations of the architecture of cerebral white matter in the developing human brain can affect "
    "cortical development and result in functional disabilities. A line scan diffusion-weighted magnetic "
    "resonance imaging sequence with diffusion tensor analysis was applied to measure the apparent diffusion "
    "coefficient, to calculate relative anisotropy, and to delineate three-dimensional fiber architecture "
    "in cerebral white matter in preterm and full-term infants. "
)


@dataclass
class LocalModel:
    """A checkpoint deployed in OpenSearch as a local model, and what the deploy did."""

    model_id: str
    name: str
    role: str
    created: bool
    parity: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "name": self.name,
            "role": self.role,
            "created": self.created,
            "parity_min_cosine": self.parity,
        }


@dataclass
class LocalDeployment:
    """A checkpoint's local models (one, or one per template) and the index's pipelines."""

    fingerprint: str
    models: list[LocalModel]
    pipelines: dict[str, str] = field(default_factory=dict)

    def model_id(self, role: str) -> str:
        """The model that embeds with the ``query`` or ``passage`` template."""
        return next(m.model_id for m in self.models if m.role in (role, BOTH))

    def as_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "query_model_id": self.model_id("query"),
            "passage_model_id": self.model_id("passage"),
            "models": [m.as_dict() for m in self.models],
            "pipelines": self.pipelines,
        }


def object_name(package: ModelPackage) -> str:
    """The model's name in OpenSearch: the checkpoint, its fingerprint and role (what a rerun looks up)."""
    role = "" if package.role == BOTH else f" {package.role}"
    return f"retrosearch local {package.name}{role} {package.fingerprint[:16]}"


def require_ml(client: OpenSearch, url: str) -> None:
    """Refuse a cluster without ml-commons and neural-search, naming what to start instead."""
    try:
        rows = client.cat.plugins(format="json")
    except os_exc.TransportError as exc:
        raise LocalModelError(f"cannot list the plugins of OpenSearch at {url}: {exc}") from None
    components = {row.get("component") for row in rows}
    missing = [name for name in ML_PLUGIN_COMPONENTS if name not in components]
    if missing:
        raise LocalModelError(
            f"OpenSearch at {url} lacks the plugin(s) {', '.join(missing)} that run local models; "
            "start a node with `retrosearch opensearch start --with-ml` or install them, "
            "then set --opensearch-url"
        )


def find_models(client: OpenSearch, name: str) -> list[dict[str, Any]]:
    """The models called ``name`` (their chunks excluded), oldest first."""
    query = {
        "query": {
            "bool": {
                "filter": [{"term": {"name.keyword": name}}],
                "must_not": [{"exists": {"field": "chunk_number"}}],
            }
        },
        "size": 10,
        "sort": [{"created_time": {"order": "asc", "unmapped_type": "date"}}],
    }
    try:
        return client.plugins.ml.search_models(body=query).get("hits", {}).get("hits", [])
    except os_exc.NotFoundError:  # no model index before the first model
        return []


def known_failure(reason: str) -> str | None:
    """Why ml-commons refused to register or deploy, with the setting or option to change; None if unknown."""
    if re.search(
        r"pytorch|libtorch|djl_torch|UnsatisfiedLinkError|deep learning engine|native librar", reason, re.I
    ):
        return (
            f"the node cannot load libtorch, which ml-commons needs to run local models ({reason}); start it "
            "with `retrosearch opensearch start --with-ml` "
            "(it sets PYTORCH_LIBRARY_PATH to an offline libtorch) "
            "or set PYTORCH_LIBRARY_PATH in the node's environment"
        )
    if re.search(r"circuit breaker|memory", reason, re.I):
        return (
            f"OpenSearch refused the model for lack of memory ({reason}); raise the cluster setting "
            "plugins.ml_commons.jvm_heap_memory_threshold (or native_memory_threshold), or the node's --heap"
        )
    if re.search(r"local file|via local|not allowed to upload", reason, re.I):
        return (
            f"OpenSearch refuses chunked model uploads ({reason}); "
            f"set the cluster setting {LOCAL_FILE_SETTING}: true"
        )
    if re.search(r"only_run_on_ml_node|no eligible node|ml node", reason, re.I):
        return (
            f"no node may run the model ({reason}); set plugins.ml_commons.only_run_on_ml_node: false "
            "or add a node with the ml role"
        )
    return None


def explain_failure(reason: str) -> str:
    """:func:`known_failure`, or the reason as OpenSearch gave it."""
    return known_failure(reason) or f"OpenSearch could not run the model: {reason}"


def _reason(exc: os_exc.TransportError) -> str:
    info = exc.info if isinstance(exc.info, dict) else {}
    error = info.get("error")
    if isinstance(error, dict):
        cause = (error.get("root_cause") or [error])[0]
        return str(cause.get("reason") or error)
    return str(error or exc.error)


def register(client: OpenSearch, package: ModelPackage, name: str, group_id: str) -> str:
    """Register the package's metadata and upload the zip in chunks; the model id."""
    total = -(-package.size // CHUNK_BYTES)
    body = {
        "name": name,
        "version": "1",
        "description": f"RetroSearch encoder {package.checkpoint} (fingerprint {package.fingerprint}), "
        f"{package.dim} dims, max length {package.max_length}",
        "model_group_id": group_id,
        "model_format": "ONNX",
        "function_name": "TEXT_EMBEDDING",
        "model_content_hash_value": package.sha256,
        "model_content_size_in_bytes": package.size,
        "total_chunks": total,
        "model_config": package.model_config,
    }
    try:
        model_id = client.plugins.ml.register_model_meta(body=body)["model_id"]
    except os_exc.TransportError as exc:
        reason = _reason(exc)
        raise LocalModelError(
            known_failure(reason)
            or (
                f"OpenSearch rejected the registration of {name!r} "
                f"(model_config {_brief(package.model_config)}): "
                f"{reason}; is {package.checkpoint} a BERT-like encoder?"
            )
        ) from None
    try:
        with package.zip_path.open("rb") as handle:
            for number in range(total):
                # Raw bytes under a JSON content type: ml-commons answers 406 to application/octet-stream.
                client.plugins.ml.upload_chunk(
                    model_id=model_id,
                    chunk_number=number,
                    body=handle.read(CHUNK_BYTES),
                    headers={"Content-Type": "application/json"},
                )
    except os_exc.TransportError as exc:
        discard(client, model_id)
        reason = explain_failure(_reason(exc))
        raise LocalModelError(f"{reason} (uploading {name!r}; nothing kept)") from None
    except BaseException:  # interrupted: the next run would find a model without its chunks
        discard(client, model_id)
        raise
    return model_id


def _brief(config: dict[str, Any]) -> str:
    return str({k: v for k, v in config.items() if k != "all_config"})


def deploy(client: OpenSearch, model_id: str, timeout_s: float = 300.0) -> None:
    """Deploy and wait; on failure the model is undeployed and deleted and the cause explained."""
    try:
        task = client.plugins.ml.deploy_model(model_id=model_id)
        ml_commons.wait_for_task(client, task["task_id"], f"deploying model {model_id}", timeout_s)
        ml_commons.wait_deployed(client, model_id, timeout_s)
    except (ConnectError, os_exc.TransportError) as exc:
        reason = _reason(exc) if isinstance(exc, os_exc.TransportError) else str(exc)
        discard(client, model_id)
        raise LocalModelError(explain_failure(reason) + f" (model {model_id} deleted)") from None


def discard(client: OpenSearch, model_id: str) -> None:
    """Undeploy and delete a model, whatever state it is in (nothing half-registered stays behind)."""
    for call in (client.plugins.ml.undeploy_model, client.plugins.ml.delete_model):
        try:
            call(model_id=model_id)
        except os_exc.TransportError:
            pass  # not deployed, or already gone; or the chunks' delete-by-query failed (see below)
    _delete_chunks(client, model_id)


def _delete_chunks(client: OpenSearch, model_id: str) -> None:
    """Delete the model's uploaded chunks one by one.

    ml-commons deletes them with a delete-by-query, which needs the ``reindex`` module; a node
    without it (the integ-test distribution) deletes the model but answers 500 and keeps the chunks.
    """
    query = {
        "query": {
            "bool": {"filter": [{"term": {"model_id": model_id}}, {"exists": {"field": "chunk_number"}}]}
        },
        "size": 1000,
        "_source": False,
    }
    try:
        hits = client.search(index=MODEL_INDEX, body=query)["hits"]["hits"]
        for hit in hits:
            client.delete(index=MODEL_INDEX, id=hit["_id"], ignore=[404])
    except os_exc.TransportError:
        pass  # no access to the system index (a secured cluster deletes its chunks itself)


def parity_texts(max_length: int) -> list[str]:
    """Real texts of several lengths; the last is longer than ``max_length`` tokens."""
    repeats = max_length // 40 + 2  # each repeat is well over 40 tokens
    return [*_PARITY_TEXTS, (_LONG_TEXT * repeats).strip()]


def check_parity(client: OpenSearch, model_id: str, package: ModelPackage) -> dict[str, float]:
    """The lowest cosine of OpenSearch's vectors to our encoder's, per template; raises below the bar."""
    encoder = Encoder.load(
        EncoderSettings(model=str(package.checkpoint), runtime="torch", show_progress=False)
    )
    texts = parity_texts(package.max_length)
    theirs = ml_commons.predict(client, model_id, texts)
    result: dict[str, float] = {}
    for role in package.roles:
        if role == "query":
            expected = encoder.encode_queries(texts)
        else:
            expected = encoder.encode_documents([Document(id=str(i), text=t) for i, t in enumerate(texts)])
        result[role] = _min_cosine(theirs, expected)
    worst = min(result, key=result.get)
    if result[worst] < PARITY_MIN_COSINE:
        raise LocalModelError(
            f"OpenSearch's {worst} vectors differ from our encoder's (lowest cosine {result[worst]:.6f} < "
            f"{PARITY_MIN_COSINE}) for model {package.checkpoint}; it was not kept"
        )
    return result


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def deploy_local_model(client: OpenSearch, package: ModelPackage, url: str) -> LocalModel:
    """The package's model deployed in OpenSearch and checked; a deployed one of its fingerprint is reused."""
    name = object_name(package)
    found = find_models(client, name)
    chosen = next((m for m in found if m["_source"].get("model_state") == "DEPLOYED"), None)
    reusable = ("REGISTERED", "DEPLOY_FAILED", "UNDEPLOYED", "PARTIALLY_DEPLOYED", "DEPLOYING")
    if chosen is None:
        chosen = next((m for m in found if m["_source"].get("model_state") in reusable), None)
    for stale in found:  # interrupted uploads, and second copies
        if stale is not chosen:
            discard(client, stale["_id"])
    created = chosen is None
    if created:
        model_id = register(client, package, name, ml_commons.ensure_model_group(client))
    else:
        model_id = chosen["_id"]
    if chosen is None or chosen["_source"].get("model_state") != "DEPLOYED":
        deploy(client, model_id)
    try:
        parity = check_parity(client, model_id, package)
    except os_exc.TransportError as exc:
        discard(client, model_id)
        raise LocalModelError(explain_failure(_reason(exc)) + f" (model {model_id} deleted)") from None
    except LocalModelError:
        discard(client, model_id)
        raise
    return LocalModel(model_id=model_id, name=name, role=package.role, created=created, parity=parity)
