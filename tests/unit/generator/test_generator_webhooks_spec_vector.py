"""The Standard Webhooks specification's published test vector, through both of our ends: the
simulator's signer must produce it, the generator's verifier must accept it (and only it)."""

from __future__ import annotations

import pytest
from reelvault_generator.webhook_events import WebhookRejected
from reelvault_generator.webhooks import DeliveryVerifier
from reelvault_providersim.webhooks import Signer

MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = b'{"test": 2432232314}'
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def vector_headers(signature: str = SIGNATURE) -> dict[str, str]:
    return {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP),
            "webhook-signature": signature}


def test_the_simulator_signs_the_vector() -> None:
    assert Signer(SECRET).sign(MSG_ID, TIMESTAMP, PAYLOAD) == SIGNATURE


def test_the_generator_verifies_the_vector() -> None:
    verifier = DeliveryVerifier(SECRET)
    assert verifier.verify(vector_headers(), PAYLOAD, now=TIMESTAMP) == MSG_ID


def test_the_simulators_signature_passes_the_generators_check() -> None:
    signed = Signer(SECRET).sign(MSG_ID, TIMESTAMP, PAYLOAD)
    verifier = DeliveryVerifier(SECRET)
    assert verifier.verify(vector_headers(signed), PAYLOAD, now=TIMESTAMP + 60) == MSG_ID


@pytest.mark.parametrize(
    ("headers", "payload"),
    [
        (vector_headers(), b'{"test": 2432232315}'),
        ({**vector_headers(), "webhook-id": "msg_other"}, PAYLOAD),
        (vector_headers(Signer("whsec_" + "A" * 32).sign(MSG_ID, TIMESTAMP, PAYLOAD)), PAYLOAD),
    ],
    ids=["payload", "msg-id", "secret"],
)
def test_the_generator_refuses_anything_else(headers: dict[str, str], payload: bytes) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        DeliveryVerifier(SECRET).verify(headers, payload, now=TIMESTAMP)
    assert rejected.value.status == 401
