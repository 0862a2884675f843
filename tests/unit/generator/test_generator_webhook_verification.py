"""The generator's Standard Webhooks verification, checked against the OpenAI SDK's published
test vector (signing with the ``standardwebhooks`` package)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from reelvault_generator.webhook_events import WebhookRejected, parse_event
from reelvault_generator.webhooks import DeliveryVerifier
from standardwebhooks import Webhook

# From the OpenAI SDK's tests (also in docs/providers/openai-videos.md).
SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
WEBHOOK_ID = "wh_685c059ae39c8190af8c71ed1022a24d"
TIMESTAMP = 1750861210
BODY = (
    b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": '
    b'1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
)
SIGNATURE = "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY="


def headers(**overrides: str) -> dict[str, str]:
    values = {"webhook-id": WEBHOOK_ID, "webhook-timestamp": str(TIMESTAMP),
              "webhook-signature": SIGNATURE}
    values.update(overrides)
    return values


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float) -> str:
    return DeliveryVerifier(secret).verify(headers, body, now=now)


def test_sdk_test_vector_signs_and_verifies() -> None:
    signed = Webhook(SECRET).sign(WEBHOOK_ID, datetime.fromtimestamp(TIMESTAMP, tz=UTC),
                                  BODY.decode())
    assert signed == SIGNATURE
    assert verify(SECRET, headers(), BODY, now=TIMESTAMP) == WEBHOOK_ID


def test_any_of_several_signatures_may_match() -> None:
    several = f"v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {SIGNATURE}"
    assert verify(SECRET, headers(**{"webhook-signature": several}), BODY, now=TIMESTAMP)


@pytest.mark.parametrize("body", [BODY + b" ", BODY.replace(b"resp_123", b"resp_124")])
def test_tampered_body_is_rejected(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        verify(SECRET, headers(), body, now=TIMESTAMP)
    assert rejected.value.status == 401


def test_wrong_secret_or_id_is_rejected() -> None:
    with pytest.raises(WebhookRejected):
        verify("whsec_" + "A" * 44, headers(), BODY, now=TIMESTAMP)
    with pytest.raises(WebhookRejected):
        verify(SECRET, headers(**{"webhook-id": "wh_other"}), BODY, now=TIMESTAMP)


@pytest.mark.parametrize("skew", [-301, 301, 86400])
def test_timestamps_outside_the_tolerance_are_rejected(skew: int) -> None:
    with pytest.raises(WebhookRejected, match="tolerance") as rejected:
        verify(SECRET, headers(), BODY, now=TIMESTAMP + skew)
    assert rejected.value.status == 401


def test_timestamps_inside_the_tolerance_pass() -> None:
    assert verify(SECRET, headers(), BODY, now=TIMESTAMP + 299)
    assert verify(SECRET, headers(), BODY, now=TIMESTAMP - 299)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_headers_are_a_bad_request(missing: str) -> None:
    values = headers()
    del values[missing]
    with pytest.raises(WebhookRejected) as rejected:
        verify(SECRET, values, BODY, now=TIMESTAMP)
    assert rejected.value.status == 400


def test_event_body_is_parsed_or_rejected() -> None:
    event = parse_event("wh_1", b'{"id": "evt_1", "object": "event", "created_at": 1, '
                                b'"type": "video.completed", "data": {"id": "video_9"}}')
    assert (event.type, event.job_id, event.event_id) == ("video.completed", "video_9", "evt_1")
    with pytest.raises(WebhookRejected):
        parse_event("wh_1", b'{"type": "video.completed"}')
    with pytest.raises(WebhookRejected):
        parse_event("wh_1", b"not json")
