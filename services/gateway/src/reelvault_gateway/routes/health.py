"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from reelvault_gateway.catalog import CatalogError, CatalogUnavailable
from reelvault_gateway.deps import ContextDep
from reelvault_gateway.errors import ApiError, error_responses

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready"] = "ready"
    checks: dict[str, str]


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health()


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Ready to serve: broker connected and catalog answering",
    responses=error_responses(503),
)
async def readyz(context: ContextDep) -> Readiness:
    checks = {"broker": "ok" if context.broker.connected else "disconnected"}
    try:
        await context.catalog.ping(timeout_s=context.settings.readiness_timeout_s)
        checks["catalog"] = "ok"
    except CatalogUnavailable:
        checks["catalog"] = "unavailable"
    except CatalogError:
        checks["catalog"] = "error"
    failed = sorted(name for name, state in checks.items() if state != "ok")
    if failed:
        raise ApiError(
            503, "not_ready", f"Not ready: {', '.join(failed)}.", details={"checks": checks}
        )
    return Readiness(checks=checks)
