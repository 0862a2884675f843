"""OpenRouter's error envelope: ``{"error": {"code": <HTTP status>, "message", "metadata":
{"error_type"}}}``, and the simulator's faults translated into it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from reelvault_providersim.errors import ApiError

INSUFFICIENT_CREDITS = "Insufficient credits. Add more using https://openrouter.ai/credits"


class OpenRouterError(ApiError):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.error_type = error_type

    def envelope(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.error_type is not None:
            error["metadata"] = {"error_type": self.error_type}
        return {"error": error}


def invalid_request(message: str) -> OpenRouterError:
    return OpenRouterError(400, message, error_type="invalid_request")


def not_found(message: str) -> OpenRouterError:
    return OpenRouterError(404, message, error_type="not_found")


def unauthorized(missing: bool) -> OpenRouterError:
    # The body OpenRouter sends without a key (observed); a wrong key reads the same way.
    message = "Missing Authentication header" if missing else "User not found."
    return OpenRouterError(401, message, error_type=None)


def translate(error: ApiError, now: float) -> OpenRouterError:
    """A fault decided in OpenAI's terms, as OpenRouter answers it."""
    if isinstance(error, OpenRouterError):
        return error
    if error.status == 429 and error.code == "insufficient_quota":
        return OpenRouterError(402, INSUFFICIENT_CREDITS, error_type="payment_required")
    if error.status == 429:
        retry_after = float(error.headers.get("retry-after-ms", "1000")) / 1000
        headers = {
            "Retry-After": str(max(0, math.ceil(retry_after))),
            "X-RateLimit-Limit": error.headers.get("x-ratelimit-limit-requests", "0"),
            "X-RateLimit-Remaining": error.headers.get("x-ratelimit-remaining-requests", "0"),
            # Unix milliseconds when the window resets.
            "X-RateLimit-Reset": str(int((now + retry_after) * 1000)),
        }
        return OpenRouterError(
            429, "Rate limit exceeded", error_type="rate_limit_exceeded", headers=headers
        )
    if error.status == 502:
        return OpenRouterError(502, "Provider returned error", error_type="provider_unavailable")
    if error.status == 503:
        return OpenRouterError(
            503,
            "No available provider could serve this request",
            error_type="provider_unavailable",
            headers={"Retry-After": "1"},
        )
    if error.status >= 500:
        return OpenRouterError(error.status, "Internal Server Error", error_type="server")
    return OpenRouterError(error.status, error.message, error_type="invalid_request")
