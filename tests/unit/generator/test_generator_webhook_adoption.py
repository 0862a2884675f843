"""An OpenRouter webhook about a job the ledger does not know: when our callback URL names the
video (with a genuine token) and the video's create answer was lost, the job is adopted and
the video finished; otherwise the delivery is acknowledged as not ours."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from generator_fakes import T0, TIMING, Clock, FakeProvider, FakeReferences, MemoryLedger, Sink, job
from generator_fakes import request as video_request
from reelvault_common.contracts.events import VideoRequested
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.providers.errors import ProviderError
from reelvault_generator.callbacks import CallbackTargets
from reelvault_generator.polling import PollSchedule
from reelvault_generator.starting import JobStarter
from reelvault_generator.tracking import JobTracker
from reelvault_generator.webhook_protocols import OpenRouterWebhooks
from reelvault_generator.webhooks import WebhookReceiver
from test_generator_webhook_receiver import MemorySeen

SECRET = "openrouter-workspace-secret"
PUBLIC = "https://hooks.example.com"
NOW = T0.timestamp()
TARGETS = CallbackTargets(PUBLIC, SECRET)
CONTENT = "https://openrouter.ai/api/v1/videos/or-job-1/content?index=0"


class World:
    """A generator with an OpenRouter provider whose create answer for ``request`` was lost."""

    def __init__(self, *retrieves: tuple[Any, float | None] | ProviderError) -> None:
        self.ledger, self.sink, self.clock = MemoryLedger(), Sink(), Clock()
        self.provider = FakeProvider(
            name="openrouter", lists_jobs=False, adopts_by_webhook=True,
            create_results=[ProviderError("ReadTimeout", status=None)],
            retrieve_results=list(retrieves))
        self.starter = JobStarter(ledger=self.ledger, provider=self.provider,
                                  references=FakeReferences(), events=self.sink, owner="gen-a",
                                  timing=TIMING, clock=self.clock)
        self.tracker = JobTracker(provider=self.provider, events=self.sink,
                                  schedule=PollSchedule(), deadline_s=3600, clock=self.clock,
                                  rng=random.Random(0))
        self.receiver = WebhookReceiver(
            seen=MemorySeen(), ledger=self.ledger, provider=self.provider,
            tracker=self.tracker, clock=lambda: NOW,
            protocol=OpenRouterWebhooks(SECRET, tolerance_s=300, callbacks=TARGETS),
            adopt=self.starter.adopt)
        self.request = video_request(model="google/veo-3.1", seconds="8", size="1280x720")

    async def lose_the_create(self) -> VideoRequested:
        with pytest.raises(RetryLater):
            await self.starter.handle(self.request)
        assert self.ledger.entries[self.request.video_id][0].state == "creating"
        return self.request


def callback_query(video_id: uuid.UUID) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(TARGETS.url("openrouter", video_id)).query))


def delivery(job_id: str = "or-job-1", status: str = "completed"
             ) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"type": f"video.generation.{status}",
                       "created_at": "2026-05-01T12:00:00Z",
                       "data": {"id": job_id, "status": status}}).encode()
    timestamp = str(int(NOW))
    digest = hmac.new(SECRET.encode(), f"{timestamp},".encode() + body,
                      hashlib.sha256).hexdigest()
    return {"x-openrouter-signature": f"t={timestamp},v1={digest}",
            "x-openrouter-idempotency-key": f"{job_id}-{status}"}, body


def completed(job_id: str = "or-job-1") -> tuple[Any, None]:
    return job(job_id, phase="completed", status="completed", progress=100,
               cost_usd=Decimal("3.20"), content_ref=CONTENT), None


async def test_the_job_of_a_lost_create_is_adopted_and_finished() -> None:
    world = World(completed())
    req = await world.lose_the_create()
    headers, body = delivery()

    answer = await world.receiver.handle(headers, body, callback_query(req.video_id))

    assert answer == (200, {"status": "processed"})
    started, finished = world.sink.events
    assert (started.type, started.provider, started.provider_job_id) == (
        "video.generation.started", "openrouter", "or-job-1")
    assert (finished.type, finished.video_id, finished.provider_job_id) == (
        "video.completed", req.video_id, "or-job-1")
    assert (finished.cost_usd, finished.source_url, finished.provider) == (
        Decimal("3.20"), CONTENT, "openrouter")
    assert (finished.org, finished.correlation_id) == (req.org, req.correlation_id)
    entry, _ = world.ledger.entries[req.video_id]
    assert (entry.state, entry.provider_job_id, entry.adopted) == ("created", "or-job-1", True)
    assert world.provider.retrieves == 1
    assert len(world.provider.creates) == 1

    # The sender's retry is a duplicate; the request's redelivery follows the adopted job.
    assert await world.receiver.handle(headers, body, callback_query(req.video_id)) == (
        200, {"status": "duplicate"})
    world.clock.advance(3600)
    await world.starter.handle(req, attempt=2)
    assert len(world.provider.creates) == 1
    assert world.sink.types() == ["video.generation.started", "video.completed",
                                  "video.generation.started"]


async def test_a_failed_job_is_adopted_and_fails_the_video() -> None:
    world = World((job("or-job-1", phase="failed", status="failed", error_code="failed",
                       error_message="upstream refused"), None))
    req = await world.lose_the_create()
    answer = await world.receiver.handle(*delivery(status="failed"),
                                         callback_query(req.video_id))
    assert answer == (200, {"status": "processed"})
    assert world.sink.types() == ["video.generation.started", "video.failed"]
    assert world.sink.events[1].message == "upstream refused"


async def test_an_unknown_job_without_a_video_is_not_ours() -> None:
    world = World(completed())
    req = await world.lose_the_create()
    assert await world.receiver.handle(*delivery()) == (200, {"status": "unknown_job"})
    assert world.sink.events == []
    assert world.provider.retrieves == 0
    assert world.ledger.entries[req.video_id][0].state == "creating"


async def test_a_forged_token_adopts_nothing() -> None:
    world = World(completed())
    req = await world.lose_the_create()
    forged = {"video": str(req.video_id), "token": CallbackTargets(PUBLIC, "guess").token(
        req.video_id)}
    assert await world.receiver.handle(*delivery(), forged) == (200, {"status": "unknown_job"})
    assert world.sink.events == []
    assert world.ledger.entries[req.video_id][0].state == "creating"
    assert world.ledger.jobs == {}


async def test_a_video_whose_claim_is_not_open_adopts_nothing() -> None:
    world = World(completed())
    req = world.request
    # The create answered: the video has its job, and a webhook names another one.
    world.provider.create_results = [job("or-job-0")]
    await world.starter.handle(req)
    answer = await world.receiver.handle(*delivery("or-job-1"), callback_query(req.video_id))
    assert answer == (200, {"status": "unknown_job"})
    assert world.sink.types() == ["video.generation.started"]
    assert world.ledger.entries[req.video_id][0].provider_job_id == "or-job-0"


async def test_a_webhook_that_is_not_terminal_adopts_nothing() -> None:
    world = World(completed())
    req = await world.lose_the_create()
    answer = await world.receiver.handle(*delivery(status="in_progress"),
                                         callback_query(req.video_id))
    assert answer == (200, {"status": "ignored"})
    assert world.ledger.entries[req.video_id][0].state == "creating"


async def test_an_adopted_job_still_running_is_left_to_polling() -> None:
    world = World((job("or-job-1", status="in_progress", progress=40), None))
    req = await world.lose_the_create()
    answer = await world.receiver.handle(*delivery(), callback_query(req.video_id))
    assert answer == (200, {"status": "not_terminal"})
    # Adopted and announced: the Started event has the tracking consumer poll it.
    assert world.sink.types() == ["video.generation.started", "video.generation.progress"]
    assert world.ledger.entries[req.video_id][0].provider_job_id == "or-job-1"


async def test_provider_trouble_after_adoption_is_retried_by_the_sender() -> None:
    world = World(ProviderError("down", status=503), completed())
    req = await world.lose_the_create()
    query = callback_query(req.video_id)
    first = await world.receiver.handle(*delivery(), query)
    assert first[0] == 503
    # Adopted already: the retry finds the job through its binding.
    assert await world.receiver.handle(*delivery(), query) == (200, {"status": "processed"})
    assert world.sink.types() == ["video.generation.started", "video.completed"]
