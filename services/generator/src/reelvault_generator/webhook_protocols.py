"""How each provider's webhook deliveries are verified and read, reduced to one shape
(``ProviderDelivery``). Pure apart from the HMACs.

- OpenAI: Standard Webhooks headers, ``{"type": "video.completed", "data": {"id": ...}}``.
- OpenRouter: ``X-OpenRouter-Signature: t=..,v1=..`` over ``t,body``; the job in ``data``; our
  callback URL names the video (with its token), so an unknown job can be adopted.
- Gemini: a registered (static) webhook, Standard Webhooks signed; ``video.generated`` names
  the operation (there is no failure event: polling finds those).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from pydantic import ValidationError
from reelvault_common.providers.gemini_veo import VeoWebhookEvent, verify_gemini_webhook
from reelvault_common.providers.openrouter_videos import (
    OpenRouterWebhookEvent,
    verify_openrouter_signature,
)
from reelvault_common.providers.webhook_signatures import (
    StandardWebhookVerifier,
    WebhookSignatureError,
)

from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.webhook_events import WebhookRejected, parse_event

log = logging.getLogger(__name__)

OPENAI_VIDEO_EVENTS = frozenset({"video.completed", "video.failed"})


@dataclass(frozen=True)
class ProviderDelivery:
    """One verified delivery: its dedupe id, the job it is about, whether it says the job
    ended, and the video our callback URL named (None: not named, or not provably ours)."""

    delivery_id: str
    job_id: str
    terminal: bool
    video_id: uuid.UUID | None = None
    # The provider's own name of the event (logs and traces).
    event_type: str = ""


class WebhookProtocol(Protocol):
    def read(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, *,
             now: float) -> ProviderDelivery:
        """The delivery, or ``WebhookRejected`` (400 malformed, 401 unverified)."""
        ...


def _rejected(error: WebhookSignatureError) -> WebhookRejected:
    return WebhookRejected(error.status, error.reason)


class OpenAIWebhooks:
    def __init__(self, secret: str, *, tolerance_s: float) -> None:
        self._verifier = StandardWebhookVerifier.utf8_unless_prefixed(
            secret, tolerance_s=tolerance_s)

    def read(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, *,
             now: float) -> ProviderDelivery:
        try:
            webhook_id = self._verifier.verify(headers, body, now=now)
        except WebhookSignatureError as error:
            raise _rejected(error) from None
        event = parse_event(webhook_id, body)
        return ProviderDelivery(webhook_id, event.job_id, event.type in OPENAI_VIDEO_EVENTS,
                                event_type=event.type)


class OpenRouterWebhooks:
    def __init__(self, secret: str, *, tolerance_s: float,
                 callbacks: CallbackTargets | None) -> None:
        self._secret = secret
        self._tolerance_s = tolerance_s
        self._callbacks = callbacks

    def read(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, *,
             now: float) -> ProviderDelivery:
        try:
            verify_openrouter_signature(self._secret, headers.get("x-openrouter-signature"),
                                        body, now=now, tolerance_s=self._tolerance_s)
            event = OpenRouterWebhookEvent.model_validate_json(body)
        except WebhookSignatureError as error:
            raise _rejected(error) from None
        except ValidationError as exc:
            raise WebhookRejected(400, f"malformed webhook body: {exc.errors()[:1]}") from None
        job_id = event.job_id
        delivery_id = headers.get("x-openrouter-idempotency-key") or f"{job_id}-{event.type}"
        video = (self._callbacks.verified(query.get("video"), query.get("token"))
                 if self._callbacks is not None else None)
        return ProviderDelivery(delivery_id, job_id, event.is_terminal, video,
                                event_type=event.type)


class GeminiWebhooks:
    def __init__(self, secret: str, *, tolerance_s: float) -> None:
        # Standard Webhooks secrets are base64. One that is not is said once, here; each
        # delivery is then refused (401) instead of failing with an error.
        try:
            StandardWebhookVerifier(secret, tolerance_s=tolerance_s)
            self._usable = True
        except ValueError:
            log.error("the Gemini webhook secret is not Standard Webhooks base64 "
                      "(whsec_...): Gemini webhooks will be refused")
            self._usable = False
        self._secret = secret
        self._tolerance_s = tolerance_s

    def read(self, headers: Mapping[str, str], query: Mapping[str, str], body: bytes, *,
             now: float) -> ProviderDelivery:
        if not self._usable:
            raise WebhookRejected(401, "no usable Gemini webhook secret is configured")
        try:
            webhook_id = verify_gemini_webhook(self._secret, headers, body, now=now,
                                               tolerance_s=self._tolerance_s)
            event = VeoWebhookEvent.model_validate_json(body)
        except WebhookSignatureError as error:
            raise _rejected(error) from None
        except (ValidationError, json.JSONDecodeError) as exc:
            raise WebhookRejected(400, f"malformed webhook body: {exc}") from None
        operation = event.operation_name
        if operation is None:
            raise WebhookRejected(400, "the delivery names no operation")
        return ProviderDelivery(webhook_id, operation, event.type == "video.generated",
                                event_type=event.type)
