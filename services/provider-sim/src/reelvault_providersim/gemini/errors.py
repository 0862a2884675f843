"""Google's error envelope ``{"error": {code, message, status, details}}`` and the
simulator's faults translated into it."""

from __future__ import annotations

import math
from typing import Any

from reelvault_providersim.errors import ApiError

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
# google.rpc.Code numbers, used in a failed operation's ``error.code``.
RPC_CODES = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}
_TYPE = "type.googleapis.com/google.rpc."


class GoogleError(ApiError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        rpc_status: str | None = None,
    ) -> None:
        super().__init__(status, message)
        self.rpc_status = rpc_status or _STATUS_NAMES.get(status, "UNKNOWN")
        self.details = details or []

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": self.rpc_status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def invalid_argument(message: str, field: str | None = None) -> GoogleError:
    details = None
    if field is not None:
        violation = {"field": field, "description": message}
        details = [{"@type": f"{_TYPE}BadRequest", "fieldViolations": [violation]}]
    return GoogleError(400, message, details=details)


def not_found(message: str) -> GoogleError:
    return GoogleError(404, message)


def api_key_missing() -> GoogleError:
    return GoogleError(
        403,
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API.",
        details=[_error_info("CONSUMER_INVALID")],
    )


def api_key_invalid() -> GoogleError:
    return GoogleError(
        400,
        "API key not valid. Please pass a valid API key.",
        details=[_error_info("API_KEY_INVALID")],
    )


def _error_info(reason: str) -> dict[str, Any]:
    return {
        "@type": f"{_TYPE}ErrorInfo",
        "reason": reason,
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }


def resource_exhausted(retry_after_s: float, model: str | None, *, daily: bool) -> GoogleError:
    quota_id = (
        "GenerateRequestsPerDayPerProjectPerModel"
        if daily
        else "GenerateRequestsPerMinutePerProjectPerModel"
    )
    violation: dict[str, Any] = {
        "quotaMetric": "generativelanguage.googleapis.com/generate_requests_per_model",
        "quotaId": quota_id,
    }
    if model:
        violation["quotaDimensions"] = {"model": model, "location": "global"}
    return GoogleError(
        429,
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.",
        details=[
            {"@type": f"{_TYPE}QuotaFailure", "violations": [violation]},
            {"@type": f"{_TYPE}RetryInfo", "retryDelay": f"{max(1, math.ceil(retry_after_s))}s"},
        ],
    )


def translate(error: ApiError, model: str | None = None) -> GoogleError:
    """A fault decided in OpenAI's terms, as the Gemini API answers it."""
    if isinstance(error, GoogleError):
        return error
    if error.status == 429:
        retry_after = float(error.headers.get("retry-after-ms", "1000")) / 1000
        daily = error.code == "insufficient_quota"
        return resource_exhausted(retry_after if not daily else 3600, model, daily=daily)
    if error.status == 503:
        return GoogleError(503, "The model is overloaded. Please try again later.")
    if error.status == 504:
        return GoogleError(504, "Deadline expired before operation could complete.")
    if error.status >= 500:
        return GoogleError(
            error.status,
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )
    return GoogleError(error.status, error.message)


def rpc_code(code: str) -> int:
    """A planned failure's code as a google.rpc.Code number (INTERNAL when unnamed)."""
    if code.isdigit():
        return int(code)
    return RPC_CODES.get(code.upper(), RPC_CODES["INTERNAL"])
