"""Each provider's webhook deliveries, verified and reduced to one shape: OpenRouter's
``X-OpenRouter-Signature`` and the video its callback URL names (with its token), Gemini's
Standard Webhooks ``video.generated``, OpenAI's Standard Webhooks events. Signatures here are
made independently of the code under test (``hmac`` by hand, the ``standardwebhooks``
package)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from generator_fakes import T0
from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.webhook_events import WebhookRejected
from reelvault_generator.webhook_protocols import (
    GeminiWebhooks,
    OpenAIWebhooks,
    OpenRouterWebhooks,
    ProviderDelivery,
)
from standardwebhooks import Webhook

NOW = T0.timestamp()
OR_SECRET = "openrouter-workspace-secret"
PUBLIC = "https://hooks.example.com"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"gemini-signing-secret-0123456789").decode()
OPERATION = "models/veo-3.1-generate-preview/operations/op9f2c"
JOB_ID = "Nxff2D1Z6w4Zk9iNuZam"


def rejected(read: Any, *args: Any, **kwargs: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as refused:
        read(*args, **kwargs)
    return refused.value


# --- OpenRouter -----------------------------------------------------------------------------
def or_body(status: str = "completed", job_id: str = JOB_ID, **data: Any) -> bytes:
    return json.dumps({"type": f"video.generation.{status}", "created_at":
                       "2026-05-01T12:00:00Z", "data": {"id": job_id, "status": status,
                                                        **data}}).encode()


def or_headers(body: bytes, *, secret: str = OR_SECRET, at: float = NOW,
               idempotency_key: str | None = None) -> dict[str, str]:
    timestamp = str(int(at))
    digest = hmac.new(secret.encode(), f"{timestamp},".encode() + body,
                      hashlib.sha256).hexdigest()
    headers = {"x-openrouter-signature": f"t={timestamp},v1={digest}"}
    if idempotency_key is not None:
        headers["x-openrouter-idempotency-key"] = idempotency_key
    return headers


def openrouter(callbacks: CallbackTargets | None = None) -> OpenRouterWebhooks:
    return OpenRouterWebhooks(OR_SECRET, tolerance_s=300, callbacks=callbacks)


def test_openrouter_a_signed_terminal_delivery() -> None:
    body = or_body("completed", unsigned_urls=["https://x/content"], usage={"cost": 1.2})
    delivery = openrouter().read(or_headers(body, idempotency_key=f"{JOB_ID}-completed"), {},
                                 body, now=NOW)
    assert delivery == ProviderDelivery(f"{JOB_ID}-completed", JOB_ID, True, None,
                                        "video.generation.completed")


@pytest.mark.parametrize(("status", "terminal"), [("completed", True), ("failed", True),
                                                  ("cancelled", True), ("expired", True),
                                                  ("in_progress", False), ("pending", False)])
def test_openrouter_which_statuses_end_the_job(status: str, terminal: bool) -> None:
    body = or_body(status)
    delivery = openrouter().read(or_headers(body), {}, body, now=NOW)
    assert delivery.terminal is terminal
    # Without the idempotency header, the job and the event still identify the delivery.
    assert delivery.delivery_id == f"{JOB_ID}-video.generation.{status}"


def test_openrouter_the_callback_url_names_the_video_with_its_token() -> None:
    targets = CallbackTargets(PUBLIC, OR_SECRET)
    video = uuid.uuid4()
    query = dict(parse_qsl(urlsplit(targets.url("openrouter", video)).query))
    body = or_body()
    delivery = openrouter(targets).read(or_headers(body), query, body, now=NOW)
    assert delivery.video_id == video


def test_openrouter_a_forged_or_missing_token_names_no_video() -> None:
    targets = CallbackTargets(PUBLIC, OR_SECRET)
    video, other = uuid.uuid4(), uuid.uuid4()
    body = or_body()
    reader = openrouter(targets)
    for query in (
        {"video": str(video), "token": "0" * 32},                       # made up
        {"video": str(video), "token": targets.token(other)},          # another video's
        {"video": str(video), "token": CallbackTargets(PUBLIC, "x").token(video)},  # other key
        {"video": str(video)},                                          # none
        {"video": "not-a-uuid", "token": targets.token(video)},
        {},
    ):
        delivery = reader.read(or_headers(body), query, body, now=NOW)
        assert delivery.video_id is None, query
        assert delivery.job_id == JOB_ID
    # A receiver without callback targets never names a video.
    assert openrouter(None).read(or_headers(body), {"video": str(video),
                                                    "token": targets.token(video)},
                                 body, now=NOW).video_id is None


def test_openrouter_unverifiable_deliveries_are_refused() -> None:
    body = or_body()
    reader = openrouter()
    assert rejected(reader.read, or_headers(body, secret="wrong"), {}, body, now=NOW).status \
        == 401
    assert rejected(reader.read, or_headers(body), {}, body.replace(b"completed", b"failed"),
                    now=NOW).status == 401
    assert rejected(reader.read, or_headers(body, at=NOW - 301), {}, body, now=NOW).status \
        == 401
    assert rejected(reader.read, {}, {}, body, now=NOW).status == 400
    assert rejected(reader.read, {"x-openrouter-signature": "sha256=abc"}, {}, body,
                    now=NOW).status == 400


def test_openrouter_a_signed_body_that_is_not_an_event_is_malformed() -> None:
    reader = openrouter()
    for body in (b"not json", b'{"type": "video.generation.completed"}', b"[]"):
        refusal = rejected(reader.read, or_headers(body), {}, body, now=NOW)
        assert refusal.status == 400
        assert "malformed" in refusal.reason


# --- Gemini ---------------------------------------------------------------------------------
def standard_headers(secret: str, body: bytes, *, webhook_id: str = "msg_1",
                     at: float = NOW) -> dict[str, str]:
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(int(at), tz=UTC),
                                     body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)),
            "webhook-signature": signature}


def gemini_body(data: dict[str, Any], event_type: str = "video.generated") -> bytes:
    return json.dumps({"type": event_type, "version": "v1",
                       "timestamp": "2026-05-01T12:00:00Z", "data": data}).encode()


def test_gemini_a_generated_video_names_its_operation() -> None:
    body = gemini_body({"id": OPERATION, "output_file_uri": "files/abc123",
                        "user_metadata": {"video_id": str(uuid.uuid4())}})
    reader = GeminiWebhooks(STANDARD_SECRET, tolerance_s=300)
    delivery = reader.read(standard_headers(STANDARD_SECRET, body), {}, body, now=NOW)
    # Metadata is not trusted to name a video: only the operation counts.
    assert delivery == ProviderDelivery("msg_1", OPERATION, True, None, "video.generated")


def test_gemini_another_event_type_is_not_terminal() -> None:
    body = gemini_body({"id": OPERATION}, event_type="batch.succeeded")
    reader = GeminiWebhooks(STANDARD_SECRET, tolerance_s=300)
    assert not reader.read(standard_headers(STANDARD_SECRET, body), {}, body, now=NOW).terminal


def test_gemini_a_delivery_naming_no_operation_is_refused() -> None:
    reader = GeminiWebhooks(STANDARD_SECRET, tolerance_s=300)
    for data in ({"id": "op9f2c"}, {"file_name": "files/abc"}, {}):
        body = gemini_body(data)
        refusal = rejected(reader.read, standard_headers(STANDARD_SECRET, body), {}, body,
                           now=NOW)
        assert refusal.status == 400


def test_gemini_unverifiable_or_malformed_deliveries_are_refused() -> None:
    reader = GeminiWebhooks(STANDARD_SECRET, tolerance_s=300)
    body = gemini_body({"id": OPERATION})
    other = "whsec_" + base64.b64encode(b"someone-else").decode()
    assert rejected(reader.read, standard_headers(other, body), {}, body, now=NOW).status == 401
    assert rejected(reader.read, standard_headers(STANDARD_SECRET, body, at=NOW - 400), {},
                    body, now=NOW).status == 401
    assert rejected(reader.read, {"webhook-id": "msg_1"}, {}, body, now=NOW).status == 400
    junk = b"{not json"
    assert rejected(reader.read, standard_headers(STANDARD_SECRET, junk), {}, junk,
                    now=NOW).status == 400


def test_gemini_a_secret_that_is_not_base64_refuses_deliveries_without_crashing(
    caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        reader = GeminiWebhooks("short", tolerance_s=300)  # 5 base64 digits: no key
    assert "Gemini webhooks will be refused" in caplog.text
    assert "short" not in caplog.text
    body = gemini_body({"id": OPERATION})
    assert rejected(reader.read, standard_headers(STANDARD_SECRET, body), {}, body,
                    now=NOW).status == 401


# --- OpenAI ---------------------------------------------------------------------------------
def openai_body(event_type: str, job_id: str = "video_1") -> bytes:
    return json.dumps({"id": "evt_1", "object": "event", "created_at": int(NOW),
                       "type": event_type, "data": {"id": job_id}}).encode()


@pytest.mark.parametrize(("event_type", "terminal"), [("video.completed", True),
                                                      ("video.failed", True),
                                                      ("response.completed", False)])
def test_openai_events(event_type: str, terminal: bool) -> None:
    body = openai_body(event_type)
    reader = OpenAIWebhooks(STANDARD_SECRET, tolerance_s=300)
    delivery = reader.read(standard_headers(STANDARD_SECRET, body, webhook_id="wh_1"),
                           {"video": str(uuid.uuid4()), "token": "x"}, body, now=NOW)
    # The query never names a video here: OpenAI's protocol lists its jobs instead.
    assert delivery == ProviderDelivery("wh_1", "video_1", terminal, None, event_type)


def test_openai_a_plain_secret_is_its_utf8_bytes_and_bad_deliveries_are_refused() -> None:
    body = openai_body("video.completed")
    reader = OpenAIWebhooks("plain-secret", tolerance_s=300)
    good = standard_headers(base64.b64encode(b"plain-secret").decode(), body)
    assert reader.read(good, {}, body, now=NOW).job_id == "video_1"
    assert rejected(reader.read, standard_headers(STANDARD_SECRET, body), {}, body,
                    now=NOW).status == 401
    junk = b'{"type": "video.completed"}'
    assert rejected(reader.read, standard_headers(base64.b64encode(b"plain-secret").decode(),
                                                  junk), {}, junk, now=NOW).status == 400
