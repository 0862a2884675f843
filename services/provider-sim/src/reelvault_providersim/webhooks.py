"""Webhook deliveries of ``video.completed`` / ``video.failed``, signed per Standard Webhooks.

Each event keeps one ``webhook-id`` across retries (receivers dedupe on it); every attempt is
signed afresh with its own ``webhook-timestamp``. Non-2xx replies and transport errors are
retried (tenacity) with exponential backoff up to ``max_attempts``.

The other protocols send their own events through the same dispatcher (``send``): they build
the body and a function giving each attempt's headers, and share the retries, the connection
pool and the admin listing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import httpx2
from standardwebhooks import Webhook
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

EventType = Literal["video.completed", "video.failed"]
SECRET_PREFIX = "whsec_"
# POSTs in flight at once: httpcore's stock pool does O(n^2) work per request with n of them
# queued, so a burst of completions is sent a few dozen at a time (backoffs do not count).
MAX_CONCURRENT_POSTS = 32


class Signer:
    """``webhook-signature`` values for one secret, computed by the ``standardwebhooks`` package.

    A ``whsec_<base64>`` secret is Standard Webhooks' format; any other string is used as its
    UTF-8 bytes, as OpenAI's SDK does when it verifies.
    """

    def __init__(self, secret: str) -> None:
        key: str | bytes = secret if secret.startswith(SECRET_PREFIX) else secret.encode()
        self._webhook = Webhook(key)

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``."""
        sent_at = datetime.fromtimestamp(timestamp, tz=UTC)
        return self._webhook.sign(webhook_id, sent_at, body.decode())


class _Refused(Exception):
    """The receiver answered, but not with a 2xx: worth another attempt."""

    def __init__(self, status_code: int) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code


# The sending time (unix seconds) -> the protocol's headers for that attempt (signature...).
HeaderBuilder = Callable[[int], dict[str, str]]


class _SecretCleared(Exception):
    """The secret was cleared while the event waited: nothing to sign with, so it ends."""


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
    protocol: str = "openai"
    # None: OpenAI's Standard Webhooks headers with the dispatcher's secret.
    headers: HeaderBuilder | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
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
        self._secret: str | None = None
        self._signer: Signer | None = None
        self.secret = secret
        self._clock = clock
        self._ids = random.Random(f"{seed}:webhooks")
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        # httpx2: its pool's cost stays flat with the dozens of keep-alive connections a
        # burst of deliveries opens (httpx's grows with their square).
        self._http = httpx2.AsyncClient(timeout=timeout_s, follow_redirects=False)
        self._posting = asyncio.Semaphore(MAX_CONCURRENT_POSTS)
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: list[Delivery] = []

    @property
    def secret(self) -> str | None:
        return self._secret

    @secret.setter
    def secret(self, secret: str | None) -> None:
        # Decoded once here, not per delivery; an empty secret means "not configured".
        self._secret = secret
        self._signer = Signer(secret) if secret else None

    @property
    def enabled(self) -> bool:
        return bool(self.urls) and self._signer is not None

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
            self.send(Delivery(webhook_id, event_type, video_id, url, body))

    def send(self, delivery: Delivery) -> None:
        """Queue one delivery (returns at once); retried like every other."""
        self.deliveries.append(delivery)
        task = asyncio.create_task(self._deliver(delivery))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def skip(self, delivery: Delivery, reason: str) -> None:
        """Record a delivery that is never attempted (e.g. a host the simulator won't call)."""
        delivery.attempts.append(reason)
        delivery.gave_up = True
        self.deliveries.append(delivery)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            async for attempt in self._retrying():
                with attempt:
                    await self._post(delivery)
        except (httpx2.HTTPError, _Refused, _SecretCleared):
            delivery.gave_up = True
            log.warning("webhook %s to %s: gave up", delivery.webhook_id, delivery.url)
            return
        delivery.delivered = True

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._max_attempts),
            # backoff_s, then twice as long each time, up to backoff_max_s (no jitter).
            wait=wait_exponential(multiplier=self._backoff_s, max=self._backoff_max_s),
            # Only these: a cancellation (shutting down) or a cleared secret ends it at once.
            retry=retry_if_exception_type((httpx2.HTTPError, _Refused)),
            reraise=True,
        )

    async def _post(self, delivery: Delivery) -> None:
        """One attempt, recorded in ``delivery.attempts``; raises unless the reply is 2xx."""
        signer = self._signer
        if delivery.headers is None and signer is None:  # secret cleared while it waited
            raise _SecretCleared
        try:
            async with self._posting:
                # Signed once a slot is free, so the timestamp is the sending time.
                timestamp = int(self._clock())
                headers = {
                    "content-type": "application/json",
                    "user-agent": "reelvault-provider-sim/webhooks",
                }
                if delivery.headers is not None:
                    headers.update(delivery.headers(timestamp))
                else:
                    assert signer is not None
                    headers["webhook-id"] = delivery.webhook_id
                    headers["webhook-timestamp"] = str(timestamp)
                    headers["webhook-signature"] = signer.sign(
                        delivery.webhook_id, timestamp, delivery.body
                    )
                reply = await self._http.post(delivery.url, content=delivery.body, headers=headers)
        except httpx2.HTTPError as exc:
            delivery.attempts.append(type(exc).__name__)
            raise
        delivery.attempts.append(reply.status_code)
        if not 200 <= reply.status_code < 300:
            raise _Refused(reply.status_code)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._http.aclose()
