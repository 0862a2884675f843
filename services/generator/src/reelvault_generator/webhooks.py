"""Provider webhooks: a verified ``video.completed``/``video.failed`` finishes the video at once
through the same path a poll takes (``JobTracker.settle_job``); polling stays the safety net.

Answers: 400/401 for malformed or unverifiable deliveries (never acted on), 200 for processed,
duplicate (same ``webhook-id`` seen before), unknown job or non-terminal job, 503 when the work
could not be done now (the sender retries with backoff).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from reelvault_common.messaging import RetryLater
from reelvault_common.openai_videos import ProviderError

from reelvault_generator.ledger_store import LedgerStore
from reelvault_generator.provider import VideoProvider
from reelvault_generator.tracking import FollowedJob, JobTracker
from reelvault_generator.webhook_signing import WebhookRejected, parse_event, verify

log = logging.getLogger(__name__)

VIDEO_EVENTS = frozenset({"video.completed", "video.failed"})
_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")


class SeenWebhooks(Protocol):
    async def seen(self, webhook_id: str) -> bool: ...
    async def remember(self, webhook_id: str) -> None: ...


class KvSeenWebhooks:
    """``webhook-id``s already processed, in a KV bucket whose TTL covers the sender's retries."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @staticmethod
    def _key(webhook_id: str) -> str:
        key = f"wh.{webhook_id}"
        if _KV_KEY.fullmatch(key) and ".." not in key and not key.endswith("."):
            return key
        return f"wh.h{hashlib.sha256(webhook_id.encode()).hexdigest()}"

    async def seen(self, webhook_id: str) -> bool:
        try:
            await self._kv.get(self._key(webhook_id))
        except KeyNotFoundError:
            return False
        return True

    async def remember(self, webhook_id: str) -> None:
        # A concurrent delivery of the same event may have got there first.
        with contextlib.suppress(KeyWrongLastSequenceError):
            await self._kv.create(self._key(webhook_id), b"1")


class WebhookReceiver:
    def __init__(
        self,
        *,
        secret: str,
        seen: SeenWebhooks,
        ledger: LedgerStore,
        provider: VideoProvider,
        tracker: JobTracker,
        tolerance_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._seen = seen
        self._ledger = ledger
        self._provider = provider
        self._tracker = tracker
        self._tolerance_s = tolerance_s
        self._clock = clock

    async def handle(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            webhook_id = verify(self._secret, headers, body, now=self._clock(),
                                tolerance_s=self._tolerance_s)
            event = parse_event(webhook_id, body)
        except WebhookRejected as rejected:
            log.warning("webhook rejected (%s): %s", rejected.status, rejected.reason)
            return rejected.status, {"error": rejected.reason}
        try:
            if await self._seen.seen(webhook_id):
                return 200, {"status": "duplicate"}
            if self._tracker.finished(event.job_id):
                # This process already published the job's end (its poll got there first).
                return 200, {"status": "already_finished"}
            status = await self._process(event.type, event.job_id)
            await self._seen.remember(webhook_id)
        except (ProviderError, nats.errors.Error, TimeoutError) as exc:
            # Not processed: let the sender retry (and polling carries on regardless).
            log.warning("webhook %s for %s not processed now: %r", webhook_id, event.job_id, exc)
            return 503, {"error": "temporarily unable to process"}
        return 200, {"status": status}

    async def _process(self, event_type: str, job_id: str) -> str:
        if event_type not in VIDEO_EVENTS:
            return "ignored"
        video_id = await self._ledger.job_owner(self._provider.name, job_id)
        current = await self._ledger.read(video_id) if video_id is not None else None
        if video_id is None or current is None:
            return "unknown_job"
        entry = current[0]
        if (entry.job_created_at is None or entry.correlation_id is None
                or entry.org is None or entry.requested_at is None):
            return "unknown_job"
        followed = FollowedJob(
            video_id=video_id,
            correlation_id=entry.correlation_id,
            provider_job_id=job_id,
            org=entry.org,
            requested_at=entry.requested_at,
            job_created_at=entry.job_created_at,
        )
        # The event carries only the id: the job itself says what happened.
        job, _ = await self._provider.retrieve(job_id)
        try:
            await self._tracker.settle_job(followed, job)
        except RetryLater:
            return "not_terminal"
        log.info("webhook finished %s (job %s, %s)", video_id, job_id, job.status)
        return "processed"
