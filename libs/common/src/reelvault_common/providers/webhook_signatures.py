"""Checks of a provider's signed webhook deliveries, and the one error a failed check raises.

Standard Webhooks (OpenAI's registered webhooks, Gemini's registered webhooks) is checked here
with the ``standardwebhooks`` package; OpenRouter's own ``t=..,v1=..`` scheme lives beside its
client (``openrouter_videos.verify_openrouter_signature``) and raises the same error.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime

from standardwebhooks import Webhook
from standardwebhooks.webhooks import EmptyWebhookSecretError

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "STANDARD_SECRET_PREFIX",
    "StandardWebhookVerifier",
    "WebhookSignatureError",
]

DEFAULT_TOLERANCE_S = 300.0
STANDARD_SECRET_PREFIX = "whsec_"


class WebhookSignatureError(Exception):
    """The delivery must not be acted on. ``status`` is what a receiver answers: 400 for a
    malformed delivery (headers missing or unreadable), 401 for one that does not verify."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StandardWebhookVerifier:
    """Standard Webhooks checks of a delivery's headers, timestamp and signature.

    The HMAC and the secret's decoding are the ``standardwebhooks`` package's. Its ``verify``
    is not used as a whole because it reads the wall clock with a fixed five-minute window,
    while here the tolerance is configured and the clock injected (tests, skewed hosts); so
    the timestamp is checked here and the signature compared with the package's ``sign``.

    ``secret`` as text is read the package's way, as Standard Webhooks defines it: base64,
    after an optional ``whsec_`` prefix (Gemini's secrets). As bytes it is the key itself.
    ``utf8_unless_prefixed`` reads secrets the way OpenAI's SDK does.
    """

    def __init__(self, secret: str | bytes, *, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        if not secret:
            raise ValueError("a webhook secret may not be empty")
        try:
            self._webhook = Webhook(secret)
        except (ValueError, EmptyWebhookSecretError) as exc:  # binascii.Error is a ValueError
            raise ValueError("the webhook secret is not valid, non-empty base64") from exc
        self._tolerance_s = tolerance_s

    @classmethod
    def utf8_unless_prefixed(
        cls, secret: str, *, tolerance_s: float = DEFAULT_TOLERANCE_S
    ) -> StandardWebhookVerifier:
        """A ``whsec_<base64>`` secret decoded as Standard Webhooks says; any other string used
        as its UTF-8 bytes (OpenAI's SDK)."""
        key: str | bytes = (
            secret if secret.startswith(STANDARD_SECRET_PREFIX) else secret.encode()
        )
        return cls(key, tolerance_s=tolerance_s)

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
        """The delivery's ``webhook-id``, else ``WebhookSignatureError``.

        ``headers`` have lower-case names. ``webhook-signature`` may hold several
        space-separated ``v1,<base64>`` values (key rotation): any match passes."""
        webhook_id = headers.get("webhook-id")
        timestamp = headers.get("webhook-timestamp")
        signatures = headers.get("webhook-signature")
        if not webhook_id or not timestamp or not signatures:
            raise WebhookSignatureError(
                400, "missing webhook-id, webhook-timestamp or webhook-signature")
        try:
            sent_at = int(timestamp)
        except ValueError:
            raise WebhookSignatureError(400, "webhook-timestamp is not an integer") from None
        if abs(now - sent_at) > self._tolerance_s:
            raise WebhookSignatureError(
                401, f"webhook-timestamp {sent_at} is outside the tolerance")
        try:
            text = body.decode()
        except UnicodeDecodeError:
            raise WebhookSignatureError(400, "webhook body is not UTF-8") from None
        expected = self._webhook.sign(
            webhook_id, datetime.fromtimestamp(sent_at, tz=UTC), text).encode()
        if any(hmac.compare_digest(candidate.encode(), expected)
               for candidate in signatures.split()):
            return webhook_id
        raise WebhookSignatureError(401, "no matching webhook signature")
