"""``GET /v1/models``: what this deployment can generate."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from reelvault_common.providers.models import ModelSpec

from reelvault_gateway.deps import ContextDep, ReadPrincipal
from reelvault_gateway.errors import error_responses

router = APIRouter(prefix="/v1/models", tags=["models"])


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelSpec]


@router.get(
    "",
    response_model=ModelList,
    summary="List the models this deployment can generate",
    responses=error_responses(401, 403),
)
async def list_models(_: ReadPrincipal, context: ContextDep) -> ModelList:
    """Each model with its sizes, durations (and the sizes that allow fewer), how reference
    images reach it (`first_frame`, `last_frame`, `reference`; two images go to a model that
    takes one frame composed side by side), and its list price per second. Prices and
    capabilities come from the provider where it publishes them, refreshed periodically; a
    request outside them is refused with a 422 naming the allowed values."""
    return ModelList(data=list(context.models.current.specs))
