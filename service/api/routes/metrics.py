"""Prometheus exposition."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Requests, latencies, inference time, batch sizes, queue depth, loaded models and providers."""
    return Response(request.app.state.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
