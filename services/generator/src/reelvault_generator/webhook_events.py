"""What a provider's webhook delivery says, and how one is refused. Pure.

(The signature itself is checked with the ``standardwebhooks`` package: ``webhooks.py``.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass


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
