"""Following a provider job to its end: one look per delivery of VideoGenerationStarted.

A running job makes the handler raise ``RetryLater(next poll)``: the message goes back to
JetStream with that delay, so no process holds state between looks and a restart loses nothing.

With provider webhooks the first look waits (``first_look_after_s`` from the job's creation):
the webhook normally ends the job long before, and the look then finds it finished here (no
provider call) or, on another replica, finds it completed; a lost webhook costs that delay.
The first delivery already reserves that look's budget slot (``not_before``), so the message
comes back once, at its slot.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from reelvault_common.contracts.events import VideoGenerationStarted
from reelvault_common.messaging.outcomes import RetryLater, nak_delay
from reelvault_common.providers.openai_videos import ProviderError

from reelvault_generator.events import (
    EventSink,
    completed_event,
    generation_failed,
    progressed_event,
)
from reelvault_generator.polling import (
    MIN_POLL_DELAY_S,
    PollSchedule,
    bounded_by_deadline,
    deadline_message,
    next_poll_delay,
    seconds_left,
)
from reelvault_generator.provider import ProviderJob, VideoProvider
from reelvault_generator.registry import ProviderRegistry

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

DEADLINE_EXCEEDED = "deadline_exceeded"
JOB_NOT_FOUND = "provider_job_not_found"


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _LastProgress:
    """Progress last published per job, so an unchanged value is not re-sent on every look.
    Only an optimisation: after a restart it is empty and the event ids dedupe."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._capacity = capacity

    def changed(self, job_id: str, progress: int) -> bool:
        return self._seen.get(job_id) != progress

    def remember(self, job_id: str, progress: int) -> None:
        self._seen[job_id] = progress
        self._seen.move_to_end(job_id)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def forget(self, job_id: str) -> None:
        self._seen.pop(job_id, None)


class _RecentlyFinished:
    """Jobs whose end this process has published. A second look at one (the poll after a
    webhook, the webhook after a poll) has nothing to add: the outcome is in the stream, and
    its event id would be deduplicated anyway. Only an optimisation: after a restart it is
    empty and the second look does the work again."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._jobs: OrderedDict[str, None] = OrderedDict()
        self._capacity = capacity

    def add(self, job_id: str) -> None:
        self._jobs[job_id] = None
        self._jobs.move_to_end(job_id)
        while len(self._jobs) > self._capacity:
            self._jobs.popitem(last=False)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs


class _RecentlyRecorded:
    """Jobs this process created and recorded lately, by job id: a webhook about one of them
    needs no KV read to know its video. Only an optimisation (the job binding has the same)."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._jobs: OrderedDict[str, FollowedJob] = OrderedDict()
        self._capacity = capacity

    def add(self, job: FollowedJob) -> None:
        self._jobs[job.provider_job_id] = job
        self._jobs.move_to_end(job.provider_job_id)
        while len(self._jobs) > self._capacity:
            self._jobs.popitem(last=False)

    def get(self, job_id: str) -> FollowedJob | None:
        return self._jobs.get(job_id)

    def forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)


@dataclass(frozen=True)
class FollowedJob:
    """What finishing a video needs: from the Started event, or from the ledger (webhooks)."""

    video_id: uuid.UUID
    correlation_id: str
    provider_job_id: str
    org: str
    requested_at: datetime
    job_created_at: datetime
    # The provider that runs the job (empty: the only one configured).
    provider: str = ""
    # The trace of the request that created the job (message headers; empty when not
    # tracing): a webhook's work continues it.
    trace_context: Mapping[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_started(cls, started: VideoGenerationStarted) -> FollowedJob:
        return cls(
            video_id=started.video_id,
            correlation_id=started.correlation_id,
            provider_job_id=started.provider_job_id,
            org=started.org,
            requested_at=started.requested_at,
            job_created_at=started.job_created_at,
            provider=started.provider,
        )


class JobTracker:
    def __init__(
        self,
        *,
        provider: VideoProvider | ProviderRegistry,
        events: EventSink,
        schedule: PollSchedule,
        deadline_s: float,
        retry_base_s: float = 1.0,
        retry_max_s: float | None = None,
        first_look_after_s: float = 0.0,
        clock: Clock = _utcnow,
        rng: random.Random | None = None,
        canceled: Callable[[uuid.UUID], Awaitable[bool]] | None = None,
    ) -> None:
        self._providers = (provider if isinstance(provider, ProviderRegistry)
                           else ProviderRegistry.single(provider))
        # Asked before each look: a canceled video's job is no longer followed.
        self._canceled = canceled
        self._events = events
        self._schedule = schedule
        self._deadline_s = deadline_s
        self._retry_base_s = retry_base_s
        # A failed look waits at most this long (default: the longest gap between looks).
        self._retry_max_s = schedule.max_interval_s if retry_max_s is None else retry_max_s
        self._first_look_after_s = first_look_after_s
        self._clock = clock
        self._rng = rng
        self._progress = _LastProgress()
        self._finished = _RecentlyFinished()
        self._recorded = _RecentlyRecorded()

    def finished(self, job_id: str) -> bool:
        """Has this process already published the end of ``job_id``?"""
        return job_id in self._finished

    def follow(self, job: FollowedJob) -> None:
        """A job this process just created and recorded (the starter calls this)."""
        self._recorded.add(job)

    def followed(self, job_id: str) -> FollowedJob | None:
        """The job, if this process recorded it lately (else ask the ledger)."""
        return self._recorded.get(job_id)

    async def stop_if_canceled(self, job: FollowedJob) -> bool:
        """Was the job's video canceled? Then its job is no longer followed (by a poll or a
        webhook) and nothing is published for it here: the cancel itself failed the video."""
        if self._canceled is None or not await self._canceled(job.video_id):
            return False
        log.info("job %s of %s: the video was canceled, no longer followed",
                 job.provider_job_id, job.video_id)
        self._finished.add(job.provider_job_id)
        self._recorded.forget(job.provider_job_id)
        return True

    async def poll(self, started: VideoGenerationStarted | FollowedJob, attempt: int = 1) -> None:
        """One look at the job: returns once a terminal outcome is published, else raises
        ``RetryLater`` with the delay until the next look."""
        if isinstance(started, VideoGenerationStarted):
            started = FollowedJob.from_started(started)
        job_id = started.provider_job_id
        if job_id in self._finished:
            return  # a webhook ended it a moment ago: no need to ask the provider
        if await self.stop_if_canceled(started):
            return
        provider = self._provider_of(started)
        not_before: float | None = None
        wait = 0.0
        if attempt == 1 and self._first_look_after_s > 0:
            # Webhooks are on: the first look is the safety net, not the news.
            first_look = started.job_created_at + timedelta(seconds=self._first_look_after_s)
            wait = (first_look - self._clock()).total_seconds()
            if wait > MIN_POLL_DELAY_S:
                left = seconds_left(started.job_created_at, self._deadline_s, self._clock())
                if wait >= left:
                    raise RetryLater(bounded_by_deadline(wait, left),
                                     f"job {job_id}: waiting for the provider's webhook")
                # The look's budget slot is reserved now, no earlier than the first look:
                # this message comes back once, at that slot, instead of once to wait and
                # once more to queue.
                not_before = first_look.timestamp()
        try:
            job, poll_after = await provider.retrieve(job_id, not_before=not_before)
        except ProviderError as error:
            if error.status == 404:
                await self._fail(started, JOB_NOT_FOUND,
                                 f"the provider does not know job {job_id}: {error.message}")
                return
            left = seconds_left(started.job_created_at, self._deadline_s, self._clock())
            if left <= 0:
                await self._fail(started, DEADLINE_EXCEEDED,
                                 deadline_message(job_id, self._deadline_s, None, None))
                return
            # 429 says how long to wait; other errors back off. Never give up before the deadline.
            delay = error.retry_after_s or nak_delay(
                attempt, base=self._retry_base_s, cap=self._retry_max_s
            )
            if not_before is not None and error.status == 429:
                delay = max(delay, wait)  # never before the first look
            raise RetryLater(
                bounded_by_deadline(delay, left), f"retrieve {job_id}: {error}"
            ) from None
        await self.settle_job(started, job, poll_after=poll_after, attempt=attempt)

    async def settle_job(
        self,
        started: FollowedJob,
        job: ProviderJob,
        *,
        poll_after: float | None = None,
        attempt: int = 1,
    ) -> None:
        """Publish what ``job`` (just retrieved) means for the video."""
        if job.phase == "completed":
            provider = self._provider_of(started)
            await self._events.publish(
                completed_event(
                    video_id=started.video_id,
                    correlation_id=started.correlation_id,
                    provider=provider.name,
                    job=job,
                    source_url=job.content_ref or provider.content_url(job.id),
                    org=started.org,
                    requested_at=started.requested_at,
                )
            )
            self._progress.forget(job.id)
            self._finished.add(job.id)
            self._recorded.forget(job.id)
            log.info("job %s of %s completed", job.id, started.video_id)
            return
        if job.phase == "failed":
            await self._fail(
                started, job.error_code or job.status, job.error_message or job.status
            )
            return
        left = seconds_left(started.job_created_at, self._deadline_s, self._clock())
        if left <= 0:
            await self._fail(
                started,
                DEADLINE_EXCEEDED,
                deadline_message(job.id, self._deadline_s, job.status, job.progress),
            )
            return
        if self._progress.changed(job.id, job.progress):
            await self._events.publish(
                progressed_event(
                    video_id=started.video_id, org=started.org,
                    correlation_id=started.correlation_id, job=job,
                )
            )
            self._progress.remember(job.id, job.progress)
        delay = next_poll_delay(attempt, self._schedule, poll_after_s=poll_after, rng=self._rng)
        raise RetryLater(
            bounded_by_deadline(delay, left), f"job {job.id} {job.status} {job.progress}%"
        )

    def _provider_of(self, started: FollowedJob) -> VideoProvider:
        provider = self._providers.named(started.provider)
        if provider is None:
            raise ProviderError(f"provider {started.provider!r} is not configured here",
                                status=None)
        return provider

    async def _fail(self, started: FollowedJob, code: str, message: str) -> None:
        log.info("job %s of %s failed: %s %s", started.provider_job_id, started.video_id,
                 code, message)
        self._progress.forget(started.provider_job_id)
        await self._events.publish(
            generation_failed(
                video_id=started.video_id,
                org=started.org,
                correlation_id=started.correlation_id,
                code=code,
                message=message,
                provider_job_id=started.provider_job_id,
            )
        )
        # Only once the failure is in the stream: marked before, a publish that failed would
        # make the redelivered message return early (and be acked) with nothing published.
        self._finished.add(started.provider_job_id)
        self._recorded.forget(started.provider_job_id)
