"""Embeddings: ``/embed`` (ours), ``/v1/embeddings`` and ``/v1/models`` (OpenAI-compatible)."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from retrosearch.plugin.serve.errors import ApiError
from retrosearch.plugin.serve.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
)
from retrosearch.plugin.serve.state import PROTECTED, ServiceState, json_response, service

router = APIRouter(tags=["embeddings"], dependencies=PROTECTED)


@router.post("/embed", response_model=EmbedResponse,
             summary="Vectors of texts under the model's query or passage template.")
async def embed(body: EmbedRequest, state: ServiceState = Depends(service)) -> Response:
    state.check_texts(body.texts, "texts")
    engine, encoded = await state.encode(body.texts, body.mode)
    return json_response({"vectors": encoded.vectors, "model": engine.model_name, "dim": engine.dim,
                          "mode": body.mode})


@router.post("/v1/embeddings", response_model=EmbeddingsResponse,
             summary="OpenAI-compatible embeddings (template: input_type, else the server's "
                     "--embeddings-mode).")
async def embeddings(body: EmbeddingsRequest, state: ServiceState = Depends(service)) -> Response:
    texts = body.texts
    state.check_texts(texts, "input")
    engine, _ = state.require_engine()
    if body.model and body.model not in (engine.model_name, "retrosearch", engine.encoder.fingerprint):
        raise ApiError(404, f"model {body.model!r} is not served here; this service serves "
                       f"{engine.model_name!r}", "model", code="model_not_found")
    if body.dimensions is not None and body.dimensions > engine.dim:
        raise ApiError(400, f"dimensions={body.dimensions} is not available; {engine.model_name} gives "
                       f"{engine.dim}", "dimensions")
    engine, encoded = await state.encode(texts, body.input_type or state.serve.embeddings_mode)
    # Cut (and renormalise) as the encoder's own `dimensions` setting would: the same vectors either way.
    vectors = engine.encoder.cut(encoded.vectors, body.dimensions)
    if body.encoding_format == "base64":
        vectors = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in vectors]
    tokens = int(encoded.tokens.sum())
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    return json_response({"object": "list", "data": data, "model": engine.model_name,
                          "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


@router.get("/v1/models", summary="The served model, OpenAI style.")
async def models(state: ServiceState = Depends(service)) -> Response:
    engine, _ = state.require_engine()
    created = int(state.started_at)
    model = {"id": engine.model_name, "object": "model", "created": created, "owned_by": "retrosearch"}
    return json_response({"object": "list", "data": [model]})
