"""Gemini's static (project-level) webhooks and the ``video.generated`` event.

Registered webhooks each get a ``whsec_`` signing secret (shown once, on create) and are
signed per Standard Webhooks. Per-request ``webhookConfig.uris`` are signed by Google with an
RS256 JWT; the simulator signs them with a static secret instead (see the README).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from reelvault_providersim.webhooks import Signer

EVENTS: tuple[str, ...] = (
    "batch.succeeded",
    "batch.expired",
    "batch.failed",
    "batch.cancelled",
    "interaction.requires_action",
    "interaction.completed",
    "interaction.failed",
    "interaction.cancelled",
    "video.generated",
)
REVOCATIONS = ("revoke_previous_secrets_after_h24", "revoke_previous_secrets_immediately")
GRACE_S = 24 * 3600


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def rfc3339(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class SigningSecret:
    secret: str
    expire_time: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"truncated_secret": f"{self.secret[:10]}..."}
        if self.expire_time is not None:
            out["expire_time"] = rfc3339(self.expire_time)
        return out


@dataclass
class Webhook:
    id: str
    uri: str
    subscribed_events: list[str]
    create_time: float
    update_time: float
    display_name: str | None = None
    state: str = "enabled"
    secrets: list[SigningSecret] = field(default_factory=list)

    def as_dict(self, *, new_secret: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": f"webhooks/{self.id}",
            "id": self.id,
            "uri": self.uri,
            "subscribed_events": list(self.subscribed_events),
            "state": self.state,
            "create_time": rfc3339(self.create_time),
            "update_time": rfc3339(self.update_time),
            "signing_secrets": [s.as_dict() for s in self.secrets],
        }
        if new_secret is not None:
            out["new_signing_secret"] = new_secret
        return out

    def live_secrets(self, now: float) -> list[str]:
        return [s.secret for s in self.secrets if s.expire_time is None or s.expire_time > now]

    def rotate(self, now: float, revocation: str) -> str:
        for old in self.secrets:
            if revocation == "revoke_previous_secrets_immediately":
                old.expire_time = now
            elif old.expire_time is None:
                old.expire_time = now + GRACE_S
        secret = new_secret()
        self.secrets = [s for s in self.secrets if s.expire_time is None or s.expire_time > now]
        self.secrets.insert(0, SigningSecret(secret))
        self.update_time = now
        return secret


def signature_header(secrets_: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<sig>`` per live secret, space-separated (several during a rotation)."""
    return " ".join(Signer(s).sign(webhook_id, timestamp, body) for s in secrets_)


def standard_headers(
    secrets_: list[str], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    out = {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp)}
    if secrets_:
        out["webhook-signature"] = signature_header(secrets_, webhook_id, timestamp, body)
    return out
