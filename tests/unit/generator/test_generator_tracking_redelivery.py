"""A job's end is only "done" once its event is in the stream: when publishing the outcome fails
(e.g. ``NoStreamResponseError`` while a NATS cluster elects a stream leader), the redelivered
poll message must publish it again, not return early and get acked with nothing published.
(Found by the chaos run: a moderation-blocked video stayed ``processing`` forever.)"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

import nats.js.errors
import pytest
from generator_fakes import T0, Clock, FakeProvider, Sink, job
from pydantic import BaseModel
from reelvault_common.contracts.events import VideoGenerationStarted
from reelvault_generator.polling import PollSchedule
from reelvault_generator.tracking import JobTracker


class FlakySink(Sink):
    """Refuses the first ``failures`` publishes, like a stream without a leader."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def publish(self, event: BaseModel) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise nats.js.errors.NoStreamResponseError()
        return await super().publish(event)


def started() -> VideoGenerationStarted:
    return VideoGenerationStarted.new(
        video_id=uuid.uuid4(), correlation_id="corr", provider_job_id="video_1",
        provider="openai", model="sora-2", seconds="4", size="1280x720", org="acme",
        requested_at=T0 - timedelta(seconds=5), job_created_at=T0)


@pytest.mark.parametrize(
    ("provider_job", "expected_type"),
    [
        (job(phase="failed", status="failed", error_code="moderation_blocked",
             error_message="Blocked."), "video.failed"),
        (job(phase="completed", status="completed", progress=100), "video.completed"),
    ],
)
async def test_an_outcome_whose_publish_failed_is_published_on_the_next_delivery(
    provider_job: Any, expected_type: str
) -> None:
    sink = FlakySink(failures=1)
    provider = FakeProvider(retrieve_results=[(provider_job, None), (provider_job, None)])
    tracker = JobTracker(provider=provider, events=sink, schedule=PollSchedule(),
                         deadline_s=3600, clock=Clock(), rng=random.Random(1))
    event = started()

    with pytest.raises(nats.js.errors.NoStreamResponseError):
        await tracker.poll(event, 1)  # the handler naks: JetStream delivers it again
    await tracker.poll(event, 2)

    assert sink.types() == [expected_type]
