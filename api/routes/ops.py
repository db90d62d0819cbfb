"""``/health``, ``/ready``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse

from api.deps import StateDep
from api.metrics import CONTENT_TYPE
from api.models import Health

router = APIRouter(tags=["ops"])


@router.get("/health", response_model=Health)
async def health(state: StateDep) -> Health:
    return Health(status="ok", replica=state.settings.replica_id)


@router.get("/ready")
async def ready(state: StateDep) -> JSONResponse:
    if state.broker.ready and await state.broker.ping():
        return JSONResponse({"status": "ready", "replica": state.settings.replica_id})
    return JSONResponse(
        {"status": "unavailable", "replica": state.settings.replica_id, "detail": "redis is unavailable"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


@router.get("/metrics")
async def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
