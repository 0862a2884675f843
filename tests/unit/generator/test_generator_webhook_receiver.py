"""The webhook receiver: verified deliveries finish videos at once, exactly once."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime

import pytest
from generator_fakes import T0, FakeProvider, MemoryLedger, Sink, job
from reelvault_common.providers.openai_videos import ProviderError
from reelvault_generator.ledger import JobBinding, new_claim
from reelvault_generator.polling import PollSchedule
from reelvault_generator.tracking import FollowedJob, JobTracker
from reelvault_generator.webhook_events import WebhookRejected
from reelvault_generator.webhooks import DeliveryVerifier, WebhookReceiver
from standardwebhooks import Webhook

SECRET = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTA="
NOW = T0.timestamp()


def signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    """Signed by the reference package itself, independently of the code under test."""
    sent_at = datetime.fromtimestamp(int(timestamp), tz=UTC)
    return Webhook(secret).sign(webhook_id, sent_at, body.decode())


class MemorySeen:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    async def claim(self, webhook_id: str) -> bool:
        if webhook_id in self.ids:
            return False
        self.ids.add(webhook_id)
        return True

    async def release(self, webhook_id: str) -> None:
        self.ids.discard(webhook_id)


def delivery(job_id: str, event_type: str = "video.completed", webhook_id: str = "wh_1",
             at: float = NOW) -> tuple[dict[str, str], bytes]:
    body = json.dumps({"id": "evt_1", "object": "event", "created_at": int(at),
                       "type": event_type, "data": {"id": job_id}}).encode()
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)),
            "webhook-signature": signature(SECRET, webhook_id, str(int(at)), body)}, body


async def setup(
    provider: FakeProvider, *, binding: str = "bare", creating: bool = False
) -> tuple[WebhookReceiver, MemoryLedger, Sink, uuid.UUID]:
    """A video whose job ``video_1`` is recorded in the ledger. ``binding``: "bare" (the video
    id only, as bindings were first written), "full" (with what finishing needs), "none"."""
    ledger, sink = MemoryLedger(), Sink()
    video_id = uuid.uuid4()
    claim = new_claim(owner="g", now=T0, correlation_id="corr", org="acme", requested_at=T0)
    revision = await ledger.claim(video_id, claim)
    assert revision is not None
    await ledger.replace(video_id, claim.created(provider="openai", provider_job_id="video_1",
                                                 job_created_at=T0), last=revision)
    if binding == "full":
        await ledger.bind_job("openai", "video_1", video_id, binding=JobBinding(
            video_id=video_id, correlation_id="corr", org="acme", requested_at=T0,
            job_created_at=T0))
    elif binding == "bare":
        await ledger.bind_job("openai", "video_1", video_id)
    tracker = JobTracker(provider=provider, events=sink, schedule=PollSchedule(),
                         deadline_s=3600, clock=lambda: T0, rng=random.Random(0))
    receiver = WebhookReceiver(secret=SECRET, seen=MemorySeen(), ledger=ledger,
                               provider=provider, tracker=tracker, clock=lambda: NOW,
                               creating=lambda: creating)
    ledger.reads = 0
    return receiver, ledger, sink, video_id


def completed_job() -> tuple[object, None]:
    return job(phase="completed", status="completed", progress=100), None


async def test_completed_webhook_publishes_completed_once() -> None:
    provider = FakeProvider(retrieve_results=[completed_job(), completed_job()])
    receiver, _, sink, video_id = await setup(provider)

    status, body = await receiver.handle(*delivery("video_1"))
    again = await receiver.handle(*delivery("video_1"))

    assert (status, body) == (200, {"status": "processed"})
    assert again == (200, {"status": "duplicate"})
    [completed] = sink.events
    assert completed.type == "video.completed"
    assert (completed.video_id, completed.org, completed.correlation_id) == (
        video_id, "acme", "corr")
    assert provider.retrieves == 1  # the replay did no work


async def test_bad_signature_is_rejected_and_does_nothing() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, _, sink, _ = await setup(provider)
    headers, body = delivery("video_1")
    headers["webhook-signature"] = signature("whsec_" + "B" * 44, "wh_1", str(int(NOW)), body)

    assert (await receiver.handle(headers, body))[0] == 401
    assert sink.events == []
    assert provider.retrieves == 0


async def test_stale_delivery_is_rejected() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, _, sink, _ = await setup(provider)
    status, _ = await receiver.handle(*delivery("video_1", at=NOW - 3600))
    assert status == 401
    assert sink.events == []


async def test_unknown_job_is_acknowledged_and_ignored() -> None:
    provider = FakeProvider()
    receiver, _, sink, _ = await setup(provider)
    assert await receiver.handle(*delivery("video_someone_elses")) == (
        200, {"status": "unknown_job"})
    assert sink.events == []


async def test_failed_webhook_publishes_the_providers_error() -> None:
    provider = FakeProvider(retrieve_results=[(job(phase="failed", status="failed",
                                                   error_code="moderation_blocked",
                                                   error_message="Blocked."), None)])
    receiver, _, sink, _ = await setup(provider)
    await receiver.handle(*delivery("video_1", "video.failed"))
    [failed] = sink.events
    assert (failed.code, failed.provider_job_id) == ("moderation_blocked", "video_1")


async def test_provider_trouble_answers_503_and_the_retry_is_processed() -> None:
    provider = FakeProvider(retrieve_results=[ProviderError("down", status=503),
                                              completed_job()])
    receiver, _, sink, _ = await setup(provider)
    first = await receiver.handle(*delivery("video_1"))
    second = await receiver.handle(*delivery("video_1"))  # the sender's retry, same id
    assert first[0] == 503
    assert second == (200, {"status": "processed"})
    assert [e.type for e in sink.events] == ["video.completed"]


async def test_a_webhook_for_a_job_this_process_just_finished_does_no_work() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, _, sink, _ = await setup(provider)
    # The poll got there first: the tracker published the end (one retrieve).
    await receiver.handle(*delivery("video_1"))
    assert provider.retrieves == 1
    status, body = await receiver.handle(*delivery("video_1", webhook_id="wh_other"))
    assert (status, body) == (200, {"status": "already_finished"})
    assert provider.retrieves == 1
    assert len(sink.events) == 1


# --- finding the job's video cheaply ------------------------------------------------------
async def test_a_full_job_binding_is_the_only_read() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, ledger, sink, video_id = await setup(provider, binding="full")
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "processed"})
    assert ledger.reads == 1  # the binding; the ledger entry is not needed
    [completed] = sink.events
    assert (completed.video_id, completed.correlation_id, completed.org) == (
        video_id, "corr", "acme")


async def test_a_bare_binding_from_before_falls_back_to_the_ledger_entry() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, ledger, sink, video_id = await setup(provider, binding="bare")
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "processed"})
    assert ledger.reads == 2
    assert [e.video_id for e in sink.events] == [video_id]


async def test_a_job_this_process_recorded_needs_no_read() -> None:
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, ledger, sink, video_id = await setup(provider, binding="none")
    receiver._tracker.follow(FollowedJob(video_id=video_id, correlation_id="corr",
                                         provider_job_id="video_1", org="acme",
                                         requested_at=T0, job_created_at=T0))
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "processed"})
    assert ledger.reads == 0
    assert [e.video_id for e in sink.events] == [video_id]


async def test_a_webhook_overtaking_our_own_create_is_retried_by_the_sender() -> None:
    # The provider's webhook arrived while this process was still recording the job it just
    # created: 503 (not "unknown"), and the sender's retry, once recorded, is processed.
    provider = FakeProvider(retrieve_results=[completed_job()])
    receiver, ledger, sink, video_id = await setup(provider, binding="none", creating=True)
    first = await receiver.handle(*delivery("video_1"))
    assert first[0] == 503
    assert provider.retrieves == 0 and sink.events == []
    await ledger.bind_job("openai", "video_1", video_id, binding=JobBinding(
        video_id=video_id, correlation_id="corr", org="acme", requested_at=T0,
        job_created_at=T0))
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "processed"})
    assert [e.type for e in sink.events] == ["video.completed"]


async def test_an_unknown_job_while_nothing_is_being_created_is_not_ours() -> None:
    provider = FakeProvider()
    receiver, _, sink, _ = await setup(provider, binding="none", creating=False)
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "unknown_job"})
    assert await receiver.handle(*delivery("video_1")) == (200, {"status": "duplicate"})
    assert sink.events == []


# --- verification (Standard Webhooks) ------------------------------------------------------
def verifier_headers(body: bytes, *, secret: str = SECRET, at: float = NOW,
                     webhook_id: str = "wh_1") -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at)),
            "webhook-signature": signature(secret, webhook_id, str(int(at)), body)}


def rejected_status(verifier: DeliveryVerifier, headers: dict[str, str], body: bytes,
                    now: float = NOW) -> int:
    with pytest.raises(WebhookRejected) as rejected:
        verifier.verify(headers, body, now=now)
    return rejected.value.status


def test_any_of_several_signatures_may_match() -> None:
    body = b'{"id": "evt_1"}'
    headers = verifier_headers(body)
    rotated = signature("whsec_" + "B" * 44, "wh_1", str(int(NOW)), body)
    headers["webhook-signature"] = f"{rotated} {headers['webhook-signature']}"
    assert DeliveryVerifier(SECRET).verify(headers, body, now=NOW) == "wh_1"


def test_the_configured_tolerance_is_the_window() -> None:
    body = b"{}"
    narrow = DeliveryVerifier(SECRET, tolerance_s=10)
    assert narrow.verify(verifier_headers(body, at=NOW - 10), body, now=NOW) == "wh_1"
    assert rejected_status(narrow, verifier_headers(body, at=NOW - 11), body) == 401
    assert rejected_status(narrow, verifier_headers(body, at=NOW + 11), body) == 401
    wide = DeliveryVerifier(SECRET, tolerance_s=3600)
    assert wide.verify(verifier_headers(body, at=NOW - 3600), body, now=NOW) == "wh_1"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"webhook-id": ""}, 400),
        ({"webhook-timestamp": ""}, 400),
        ({"webhook-signature": ""}, 400),
        ({"webhook-timestamp": "soon"}, 400),
        ({"webhook-id": "wh_2"}, 401),  # the id is signed too
        ({"webhook-signature": "v1,not-base64 garbage"}, 401),
    ],
)
def test_malformed_or_unverifiable_headers(change: dict[str, str], status: int) -> None:
    body = b"{}"
    headers = {**verifier_headers(body), **change}
    assert rejected_status(DeliveryVerifier(SECRET), headers, body) == status


def test_tampered_or_undecodable_bodies_are_rejected() -> None:
    body = b'{"data": {"id": "video_1"}}'
    headers = verifier_headers(body)
    verifier = DeliveryVerifier(SECRET)
    assert rejected_status(verifier, headers, body.replace(b"video_1", b"video_2")) == 401
    assert rejected_status(verifier, headers, b"\xff" + body) == 400


def test_a_plain_secret_is_its_utf8_bytes() -> None:
    body = b"{}"
    sent_at = datetime.fromtimestamp(int(NOW), tz=UTC)
    headers = {"webhook-id": "wh_1", "webhook-timestamp": str(int(NOW)),
               "webhook-signature": Webhook(b"plain-secret").sign("wh_1", sent_at, "{}")}
    assert DeliveryVerifier("plain-secret").verify(headers, body, now=NOW) == "wh_1"
