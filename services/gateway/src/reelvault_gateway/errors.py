"""One JSON error envelope for every failure: ``{"error": {"code", "message", "details"}}``.

Route code raises ``ApiError``; FastAPI's validation errors, Starlette's HTTP errors (404 for an
unknown route, 405, ...) and unexpected exceptions are mapped onto the same shape. Clients never
see stack traces, exception texts of unexpected errors, or request input echoed back.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from reelvault_common.storage import TransientStorageError
from starlette.exceptions import HTTPException as StarletteHTTPException

from reelvault_gateway.broker import BrokerUnavailable
from reelvault_gateway.catalog import CatalogError, CatalogUnavailable, InvalidCursor

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    code: str = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="What went wrong, for people.")
    details: Any | None = Field(
        default=None,
        description="Optional structure: for validation errors a list of "
        "`{loc, msg, type}` naming the offending fields.",
    )


class ErrorResponse(BaseModel):
    error: ErrorBody


class ApiError(Exception):
    """An error with an HTTP status, sent to the client in the envelope."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Any | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def field_error(loc: Sequence[str | int], message: str, type_: str = "value_error") -> ApiError:
    """A 422 naming one field, shaped like FastAPI's own validation errors."""
    where = ".".join(str(part) for part in loc)
    return ApiError(
        422,
        "validation_error",
        f"{where}: {message}",
        details=[{"loc": list(loc), "msg": message, "type": type_}],
    )


def error_payload(code: str, message: str, details: Any | None = None) -> dict[str, Any]:
    return ErrorResponse(error=ErrorBody(code=code, message=message, details=details)).model_dump(
        mode="json"
    )


def error_response(
    status_code: int,
    code: str,
    message: str,
    details: Any | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_payload(code, message, details), status_code, headers=headers)


# --- mapping of framework errors ---------------------------------------------------------------
_HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "rate_limited",
}


def clean_validation_errors(errors: Iterable[Any]) -> list[dict[str, Any]]:
    """FastAPI's error list without ``input``/``ctx``: they may echo secrets or huge payloads."""
    cleaned = []
    for error in errors:
        cleaned.append(
            {
                "loc": [part if isinstance(part, int) else str(part) for part in error["loc"]],
                "msg": str(error["msg"]),
                "type": str(error["type"]),
            }
        )
    return cleaned


def summarize(details: list[dict[str, Any]]) -> str:
    if not details:
        return "The request is invalid."
    first = details[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
    return f"{where}: {first['msg']}{more}"


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.code, exc.message, exc.details, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = clean_validation_errors(exc.errors())
    return error_response(422, "validation_error", summarize(details), details)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"Nothing at {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
        headers["Allow"] = ", ".join(allowed_methods(request))
    elif exc.status_code == 413:
        message = "The request body is too large."
    elif exc.status_code >= 500:
        code, message = "internal_error", "Internal server error."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=headers or None)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts on this path (Starlette only names the first route's)."""
    methods: set[str] = set()
    for route in _leaf_routes(request.app.router.routes):
        route_methods = getattr(route, "methods", None)
        path_regex = getattr(route, "path_regex", None)
        if route_methods and path_regex is not None and path_regex.match(request.url.path):
            methods.update(route_methods)
    return sorted(methods)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The trace goes to the log, never to the client.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


async def _dependency_error(_: Request, exc: Exception) -> JSONResponse:
    # Adapters raise their own errors; this is the one place they become HTTP answers.
    retry = {"Retry-After": "2"}
    if isinstance(exc, BrokerUnavailable):
        log.warning("broker unavailable: %s", exc)
        return error_response(
            503,
            "broker_unavailable",
            "The message broker is unavailable; nothing was changed. Retry later.",
            headers=retry,
        )
    if isinstance(exc, CatalogUnavailable):
        log.warning("catalog unavailable: %s", exc)
        return error_response(
            503, "catalog_unavailable", "The catalog is not answering. Retry later.", headers=retry
        )
    if isinstance(exc, InvalidCursor):
        return error_response(400, "invalid_cursor", "The cursor is invalid or expired.")
    if isinstance(exc, CatalogError):
        log.error("catalog error %s: %s", exc.code, exc.message)
        return error_response(502, "catalog_error", "The catalog could not answer this request.")
    if isinstance(exc, TransientStorageError):
        log.warning("storage unavailable: %s", exc)
        return error_response(
            503, "storage_unavailable", "Object storage is unavailable. Retry later.", headers=retry
        )
    return await _unexpected(_, exc)


def install_error_handlers(app: FastAPI) -> None:
    for exc_class in (
        BrokerUnavailable,
        CatalogUnavailable,
        CatalogError,
        InvalidCursor,
        TransientStorageError,
    ):
        app.add_exception_handler(exc_class, _dependency_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


# --- OpenAPI ------------------------------------------------------------------------------------
_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (`bad_request`, `empty_file`, `corrupt_image`, `invalid_cursor`, ...).",
    401: "Missing or invalid credentials (`missing_credentials`, `invalid_key`, `key_expired`, "
    "`key_revoked`, `invalid_session`); the answer carries `WWW-Authenticate: Bearer`.",
    403: "Forbidden: the key lacks the scope (`insufficient_scope`), creating is open to "
    "selected organizations only (`not_whitelisted`), or a link signature is missing, invalid "
    "or expired (`forbidden`).",
    404: "Not found.",
    409: "Conflict: the video is not in a state that allows this (`video_not_ready`), or the "
    "Idempotency-Key was already used for a different request (`idempotency_key_reused`).",
    410: "Gone: the provider's copy expired before it was stored (`source_expired`).",
    413: "Payload too large.",
    415: "Unsupported media type: only JPEG, PNG and WebP images.",
    416: "Requested range not satisfiable.",
    422: "Validation error; `details` names each offending field.",
    429: "A quota of the organization is used up (`quota_exceeded`); `details` says which "
    "(`quota`, `used`, `limit`, `resets_at`) and `Retry-After` when it resets.",
    500: "Internal error (no details are disclosed).",
    502: "The catalog answered with an error.",
    503: "A dependency is unavailable (`broker_unavailable`, `catalog_unavailable`, "
    "`storage_unavailable`, `not_ready`), or writes are paused (`maintenance`); retry later.",
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for errors in the envelope (500 is always included)."""
    codes = sorted({*status_codes, 500})
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(code, "Error.")}
        for code in codes
    }


def _leaf_routes(routes: Iterable[Any]) -> Iterable[Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router wrapper
        if included is not None:
            yield from _leaf_routes(included.routes)
        else:
            yield route
