"""Webhook secrets and signatures: what a receiver checks with the ``standardwebhooks``
package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from reelvault_catalog.webhooks.signing import new_secret, signed_headers
from standardwebhooks import Webhook, WebhookVerificationError

BODY = '{"type":"video.completed","timestamp":"2027-01-01T00:00:00Z","data":{"id":"x"}}'


def test_secrets_are_standard_and_random() -> None:
    one, two = new_secret(), new_secret()
    assert one.startswith("whsec_") and one != two
    assert len(base64.b64decode(one.removeprefix("whsec_"))) == 32


def test_a_receiver_verifies_the_signature_with_the_secret() -> None:
    secret = new_secret()
    headers = signed_headers(secret, "3f1d", BODY, datetime.now(UTC))
    assert headers["webhook-id"] == "3f1d" and headers["content-type"] == "application/json"
    assert Webhook(secret).verify(BODY, headers)["data"] == {"id": "x"}


@pytest.mark.parametrize("tamper", ["body", "id", "secret", "old"])
def test_anything_else_fails_verification(tamper: str) -> None:
    secret = new_secret()
    sent_at = datetime.now(UTC) - (timedelta(minutes=10) if tamper == "old" else timedelta())
    headers = signed_headers(secret, "3f1d", BODY, sent_at)
    body = BODY.replace("x", "y") if tamper == "body" else BODY
    if tamper == "id":
        headers["webhook-id"] = "other"
    key = new_secret() if tamper == "secret" else secret
    with pytest.raises(WebhookVerificationError):
        Webhook(key).verify(body, headers)
