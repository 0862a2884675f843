"""Endpoint secrets and the Standard Webhooks headers of each attempt.

The signature is the ``standardwebhooks`` package's: ``v1,<base64 HMAC-SHA256 of
"<webhook-id>.<webhook-timestamp>.<body>">`` with the secret's bytes (``whsec_<base64>``).
The ``webhook-id`` is the delivery's id, the same on every attempt (receivers deduplicate on
it); the timestamp is the attempt's own, so a receiver's replay window holds for retries.
"""

from __future__ import annotations

import base64
import secrets
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = "reelvault-webhooks/1"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signed_headers(secret: str, webhook_id: str, body: str, sent_at: datetime
                   ) -> dict[str, str]:
    """The headers of one attempt to send ``body``."""
    when = sent_at.astimezone(UTC)
    signature = Webhook(secret).sign(webhook_id, when, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
