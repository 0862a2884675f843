"""What every provider client raises: one error type, whatever the protocol.

``status`` is None for transport failures; ``transient`` says what is worth retrying (as the
official SDKs do); ``retry_after_s`` is the server's own wait when it gave one.
"""

from __future__ import annotations

import httpx2


class ProviderError(Exception):
    """A non-2xx reply (with the OpenAI error envelope when there is one) or a transport failure."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s

    @property
    def transient(self) -> bool:
        """Worth retrying (as the official SDK does): transport failures, 408, 409, 429, 5xx."""
        return self.status is None or self.status in (408, 409, 429) or self.status >= 500

    def __str__(self) -> str:
        return f"{self.status} {self.code or self.type or ''}: {self.message}".strip()


def retry_after_seconds(headers: httpx2.Headers) -> float | None:
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    if (seconds := headers.get("retry-after")) is not None:
        try:
            return float(seconds)
        except ValueError:
            return None
    return None
