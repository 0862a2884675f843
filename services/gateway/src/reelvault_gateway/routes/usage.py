"""``GET /v1/usage``: the caller's organization's usage and limits."""

from __future__ import annotations

from fastapi import APIRouter

from reelvault_gateway.deps import ContextDep, ReadPrincipal
from reelvault_gateway.errors import error_responses
from reelvault_gateway.quotas import Usage, usage_view

router = APIRouter(tags=["usage"])


@router.get(
    "/v1/usage",
    response_model=Usage,
    summary="Usage and limits of your organization",
    responses=error_responses(401, 403, 502, 503),
)
async def get_usage(principal: ReadPrincipal, context: ContextDep) -> Usage:
    """This month's videos, generation seconds and cost, and the bytes stored, each with its
    limit (null: none) and when it resets. A create beyond a limit is a 429."""
    return usage_view(await context.catalog.usage(principal.org))
