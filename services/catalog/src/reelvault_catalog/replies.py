"""Request decoding and error replies, the same for every catalog RPC."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from reelvault_common.contracts.catalog import CatalogErrorCode, RpcErrorBody, RpcReply

from reelvault_catalog.errors import CatalogRefusal

Request = TypeVar("Request", bound=BaseModel)
Answer = Callable[[bytes], Awaitable[RpcReply]]


def validation_summary(exc: ValidationError, limit: int = 3) -> str:
    """Why a payload was refused, without echoing the payload itself."""
    parts = []
    for error in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(part) for part in error.get("loc", ())) or "payload"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def error_reply(code: CatalogErrorCode, message: str) -> RpcReply:
    return RpcReply(ok=False, error=RpcErrorBody(code=code, message=message))


def parse_request(model: type[Request], body: bytes) -> Request:
    # An empty body means "no parameters" (stats, ping, a first list page).
    return model.model_validate_json(body if body.strip() else b"{}")


async def answer_with(
    model: type[Request], body: bytes, act: Callable[[Request], Awaitable[RpcReply]]
) -> RpcReply:
    """Decode ``body`` as ``model`` and answer with ``act``: a body that does not decode is
    ``invalid_request``, a ``CatalogRefusal`` becomes its code."""
    try:
        request = parse_request(model, body)
    except ValidationError as exc:
        return error_reply(CatalogErrorCode.INVALID_REQUEST, validation_summary(exc))
    try:
        return await act(request)
    except CatalogRefusal as refusal:
        return error_reply(refusal.code, refusal.message)
