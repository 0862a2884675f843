"""Provider webhooks: a verified ``video.completed``/``video.failed`` finishes the video at once
through the same path a poll takes (``JobTracker.settle_job``); polling stays the safety net.

Deliveries are checked per Standard Webhooks with the ``standardwebhooks`` package (see
``DeliveryVerifier``).

Answers: 400/401 for malformed or unverifiable deliveries (never acted on), 200 for processed,
duplicate (same ``webhook-id`` seen before), unknown job or non-terminal job, 503 when the work
could not be done now (the sender retries with backoff) -- including a job this process is
still recording (a fast provider's webhook can overtake the create's own bookkeeping).

Cost per delivery: the ``webhook-id`` is claimed with one atomic KV create (a duplicate is
refused by it; a delivery that then fails un-claims it so the sender's retry is processed),
the job's video comes from memory (this process created it) or from the job binding (one KV
read), the video's ledger entry is read when cancels are followed (a canceled video is not
finished by its webhook), then the provider's job is retrieved and the outcome published.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import nats.errors
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.providers.webhook_signatures import (
    StandardWebhookVerifier,
    WebhookSignatureError,
)
from reelvault_common.runtime import telemetry

from reelvault_generator.ledger import JobBinding
from reelvault_generator.ledger_store import LedgerStore
from reelvault_generator.provider import VideoProvider
from reelvault_generator.tracking import FollowedJob, JobTracker
from reelvault_generator.webhook_events import WebhookRejected
from reelvault_generator.webhook_protocols import (
    OpenAIWebhooks,
    ProviderDelivery,
    WebhookProtocol,
)

log = logging.getLogger(__name__)

NOT_RECORDED_YET = "not_recorded_yet"
_KV_KEY = re.compile(r"^[-/_=.a-zA-Z0-9]+$")
DEFAULT_TOLERANCE_S = 300.0

# A webhook naming the video its job was created for (our callback URL) whose job the ledger
# does not know yet: the job of a create whose answer was lost. Adopting it records the job
# for the video (if the video's claim is still open) and says how to finish it.
Adopter = Callable[[uuid.UUID, str, str], Awaitable[FollowedJob | None]]


class DeliveryVerifier:
    """Standard Webhooks checks of a delivery (``StandardWebhookVerifier``, with OpenAI's
    reading of the secret: ``whsec_<base64>``, else its UTF-8 bytes), refusals as
    ``WebhookRejected``."""

    def __init__(self, secret: str, *, tolerance_s: float = DEFAULT_TOLERANCE_S) -> None:
        self._verifier = StandardWebhookVerifier.utf8_unless_prefixed(
            secret, tolerance_s=tolerance_s)

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float) -> str:
        """The delivery's ``webhook-id``, or ``WebhookRejected`` (400 malformed, 401
        unverified). Several space-separated signatures (key rotation): any match passes."""
        try:
            return self._verifier.verify(headers, body, now=now)
        except WebhookSignatureError as error:
            raise WebhookRejected(error.status, error.reason) from None


class SeenWebhooks(Protocol):
    async def claim(self, webhook_id: str) -> bool:
        """Mark ``webhook_id`` as taken; False if it already was (a duplicate)."""
        ...

    async def release(self, webhook_id: str) -> None:
        """Un-mark it: the delivery was not processed, the sender's retry must be."""
        ...


class KvSeenWebhooks:
    """``webhook-id``s taken, in a KV bucket whose TTL covers the sender's retries."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    @staticmethod
    def _key(webhook_id: str) -> str:
        key = f"wh.{webhook_id}"
        if _KV_KEY.fullmatch(key) and ".." not in key and not key.endswith("."):
            return key
        return f"wh.h{hashlib.sha256(webhook_id.encode()).hexdigest()}"

    async def claim(self, webhook_id: str) -> bool:
        # Atomic: of two concurrent deliveries of one event, one gets it.
        try:
            await self._kv.create(self._key(webhook_id), b"1")
        except KeyWrongLastSequenceError:
            return False
        return True

    async def release(self, webhook_id: str) -> None:
        await self._kv.delete(self._key(webhook_id))


def _followed_job(binding: JobBinding, job_id: str, provider: str) -> FollowedJob | None:
    """None while the ledger does not say ``created`` yet (no job creation time)."""
    if (binding.correlation_id is None or binding.org is None or binding.requested_at is None
            or binding.job_created_at is None):
        return None
    return FollowedJob(
        video_id=binding.video_id,
        correlation_id=binding.correlation_id,
        provider_job_id=job_id,
        org=binding.org,
        requested_at=binding.requested_at,
        job_created_at=binding.job_created_at,
        provider=provider,
        trace_context=binding.trace or {},
    )


class WebhookReceiver:
    def __init__(
        self,
        *,
        secret: str | None = None,
        seen: SeenWebhooks,
        ledger: LedgerStore,
        provider: VideoProvider,
        tracker: JobTracker,
        tolerance_s: float = DEFAULT_TOLERANCE_S,
        clock: Callable[[], float] = time.time,
        creating: Callable[[], bool] = lambda: False,
        protocol: WebhookProtocol | None = None,
        adopt: Adopter | None = None,
    ) -> None:
        if protocol is None:
            assert secret is not None, "a secret or a protocol"
            protocol = OpenAIWebhooks(secret, tolerance_s=tolerance_s)
        self._protocol = protocol
        self._adopt = adopt
        self._seen = seen
        self._ledger = ledger
        self._provider = provider
        self._tracker = tracker
        self._clock = clock
        self._creating = creating

    async def handle(self, headers: Mapping[str, str], body: bytes,
                     query: Mapping[str, str] | None = None) -> tuple[int, dict[str, Any]]:
        try:
            event = self._protocol.read(headers, query or {}, body, now=self._clock())
        except WebhookRejected as rejected:
            log.warning("webhook rejected (%s): %s", rejected.status, rejected.reason)
            return rejected.status, {"error": rejected.reason}
        webhook_id = f"{self._provider.name}.{event.delivery_id}"
        try:
            if not await self._seen.claim(webhook_id):
                return 200, {"status": "duplicate"}
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("webhook %s for %s not processed now: %r", webhook_id, event.job_id, exc)
            return 503, {"error": "temporarily unable to process"}
        try:
            if self._tracker.finished(event.job_id):
                # This process already published the job's end (its poll got there first).
                return 200, {"status": "already_finished"}
            status = await self._process(event)
        except (ProviderError, nats.errors.Error, TimeoutError) as exc:
            # Not processed: let the sender retry (and polling carries on regardless).
            log.warning("webhook %s for %s not processed now: %r", webhook_id, event.job_id, exc)
            await self._release(webhook_id)
            return 503, {"error": "temporarily unable to process"}
        except BaseException:
            await self._release(webhook_id)
            raise
        if status == NOT_RECORDED_YET:
            await self._release(webhook_id)
            return 503, {"error": "job not recorded yet"}
        return 200, {"status": status}

    async def _release(self, webhook_id: str) -> None:
        try:
            await self._seen.release(webhook_id)
        except Exception as exc:  # the sender's retry is then a "duplicate": polling ends it
            log.warning("webhook %s stays marked as seen: %r", webhook_id, exc)

    async def _followed(self, job_id: str) -> FollowedJob | None:
        """The video of ``job_id`` and what finishing it needs, if the job is ours."""
        known = self._tracker.followed(job_id)
        if known is not None:
            return known
        binding = await self._ledger.job_binding(self._provider.name, job_id)
        if binding is None:
            return None
        if not binding.complete:
            # A binding from before it carried the details: the ledger entry has them.
            current = await self._ledger.read(binding.video_id)
            if current is None:
                return None
            entry = current[0]
            binding = binding.model_copy(update={
                "correlation_id": entry.correlation_id, "org": entry.org,
                "requested_at": entry.requested_at, "job_created_at": entry.job_created_at})
        return _followed_job(binding, job_id, self._provider.name)

    async def _process(self, event: ProviderDelivery) -> str:
        if not event.terminal:
            return "ignored"
        job_id, event_type = event.job_id, event.event_type
        followed = await self._followed(job_id)
        if followed is None and event.video_id is not None and self._adopt is not None:
            followed = await self._adopt(event.video_id, self._provider.name, job_id)
            if followed is not None:
                log.warning("webhook adopted %s job %s for %s (its create answer was lost)",
                            self._provider.name, job_id, event.video_id)
        if followed is None:
            # Ours but still being recorded (look again in a moment), or not ours at all.
            return NOT_RECORDED_YET if self._creating() else "unknown_job"
        if await self._tracker.stop_if_canceled(followed):
            return "canceled"  # the cancel already failed the video: not completed after all
        video_id = followed.video_id
        telemetry.tag(video_id=video_id, org=followed.org)
        # Part of the video's trace (the request that created the job), not a trace of its own.
        with telemetry.continued(followed.trace_context, f"webhook {event_type}",
                                 {telemetry.VIDEO_ID: str(video_id), telemetry.ORG: followed.org}):
            # The event carries only the id: the job itself says what happened.
            job, _ = await self._provider.retrieve(job_id)
            try:
                await self._tracker.settle_job(followed, job)
            except RetryLater:
                return "not_terminal"
            log.info("webhook finished %s (job %s, %s)", video_id, job_id, job.status)
        return "processed"
