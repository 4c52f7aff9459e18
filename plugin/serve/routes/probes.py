"""Probes and description: ``/healthz``, ``/readyz``, ``/metrics``, ``/info``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from retrosearch.plugin.serve.errors import ApiError
from retrosearch.plugin.serve.metrics import CONTENT_TYPE_LATEST
from retrosearch.plugin.serve.state import PROTECTED, ServiceState, json_response, service

router = APIRouter()

#: The settings ``/info`` shows under ``limits``.
_LIMITS = {"max_batch_size", "max_batch_tokens", "max_wait_ms", "max_texts", "max_chars", "max_k",
           "embeddings_mode", "max_queued_texts", "max_queued_tokens"}


@router.get("/healthz", tags=["probes"], summary="The process is up (answers while a batch computes).")
async def healthz(state: ServiceState = Depends(service)) -> dict[str, Any]:
    return {"status": "ok", "uptime_s": round(time.time() - state.started_at, 3)}


@router.get("/readyz", tags=["probes"],
            summary="Model loaded and backend reachable; 503 with the reason otherwise.")
async def readyz(state: ServiceState = Depends(service)) -> Response:
    engine, _ = state.require_engine()
    reason = await asyncio.get_running_loop().run_in_executor(state.executor, engine.not_ready_reason)
    if reason:
        raise ApiError(503, reason, code="backend_unavailable")
    return json_response({"status": "ready", "model": engine.model_name, "backend": engine.target.backend})


@router.get("/metrics", tags=["probes"], summary="Prometheus metrics.", dependencies=PROTECTED)
async def metrics(state: ServiceState = Depends(service)) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/info", tags=["service"], summary="What is served: model, dimension, templates, index.",
            dependencies=PROTECTED)
async def info(state: ServiceState = Depends(service)) -> Response:
    engine, _ = state.require_engine()
    described = await asyncio.get_running_loop().run_in_executor(state.executor, engine.describe)
    return json_response({**described, "limits": state.serve.model_dump(include=_LIMITS)})
