"""The shared Standard Webhooks verifier: both ways of reading a secret, the tolerance, and
secrets that cannot be keys."""

from __future__ import annotations

import pytest
from reelvault_common.providers.webhook_signatures import (
    StandardWebhookVerifier,
    WebhookSignatureError,
)

# From the OpenAI SDK's tests (also in docs/providers/openai-videos.md).
OPENAI_SECRET = "whsec_RdvaYFYUXuIFuEbvZHwMfYFhUf7aMYjYcmM24+Aj40c="
OPENAI_HEADERS = {
    "webhook-id": "wh_685c059ae39c8190af8c71ed1022a24d",
    "webhook-timestamp": "1750861210",
    "webhook-signature": "v1,gUAg4R2hWouRZqRQG4uJypNS8YK885G838+EHb4nKBY=",
}
OPENAI_BODY = (
    b'{"id": "evt_685c059ae3a481909bdc86819b066fb6", "object": "event", "created_at": '
    b'1750861210, "type": "response.completed", "data": {"id": "resp_123"}}'
)
NOW = 1750861210.0


def test_a_prefixed_secret_reads_the_same_either_way() -> None:
    for verifier in (StandardWebhookVerifier(OPENAI_SECRET),
                     StandardWebhookVerifier.utf8_unless_prefixed(OPENAI_SECRET)):
        assert verifier.verify(OPENAI_HEADERS, OPENAI_BODY, now=NOW) == OPENAI_HEADERS[
            "webhook-id"]


def test_an_unprefixed_secret_is_base64_or_utf8_as_chosen() -> None:
    bare = OPENAI_SECRET.removeprefix("whsec_")
    assert StandardWebhookVerifier(bare).verify(OPENAI_HEADERS, OPENAI_BODY, now=NOW)
    with pytest.raises(WebhookSignatureError) as refused:
        StandardWebhookVerifier.utf8_unless_prefixed(bare).verify(
            OPENAI_HEADERS, OPENAI_BODY, now=NOW)
    assert refused.value.status == 401


def test_the_tolerance_is_configurable() -> None:
    late = NOW + 600
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        StandardWebhookVerifier(OPENAI_SECRET).verify(OPENAI_HEADERS, OPENAI_BODY, now=late)
    verifier = StandardWebhookVerifier(OPENAI_SECRET, tolerance_s=601)
    assert verifier.verify(OPENAI_HEADERS, OPENAI_BODY, now=late)


def test_a_body_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(WebhookSignatureError) as refused:
        StandardWebhookVerifier(OPENAI_SECRET).verify(OPENAI_HEADERS, b"\xff\xfe", now=NOW)
    assert refused.value.status == 400


@pytest.mark.parametrize("secret", ["", "whsec_", "whsec_!!!"])
def test_a_secret_that_is_no_key_is_refused_at_once(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        StandardWebhookVerifier(secret)
