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
from starlette.exceptions import HTTPException as StarletteHTTPException

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


class BodyTooLarge(Exception):
    """Raised while reading a request body beyond its limit (see ``middleware``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds {limit} bytes")
        self.limit = limit


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
    if isinstance(exc.__cause__, BodyTooLarge):
        # FastAPI turns any failure while reading the body into a 400; say what it was.
        limit = exc.__cause__.limit
        return error_response(413, "payload_too_large", f"The request body exceeds {limit} bytes.")
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    if exc.status_code == 404:
        message = f"Nothing at {request.url.path}."
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}."
    elif exc.status_code >= 500:
        code, message = "internal_error", "Internal server error."
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}) or None)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The trace goes to the log, never to the client.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "Internal server error.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


# --- OpenAPI ------------------------------------------------------------------------------------
_DESCRIPTIONS: dict[int, str] = {
    400: "Bad request (`bad_request`, `empty_file`, `corrupt_image`, `invalid_cursor`, ...).",
    403: "Forbidden: missing, invalid or expired link signature.",
    404: "Not found.",
    409: "Conflict: the video is not in a state that allows this (`video_not_ready`).",
    410: "Gone: the provider's copy expired before it was stored (`source_expired`).",
    413: "Payload too large.",
    415: "Unsupported media type: only JPEG, PNG and WebP images.",
    416: "Requested range not satisfiable.",
    422: "Validation error; `details` names each offending field.",
    500: "Internal error (no details are disclosed).",
    502: "The catalog answered with an error.",
    503: "A dependency is unavailable (`broker_unavailable`, `catalog_unavailable`, "
    "`storage_unavailable`, `not_ready`); retry later.",
}


def error_responses(*status_codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for errors in the envelope (500 is always included)."""
    codes = sorted({*status_codes, 500})
    return {
        code: {"model": ErrorResponse, "description": _DESCRIPTIONS.get(code, "Error.")}
        for code in codes
    }
