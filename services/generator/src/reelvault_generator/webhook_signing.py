"""Standard Webhooks verification, as the OpenAI webhook guide uses it. Pure.

``webhook-signature`` holds one or more space-separated ``v1,<base64 HMAC-SHA256>`` values over
``"{webhook-id}.{webhook-timestamp}.{raw body}"``; any match passes. A ``whsec_`` secret is
base64 after the prefix, anything else is used as UTF-8. Timestamps further than the tolerance
from now are refused (replays of old deliveries).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_TOLERANCE_S = 300.0


class WebhookRejected(Exception):
    """The delivery must not be acted on; ``status`` is what to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class WebhookEvent:
    webhook_id: str
    event_id: str
    type: str
    job_id: str


@functools.lru_cache(maxsize=8)  # one secret per process: decoded once, not per delivery
def secret_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise ValueError("webhook secret: invalid base64 after 'whsec_'") from exc
    return secret.encode()


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> str:
    """Check a delivery's signature and timestamp; returns its ``webhook-id``."""
    webhook_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not webhook_id or not timestamp or not signatures:
        raise WebhookRejected(400, "missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookRejected(400, "webhook-timestamp is not an integer") from None
    if abs(now - sent_at) > tolerance_s:
        raise WebhookRejected(401, f"webhook-timestamp {sent_at} is outside the tolerance")
    expected = signature(secret, webhook_id, timestamp, body).encode()
    for candidate in signatures.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return webhook_id
    raise WebhookRejected(401, "no matching webhook signature")


def parse_event(webhook_id: str, body: bytes) -> WebhookEvent:
    """``{"id": "evt_..", "type": "video.completed", "data": {"id": "video_.."}}``."""
    try:
        payload = json.loads(body)
        event = WebhookEvent(
            webhook_id=webhook_id,
            event_id=str(payload["id"]),
            type=str(payload["type"]),
            job_id=str(payload["data"]["id"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise WebhookRejected(400, f"malformed webhook body: {exc!r}") from None
    return event
