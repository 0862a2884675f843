"""Which stream events become which webhook events, and the bodies sent (pure).

| webhook event | from the stream event | sent when |
|---|---|---|
| ``video.completed`` | ``video.stored`` | the video (and thumbnail) are in permanent storage |
| ``video.failed`` | ``video.failed`` | the video failed (``stage``, ``code``, ``message``) |
| ``video.deleted`` | ``video.deleted`` | the video was deleted (by a key or by retention) |
| ``quota.warning`` | ``org.quota.warning`` | 80 % of one of the organization's limits |

Every body is ``{"type", "timestamp", "data"}`` (Standard Webhooks' shape); ``timestamp`` is
when the fact happened. Events are matched by their type name, so a stream event this module
does not map is no webhook.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from reelvault_common.contracts.catalog import WebhookEventType
from reelvault_common.contracts.events import OrgEvent, VideoEvent

# Stream event type -> webhook event type.
WEBHOOK_TYPE_OF: dict[str, WebhookEventType] = {
    "video.stored": "video.completed",
    "video.failed": "video.failed",
    "video.deleted": "video.deleted",
    "org.quota.warning": "quota.warning",
}

# Delivery ids derive from the event and the endpoint: a redelivered event records nothing new.
_DELIVERY_NAMESPACE = uuid.UUID("3d0f6b2e-9c1a-4f57-8e0b-7a2c4d9e1f35")


def delivery_id(event_id: uuid.UUID, endpoint_id: uuid.UUID) -> uuid.UUID:
    return uuid.uuid5(_DELIVERY_NAMESPACE, f"{event_id}:{endpoint_id}")


@dataclass(frozen=True)
class WebhookMessage:
    """One event as endpoints receive it."""

    event_id: uuid.UUID
    org: str
    type: WebhookEventType
    body: str


def _when(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _when(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def content_url(public_base_url: str, video_id: uuid.UUID, variant: str | None = None) -> str:
    """The permanent link to a video's stored file (the gateway redirects it; needs a key)."""
    url = f"{public_base_url}/v1/videos/{video_id}/content"
    return url if variant is None else f"{url}?variant={variant}"


def _file(stored: Any, url: str) -> dict[str, Any]:
    return {"content_type": stored.content_type, "bytes": stored.bytes,
            "sha256": stored.sha256, "url": url}


def _completed(event: Any, base: str) -> dict[str, Any]:
    thumbnail = event.thumbnail
    return {
        "id": event.video_id,
        "org": event.org,
        "status": "completed",
        "video": _file(event.video, content_url(base, event.video_id)),
        "thumbnail": (None if thumbnail is None
                      else _file(thumbnail, content_url(base, event.video_id, "thumbnail"))),
        "stored_at": event.occurred_at,
        "correlation_id": event.correlation_id,
    }


def _failed(event: Any, base: str) -> dict[str, Any]:
    return {
        "id": event.video_id,
        "org": event.org,
        "status": "failed",
        "stage": event.stage,
        "code": event.code,
        "message": event.message,
        "retryable": event.retryable,
        "failed_at": event.occurred_at,
        "correlation_id": event.correlation_id,
    }


def _deleted(event: Any, base: str) -> dict[str, Any]:
    return {
        "id": event.video_id,
        "org": event.org,
        "status": "deleted",
        "deleted_by": getattr(event, "deleted_by", None),
        "deleted_at": event.occurred_at,
        "correlation_id": event.correlation_id,
    }


def _quota_warning(event: Any, base: str) -> dict[str, Any]:
    return {
        "org": event.org,
        "quota": event.quota,
        "period": event.period,
        "used": event.used,
        "limit": event.limit,
        "resets_at": event.resets_at,
    }


_DATA = {
    "video.completed": _completed,
    "video.failed": _failed,
    "video.deleted": _deleted,
    "quota.warning": _quota_warning,
}


def webhook_message(event: VideoEvent | OrgEvent, public_base_url: str
                    ) -> WebhookMessage | None:
    """The webhook ``event`` becomes, or None when it becomes none."""
    kind = WEBHOOK_TYPE_OF.get(event.type)
    if kind is None:
        return None
    body = {"type": kind, "timestamp": event.occurred_at,
            "data": _DATA[kind](event, public_base_url)}
    return WebhookMessage(
        event_id=event.event_id,
        org=event.org,
        type=kind,
        body=json.dumps(body, default=_json, separators=(",", ":")),
    )
