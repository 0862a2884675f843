"""OpenRouter's webhook: one POST per terminal state to the job's callback URL.

Body ``{"type": "video.generation.<status>", "created_at": <ISO-8601>, "data": {...}}``;
headers ``X-OpenRouter-Idempotency-Key: <job id>-<status>`` and, with a signing secret,
``X-OpenRouter-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>,<body>")>``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``v1`` value: lowercase hex HMAC-SHA256 keyed with the secret's UTF-8 bytes over
    ``"<t>," + body``."""
    message = str(timestamp).encode() + b"," + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def headers(job_id: str, status: str, secret: str | None, timestamp: int, body: bytes
            ) -> dict[str, str]:
    out = {"X-OpenRouter-Idempotency-Key": f"{job_id}-{status}"}
    if secret:
        out["X-OpenRouter-Signature"] = signature_header(secret, timestamp, body)
    return out


def iso_millis(unix: float) -> str:
    """``2026-04-24T12:00:00.000Z``, the format of the events' ``created_at``."""
    moment = datetime.fromtimestamp(unix, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
