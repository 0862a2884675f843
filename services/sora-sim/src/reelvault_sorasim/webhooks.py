"""Webhook deliveries of ``video.completed`` / ``video.failed``, signed per Standard Webhooks.

Each event keeps one ``webhook-id`` across retries (receivers dedupe on it); every attempt is
signed afresh with its own ``webhook-timestamp``. Non-2xx replies and transport errors are
retried with exponential backoff up to ``max_attempts``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from reelvault_common.http import default_transport

log = logging.getLogger(__name__)

EventType = Literal["video.completed", "video.failed"]


def secret_key(secret: str) -> bytes:
    """``whsec_<base64>`` secrets are base64 after the prefix; anything else is used as UTF-8."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256 of id.timestamp.body>``."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class Delivery:
    """What happened to one event at one URL (for the admin listing)."""

    webhook_id: str
    event_type: str
    video_id: str
    url: str
    body: bytes
    attempts: list[int | str] = field(default_factory=list)  # status codes or error names
    delivered: bool = False
    gave_up: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "webhook_id": self.webhook_id,
            "type": self.event_type,
            "video_id": self.video_id,
            "url": self.url,
            "attempts": self.attempts,
            "delivered": self.delivered,
            "gave_up": self.gave_up,
        }


class WebhookDispatcher:
    def __init__(
        self,
        *,
        urls: list[str],
        secret: str | None,
        seed: int,
        clock: Callable[[], float],
        max_attempts: int = 8,
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        timeout_s: float = 5.0,
    ) -> None:
        self.urls = list(urls)
        self.secret = secret
        self._clock = clock
        self._ids = random.Random(f"{seed}:webhooks")
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        # Many deliveries at once under load: httpcore's stock pool would cost O(n^2) each.
        self._http = httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False,
            transport=default_transport())
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[Delivery] = []

    @property
    def enabled(self) -> bool:
        return bool(self.urls) and bool(self.secret)

    def emit(self, event_type: EventType, video_id: str) -> None:
        """Queue deliveries of one event to every URL (returns at once)."""
        if not self.enabled:
            return
        event_id = f"evt_{self._ids.getrandbits(128):032x}"
        webhook_id = f"wh_{self._ids.getrandbits(128):032x}"
        payload = {
            "id": event_id,
            "object": "event",
            "created_at": int(self._clock()),
            "type": event_type,
            "data": {"id": video_id},
        }
        body = json.dumps(payload, separators=(", ", ": ")).encode()
        for url in self.urls:
            delivery = Delivery(webhook_id, event_type, video_id, url, body)
            self.deliveries.append(delivery)
            task = asyncio.create_task(self._deliver(delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        assert self.secret is not None
        for attempt in range(self._max_attempts):
            if attempt:
                delay = min(self._backoff_max_s, self._backoff_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay)
            timestamp = int(self._clock())
            headers = {
                "content-type": "application/json",
                "webhook-id": delivery.webhook_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(
                    self.secret, delivery.webhook_id, timestamp, delivery.body
                ),
                "user-agent": "reelvault-sora-sim/webhooks",
            }
            try:
                reply = await self._http.post(delivery.url, content=delivery.body, headers=headers)
            except httpx.HTTPError as exc:
                delivery.attempts.append(type(exc).__name__)
                continue
            delivery.attempts.append(reply.status_code)
            if 200 <= reply.status_code < 300:
                delivery.delivered = True
                return
        delivery.gave_up = True
        log.warning("webhook %s to %s: gave up", delivery.webhook_id, delivery.url)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()
