"""VideoRequested -> exactly one provider job -> VideoGenerationStarted.

The ledger (see ``ledger.py``) decides; this module carries the decision out against the KV
bucket, the provider and the stream. Each step is safe to repeat: the ledger is checked before
anything is paid for, and events have deterministic ids.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from reelvault_common.contracts.events import VideoGenerationWaiting, VideoRequested
from reelvault_common.messaging.outcomes import RetryLater, nak_delay
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_common.runtime import telemetry

from reelvault_generator.budget import BudgetRefusal, is_budget_refusal
from reelvault_generator.events import (
    EventSink,
    generation_failed,
    started_event,
    started_from_entry,
)
from reelvault_generator.ledger import (
    ClaimAndCreate,
    ClaimTiming,
    JobBinding,
    LedgerEntry,
    Recover,
    RepublishFailure,
    RepublishStarted,
    WaitForOwner,
    decide,
    new_claim,
)
from reelvault_generator.ledger_store import LedgerStore
from reelvault_generator.provider import (
    PreparedImages,
    ProviderJob,
    VideoProvider,
    create_outcome_unknown,
)
from reelvault_generator.reference_loader import ReferenceProblem, ReferenceSource
from reelvault_generator.registry import ProviderRegistry
from reelvault_generator.tracking import FollowedJob

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Failure codes of the starter's own decisions.
MODEL_UNAVAILABLE = "model_unavailable"
CREATE_OUTCOME_UNKNOWN = "create_outcome_unknown"
# A waiting video's estimated start is announced again only when it moves by more than this.
WAIT_ESTIMATE_STEP = timedelta(minutes=1)
# Estimates remembered per process (a video started by another replica is never forgotten
# here otherwise): the oldest go first; forgetting one only costs one more event.
MAX_ANNOUNCED_WAITS = 50_000


def _utcnow() -> datetime:
    return datetime.now(UTC)


def refusal_code(error: ProviderError) -> str:
    """The VideoFailed code for a request the provider refused for good (400 and the like)."""
    return error.code or (f"invalid_{error.param}" if error.param else None) or error.type or (
        f"http_{error.status}"
    )


def refusal_message(error: ProviderError) -> str:
    where = f" (param '{error.param}')" if error.param else ""
    return f"the provider refused the request: {error.message}{where}"


def _binding(request: VideoRequested, job_created_at: datetime) -> JobBinding:
    """The job binding's details: what finishing the video from a webhook needs."""
    return JobBinding(
        video_id=request.video_id,
        correlation_id=request.correlation_id,
        org=request.org,
        requested_at=request.occurred_at,
        job_created_at=job_created_at,
        trace=telemetry.trace_headers() or None,
    )


class JobStarter:
    # A lost compare-and-set re-reads the ledger; more than this many in one delivery means the
    # entry is being fought over: back off.
    MAX_ROUNDS = 3

    def __init__(
        self,
        *,
        ledger: LedgerStore,
        provider: VideoProvider | ProviderRegistry,
        references: ReferenceSource,
        events: EventSink,
        owner: str,
        timing: ClaimTiming,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        unauthorized_retry_s: float = 60.0,
        clock: Clock = _utcnow,
        on_recorded: Callable[[FollowedJob], None] | None = None,
        adoption_window_s: float = 900.0,
    ) -> None:
        self._ledger = ledger
        self._providers = (provider if isinstance(provider, ProviderRegistry)
                           else ProviderRegistry.single(provider))
        # How long a lost create's job may still be adopted by its webhook (providers that
        # cannot list jobs): a generation's usual length plus the webhook's delivery.
        self._adoption_window_s = adoption_window_s
        self._references = references
        self._events = events
        self._owner = owner
        self._timing = timing
        self._retry_base_s = retry_base_s
        self._retry_max_s = retry_max_s
        self._unauthorized_retry_s = unauthorized_retry_s
        self._clock = clock
        self._on_recorded = on_recorded
        self._creating = 0
        # The estimated start last announced per waiting video (``video.generation.waiting``).
        self._announced_waits: dict[uuid.UUID, datetime] = {}

    @property
    def creating(self) -> bool:
        """Is a create of this process between sending it and recording its job? (A webhook
        can overtake that: its job is then not known yet, but soon will be.)"""
        return self._creating > 0

    async def handle(self, request: VideoRequested, attempt: int = 1) -> None:
        """Returns when the outcome (Started or VideoFailed) is published; raises ``RetryLater``
        to be asked again."""
        # A first delivery almost never finds an entry: claim straight away (one KV round trip
        # less per video); the claim's atomic create still settles any race.
        if attempt == 1 and await self._claim_and_create(request, attempt):
            return
        for _ in range(self.MAX_ROUNDS):
            current = await self._ledger.read(request.video_id)
            decision = decide(current, self._clock(), self._timing)
            match decision:
                case RepublishStarted(entry):
                    await self._publish_started(request, entry)
                    return
                case RepublishFailure(entry):
                    await self._publish_failure(request, entry)
                    return
                case WaitForOwner(delay_s, owner):
                    raise RetryLater(delay_s, f"{owner} is creating the job for {request.video_id}")
                case ClaimAndCreate():
                    if await self._claim_and_create(request, attempt):
                        return
                case Recover():
                    if await self._recover(request, decision, attempt):
                        return
        raise RetryLater(
            nak_delay(attempt, base=self._retry_base_s, cap=self._retry_max_s),
            f"ledger entry of {request.video_id} kept changing",
        )

    # --- the decisions ------------------------------------------------------------------
    async def _images(self, request: VideoRequested) -> PreparedImages | ReferenceProblem:
        try:
            return await self._references.images_for(
                request, self._providers.spec(request.model))
        except ReferenceProblem as exc:
            return exc

    async def _claim_and_create(self, request: VideoRequested, attempt: int) -> bool:
        """False when another delivery claimed the video first (look again)."""
        provider = self._providers.for_model(request.model)
        # The images first: a storage hiccup must not leave a claim behind.
        images: PreparedImages | ReferenceProblem
        if provider is None:
            images = ReferenceProblem(
                MODEL_UNAVAILABLE, f"no provider of this deployment makes {request.model!r}")
        else:
            images = await self._images(request)
        # Claimed just before the create: the claim's age bounds the create's duration.
        claim = new_claim(
            owner=self._owner,
            now=self._clock(),
            correlation_id=request.correlation_id,
            org=request.org,
            requested_at=request.occurred_at,
            provider=provider.name if provider is not None else None,
            model=request.model,
            seconds=request.seconds,
            size=request.size,
        )
        if isinstance(images, ReferenceProblem):
            problem = images
            failed = claim.failed(code=problem.code, message=problem.message)
            if await self._ledger.claim(request.video_id, failed) is None:
                return False
            await self._publish_failure(request, failed)
            return True
        revision = await self._ledger.claim(request.video_id, claim)
        if revision is None:
            return False
        assert provider is not None
        return await self._create(provider, request, images, claim, revision, attempt)

    async def _recover(self, request: VideoRequested, decision: Recover, attempt: int) -> bool:
        entry = decision.entry
        provider = (self._providers.named(entry.provider) if entry.provider
                    else self._providers.for_model(request.model))
        if provider is None:
            return await self._fail_claim(request, decision, MODEL_UNAVAILABLE,
                                          f"the provider {entry.provider!r} of this claim is "
                                          "no longer configured")
        if not provider.lists_jobs:
            return await self._settle_unlisted(request, decision, provider)
        log.warning(
            "claim on %s by %s (attempt %d) is stale: looking for a job it may have created",
            request.video_id, entry.owner, entry.attempts,
        )
        candidates = await provider.find_recent(request, decision.since, decision.until)
        # Oldest first: the job the first attempt created is the likeliest to be ours.
        for job in sorted(candidates, key=lambda j: j.created_at):
            owner = await self._ledger.job_owner(provider.name, job.id)
            if owner is not None and owner != request.video_id:
                continue
            if not await self._ledger.bind_job(provider.name, job.id, request.video_id,
                                               binding=_binding(request, job.created_at)):
                continue
            adopted = entry.created(
                provider=provider.name,
                provider_job_id=job.id,
                job_created_at=job.created_at,
                adopted=True,
            )
            revision = await self._ledger.replace(
                request.video_id, adopted, last=decision.revision
            )
            if revision is None:
                return False  # someone else recovered it meanwhile; re-read
            log.info("adopted provider job %s for %s", job.id, request.video_id)
            self._recorded(request, job.id, job.created_at, provider.name)
            await self._publish_started(request, adopted)
            return True
        images = await self._images(request)
        claim = entry.reclaimed(owner=self._owner, now=self._clock())
        if isinstance(images, ReferenceProblem):
            failed = claim.failed(code=images.code, message=images.message)
            if await self._ledger.replace(request.video_id, failed, last=decision.revision) is None:
                return False
            await self._publish_failure(request, failed)
            return True
        revision = await self._ledger.replace(request.video_id, claim, last=decision.revision)
        if revision is None:
            return False
        log.warning("no job found for %s: creating it again (attempt %d)",
                    request.video_id, claim.attempts)
        return await self._create(provider, request, images, claim, revision, attempt)

    async def adopt(self, video_id: uuid.UUID, provider: str, job_id: str) -> FollowedJob | None:
        """A webhook names ``video_id`` for a job the ledger does not know: if the video's
        claim at that provider is still open (its create's answer was lost), the job becomes
        the video's and is announced. None when the video has no such open claim."""
        current = await self._ledger.read(video_id)
        if current is None:
            return None
        entry, revision = current
        if entry.state != "creating" or entry.provider != provider:
            return None
        if (entry.correlation_id is None or entry.org is None or entry.requested_at is None
                or None in (entry.model, entry.seconds, entry.size)):
            return None  # a claim written before claims recorded the request
        now = self._clock()
        binding = JobBinding(video_id=video_id, correlation_id=entry.correlation_id,
                             org=entry.org, requested_at=entry.requested_at, job_created_at=now)
        if not await self._ledger.bind_job(provider, job_id, video_id, binding=binding):
            return None
        adopted = entry.created(provider=provider, provider_job_id=job_id, job_created_at=now,
                                adopted=True)
        if await self._ledger.replace(video_id, adopted, last=revision) is None:
            return None  # its creator recorded it a moment ago, or a cancel: re-read later
        await self._events.publish(started_from_entry(video_id, adopted))
        return FollowedJob(video_id=video_id, correlation_id=entry.correlation_id,
                           provider_job_id=job_id, org=entry.org,
                           requested_at=entry.requested_at, job_created_at=now,
                           provider=provider)

    async def _settle_unlisted(
        self, request: VideoRequested, decision: Recover, provider: VideoProvider
    ) -> bool:
        """A stale claim at a provider that cannot list its jobs: the create may have made a
        job nobody can find, so it is never sent again. Its webhook (which names our video)
        may still adopt it within the adoption window; after that the video fails with
        ``create_outcome_unknown``."""
        age = (self._clock() - decision.entry.claimed_at).total_seconds()
        if provider.adopts_by_webhook and age < self._adoption_window_s:
            raise RetryLater(max(self._adoption_window_s - age, 1.0),
                             f"waiting for {provider.name}'s webhook to adopt the job of "
                             f"{request.video_id}")
        log.error("video %s: the outcome of its create at %s is unknown and cannot be looked "
                  "up: failing it rather than paying twice", request.video_id, provider.name)
        return await self._fail_claim(
            request, decision, CREATE_OUTCOME_UNKNOWN,
            f"the create request to {provider.name} got no answer and {provider.name} cannot "
            "list jobs: a job may exist (and be charged) but cannot be found; not created "
            "again to avoid paying twice")

    async def _fail_claim(
        self, request: VideoRequested, decision: Recover, code: str, message: str
    ) -> bool:
        failed = decision.entry.failed(code=code, message=message)
        if await self._ledger.replace(request.video_id, failed, last=decision.revision) is None:
            return False
        await self._publish_failure(request, failed)
        return True

    async def _create(
        self,
        provider: VideoProvider,
        request: VideoRequested,
        images: PreparedImages,
        claim: LedgerEntry,
        revision: int,
        attempt: int,
    ) -> bool:
        self._creating += 1
        try:
            try:
                job = await provider.create(request, images)
            except ProviderError as error:
                await self._create_failed(provider, request, claim, revision, attempt, error)
                return True
            return await self._record(provider, request, claim, revision, job)
        finally:
            self._creating -= 1

    async def _create_failed(
        self,
        provider: VideoProvider,
        request: VideoRequested,
        claim: LedgerEntry,
        revision: int,
        attempt: int,
        error: ProviderError,
    ) -> None:
        video_id = request.video_id
        # Where nobody can look the job up later, a 500 is not a definite "no" either (an
        # OpenRouter 500 may come after its upstream accepted the job).
        if create_outcome_unknown(error) or (not provider.lists_jobs and error.status == 500):
            # The job may exist: keep the claim; once stale, recovery looks for the job.
            log.warning("create for %s ended without an answer (%s): recovering later",
                        video_id, error)
            raise RetryLater(self._timing.stale_after_s, "create outcome unknown")
        if error.transient or error.status == 401:
            # A definite "no" for now (429, 5xx, bad key): no job exists, free the claim.
            await self._ledger.release(video_id, last=revision)
            if error.status == 401:
                log.error("provider rejected our API key (%s); retrying %s later", error, video_id)
                delay = self._unauthorized_retry_s
            elif is_budget_refusal(error) and error.retry_after_s is not None:
                # Our own budget's answer is the request's turn, not a failure: come back
                # exactly then (backing off would miss it).
                delay = error.retry_after_s
                await self._announce_wait(provider, request, error)
            else:
                # The provider's retry-after is a minimum; a request refused again and again
                # also backs off, so its deliveries (max_deliver) last hours, not minutes.
                delay = max(
                    error.retry_after_s or 0.0,
                    nak_delay(attempt, base=self._retry_base_s, cap=self._retry_max_s),
                )
            raise RetryLater(delay, f"create refused for now: {error}")
        if error.status == 404:
            # Create names no job: a 404 means the model itself is gone (retired).
            failed = claim.failed(code=MODEL_UNAVAILABLE,
                                  message=f"the provider no longer offers {request.model!r}: "
                                  f"{error.message}")
        else:
            failed = claim.failed(code=refusal_code(error), message=refusal_message(error))
        await self._ledger.replace(video_id, failed, last=revision)
        log.info("provider refused %s: %s", video_id, error)
        await self._publish_failure(request, failed)

    async def _announce_wait(
        self, provider: VideoProvider, request: VideoRequested, error: ProviderError
    ) -> None:
        """``video.generation.waiting`` when a create is first held back by the budget, and
        again when its estimated start moves by more than ``WAIT_ESTIMATE_STEP``."""
        video_id = request.video_id
        # To the second: a repeat of the same estimate is the same event (same id).
        estimate = (self._clock() + timedelta(seconds=error.retry_after_s or 0.0)).replace(
            microsecond=0)
        last = self._announced_waits.get(video_id)
        if last is not None and abs(estimate - last) <= WAIT_ESTIMATE_STEP:
            return
        event = VideoGenerationWaiting.new(
            video_id=video_id, org=request.org, correlation_id=request.correlation_id,
            provider=provider.name, estimated_start_at=estimate,
            position=error.position if isinstance(error, BudgetRefusal) else None)
        try:
            await self._events.publish(event)
        except Exception as exc:  # only a hint for clients: the wait itself goes on
            log.warning("could not announce the wait of %s: %r", video_id, exc)
            return
        self._announced_waits.pop(video_id, None)
        self._announced_waits[video_id] = estimate
        while len(self._announced_waits) > MAX_ANNOUNCED_WAITS:
            del self._announced_waits[next(iter(self._announced_waits))]

    async def _record(
        self, provider: VideoProvider, request: VideoRequested, claim: LedgerEntry,
        revision: int, job: ProviderJob,
    ) -> bool:
        video_id = request.video_id
        self._announced_waits.pop(video_id, None)
        now = self._clock()
        if not await self._ledger.bind_job(provider.name, job.id, video_id,
                                           binding=_binding(request, now)):
            # Another video's recovery adopted our job (we took longer than the claim's
            # lifetime). Keep our claim: it goes stale and recovery finds or creates another.
            log.error("job %s of %s was adopted by another video", job.id, video_id)
            raise RetryLater(self._timing.stale_after_s, "our job was adopted elsewhere")
        created = claim.created(provider=provider.name, provider_job_id=job.id, job_created_at=now)
        if await self._ledger.replace(video_id, created, last=revision) is None:
            current = await self._ledger.read(video_id)
            if current is not None and current[0].provider_job_id not in (None, job.id):
                # Our claim outlived its promise and a recovery created another job.
                log.error("video %s now has two provider jobs: %s (ours, unused) and %s",
                          video_id, job.id, current[0].provider_job_id)
            return False  # re-read and follow whatever the ledger says now
        log.info("created %s job %s for %s", provider.name, job.id, video_id)
        self._recorded(request, job.id, now, provider.name)
        await self._publish_started(request, created)
        return True

    def _recorded(self, request: VideoRequested, job_id: str, job_created_at: datetime,
                  provider: str) -> None:
        if self._on_recorded is not None:
            self._on_recorded(FollowedJob(
                provider=provider,
                video_id=request.video_id,
                correlation_id=request.correlation_id,
                provider_job_id=job_id,
                org=request.org,
                requested_at=request.occurred_at,
                job_created_at=job_created_at,
                trace_context=telemetry.trace_headers(),
            ))

    def _default_provider_name(self, request: VideoRequested) -> str:
        """Entries written before the ledger named the provider: the model's provider now."""
        provider = self._providers.for_model(request.model)
        return provider.name if provider is not None else "openai"

    # --- publishing ---------------------------------------------------------------------
    async def _publish_started(self, request: VideoRequested, entry: LedgerEntry) -> None:
        assert entry.provider_job_id is not None
        assert entry.job_created_at is not None
        await self._events.publish(
            started_event(
                request,
                provider=entry.provider or self._default_provider_name(request),
                provider_job_id=entry.provider_job_id,
                job_created_at=entry.job_created_at,
            )
        )

    async def _publish_failure(self, request: VideoRequested, entry: LedgerEntry) -> None:
        await self._events.publish(
            generation_failed(
                video_id=request.video_id,
                org=request.org,
                correlation_id=request.correlation_id,
                code=entry.failure_code or "generation_failed",
                message=entry.failure_message or "the video could not be generated",
            )
        )
