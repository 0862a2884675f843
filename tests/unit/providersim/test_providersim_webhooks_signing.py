"""Standard Webhooks signing, checked against the SDK's published test vector."""

from __future__ import annotations

import json
import time

import openai
import pytest
from reelvault_providersim.webhooks import Signer

SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
WEBHOOK_ID = "wh_685c059ae39c8190af8c71ed1022a24d"
TIMESTAMP = 1750861210
BODY = (
    '{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": '
    '1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
)
EXPECTED = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="


def test_matches_published_vector() -> None:
    assert Signer(SECRET).sign(WEBHOOK_ID, TIMESTAMP, BODY.encode()) == EXPECTED


def test_plain_secret_is_used_as_utf8_like_the_sdk() -> None:
    body = '{"id": "evt_1"}'
    headers = {
        "webhook-id": WEBHOOK_ID,
        "webhook-timestamp": str(int(time.time())),
    }
    headers["webhook-signature"] = Signer("plain-secret").sign(
        WEBHOOK_ID, int(headers["webhook-timestamp"]), body.encode()
    )
    # The SDK treats a secret without the whsec_ prefix as raw UTF-8 bytes: so must we.
    openai.OpenAI(api_key="unused", webhook_secret="plain-secret").webhooks.verify_signature(
        body, headers
    )
    assert Signer("other").sign(WEBHOOK_ID, TIMESTAMP, b"{}") != Signer("plain-secret").sign(
        WEBHOOK_ID, TIMESTAMP, b"{}"
    )


def test_sdk_accepts_our_signature() -> None:
    now = int(time.time())
    body = json.dumps(
        {
            "id": "evt_1",
            "object": "event",
            "created_at": now,
            "type": "video.completed",
            "data": {"id": "video_1"},
        }
    )
    headers = {
        "webhook-id": "wh_1",
        "webhook-timestamp": str(now),
        "webhook-signature": Signer(SECRET).sign("wh_1", now, body.encode()),
    }
    client = openai.OpenAI(api_key="unused", webhook_secret=SECRET)
    client.webhooks.verify_signature(body, headers)  # raises if it does not match
    headers["webhook-signature"] = Signer(SECRET).sign("wh_1", now, b"tampered")
    with pytest.raises(openai.InvalidWebhookSignatureError):
        client.webhooks.verify_signature(body, headers)
