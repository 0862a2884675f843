"""The catalog's handlers without a broker: what each event's handling says to the runner
(return: ack; ``RetryLater``; an error: retried, then dead-lettered), what a dead letter does to
the video, and how each request is answered (the store is a fake; the real one is exercised by
the integration tests)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError
from reelvault_catalog.consumers import (
    FailVideoOnDeadLetter,
    failure_stage,
    projection_consumer,
    projection_policy,
)
from reelvault_catalog.cursor import InvalidCursor
from reelvault_catalog.handlers import (
    TRANSIENT_DB_ERRORS,
    CatalogHandlers,
    KeyedLocks,
    wait_delay,
)
from reelvault_catalog.projection import Insert, Unchanged, Wait
from reelvault_catalog.repository import Applied
from reelvault_catalog.settings import CatalogSettings
from reelvault_common.contracts.catalog import CatalogStats, VideoPage
from reelvault_common.contracts.events import VideoEvent, VideoFailed
from reelvault_common.messaging.consumer import Delivery
from reelvault_common.messaging.deadletter import DeadLetter
from reelvault_common.messaging.outcomes import RetryLater
from reelvault_common.messaging.topology import Topology
from reelvault_common.runtime.settings import ConsumerSettings
from sqlalchemy.exc import OperationalError

from tests.support.catalog_events import VideoStory


def delivery(attempt: int = 1, subject: str = "ns.video.requested") -> Delivery:
    return Delivery(subject=subject, attempt=attempt, stream_sequence=1)


async def outcome_of(handlers: CatalogHandlers, event: VideoEvent, attempt: int = 1) -> Any:
    """What the runner would see: None (ack), a ``RetryLater`` or the error raised."""
    try:
        await handlers.handle_event(event, delivery(attempt))
    except Exception as exc:
        return exc
    return None


@dataclass
class FakeStore:
    outcome: Any = field(default_factory=lambda: Unchanged("fake"))
    error: BaseException | None = None
    applied: list[VideoEvent] = field(default_factory=list)
    alive: bool = True
    slow_ping: bool = False
    # An outage: the database answers neither applies nor pings for this many pings.
    outage_pings: int = 0
    pings: int = 0
    # apply_many refuses a batch holding an event whose JSON contains this (apply does too).
    poison: str | None = None
    batches: list[int] = field(default_factory=list)

    async def apply(self, event: VideoEvent) -> Applied:
        if self.outage_pings > 0:
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        if self.error is not None:
            raise self.error
        if self.poison is not None and self.poison in event.model_dump_json():
            raise RuntimeError("the database refuses this event")
        self.applied.append(event)
        return Applied(self.outcome, written=isinstance(self.outcome, Insert))

    async def apply_many(self, events: list[VideoEvent]) -> list[Applied]:
        self.batches.append(len(events))
        if self.poison is not None and any(self.poison in e.model_dump_json() for e in events):
            raise RuntimeError("the database refuses the batch")
        return [await self.apply(event) for event in events]

    reads: list[tuple[str, Any]] = field(default_factory=list)

    async def get(self, org: str, video_id: uuid.UUID) -> None:
        self.reads.append(("get", (org, video_id)))
        return None

    async def list(self, org: str, *, status: Any = None, limit: int = 20,
                   cursor: str | None = None) -> VideoPage:
        self.reads.append(("list", (org, status, limit, cursor)))
        if cursor == "bad":
            raise InvalidCursor("malformed cursor")
        return VideoPage(items=[], next_cursor=None)

    async def stats(self) -> CatalogStats:
        return CatalogStats(by_status={}, total=0, stored_bytes=0)

    async def ping(self) -> bool:
        self.pings += 1
        if self.outage_pings > 0:
            self.outage_pings -= 1
            raise OSError("connection refused")
        if self.slow_ping:
            await asyncio.sleep(10)
        if not self.alive:
            raise OSError("connection refused")
        return True


def handlers_for(store: FakeStore) -> CatalogHandlers:
    return CatalogHandlers(store, ping_timeout_s=0.2, outage_poll_s=0.01)


def consumer_for(handlers: CatalogHandlers, publisher: Any = None) -> Any:
    return projection_consumer(Topology(namespace="ns"), CatalogSettings().projection, handlers,
                               publisher or FakePublisher())


async def test_an_applied_event_is_acked() -> None:
    store = FakeStore()
    event = VideoStory().requested()
    assert await outcome_of(handlers_for(store), event) is None
    assert store.applied == [event]


@pytest.mark.parametrize("payload", [
    b"{not json", b"", b"\xff\xfe", b"[]", b'{"type": "video.exploded"}',
    b'{"type": "video.requested", "prompt": "p"}',
])
def test_an_unreadable_payload_does_not_decode_so_the_runner_terminates_it(
    payload: bytes,
) -> None:
    consumer = consumer_for(handlers_for(FakeStore()))
    with pytest.raises(ValidationError):
        consumer.decode(payload)


def test_every_lifecycle_event_decodes_to_itself() -> None:
    consumer = consumer_for(handlers_for(FakeStore()))
    story = VideoStory()
    for event in (story.requested(), story.started(), story.progressed(5), story.completed(),
                  story.archive_requested(), story.stored(), story.failed()):
        assert consumer.decode(event.model_dump_json().encode()) == event


@pytest.mark.parametrize(("delivered", "delay"), [(1, 1.0), (3, 3.0), (100, 15.0)])
async def test_an_event_before_its_row_is_handed_back_with_a_delay(
    delivered: int, delay: float
) -> None:
    store = FakeStore(outcome=Wait("video.stored before video.requested"))
    retry = await outcome_of(handlers_for(store), VideoStory().stored(), delivered)
    assert isinstance(retry, RetryLater)
    assert retry.delay == delay
    assert wait_delay(delivered) == delay


async def test_a_transient_error_while_the_database_answers_is_retried_with_backoff() -> None:
    # The database answers its ping: the failure is this event's, and it costs a delivery
    # (the runner retries it with the consumer's pacing, logged without a traceback).
    store = FakeStore(error=OperationalError("SELECT", {}, Exception("statement timeout")))
    error = await outcome_of(handlers_for(store), VideoStory().requested())
    assert isinstance(error, OperationalError)
    assert isinstance(error, TRANSIENT_DB_ERRORS)
    consumer = consumer_for(handlers_for(store))
    assert consumer.transient == TRANSIENT_DB_ERRORS
    assert 0 < consumer.retry.delay(1) <= 1.0


async def test_a_database_outage_holds_the_event_instead_of_spending_deliveries() -> None:
    # Down for three tries: the event is held (the handler neither fails nor asks for a
    # retry; the runner's heartbeat keeps its message alive), then applied.
    store = FakeStore(outage_pings=3)
    event = VideoStory().requested()
    assert await outcome_of(handlers_for(store), event) is None
    assert store.applied == [event]
    assert store.pings >= 2


async def test_an_event_the_database_refuses_is_retried_later_not_at_once() -> None:
    # e.g. a DataError (a NUL byte in a text): not transient, retried with a growing delay.
    store = FakeStore(error=RuntimeError("refused"))
    error = await outcome_of(handlers_for(store), VideoStory().requested(), 3)
    assert isinstance(error, RuntimeError)
    assert not isinstance(error, TRANSIENT_DB_ERRORS)
    delay = consumer_for(handlers_for(store)).retry.delay(3)
    assert 2.0 <= delay <= 4.0  # jitter of the third attempt: base * 2**2, halved at most


# --- batches ------------------------------------------------------------------------------------

def batching(store: FakeStore) -> CatalogHandlers:
    return CatalogHandlers(store, ping_timeout_s=0.2, batch_size=16, outage_poll_s=0.01)


async def test_events_handled_at_once_share_a_transaction_and_settle_each() -> None:
    store = FakeStore()
    story = VideoStory()
    events = [story.requested(), story.started(), story.completed()]
    handlers = batching(store)
    outcomes = await asyncio.gather(*(outcome_of(handlers, e) for e in events))
    assert store.batches == [3]  # one transaction for the three events
    assert store.applied == events  # in the order they were handed in
    assert outcomes == [None] * 3


async def test_a_refused_batch_is_retried_one_by_one_so_only_the_poison_pays() -> None:
    store = FakeStore(poison="moderation text")
    story = VideoStory()
    good, bad, late = story.requested(), story.failed(message="moderation text"), story.completed()
    handlers = batching(store)
    outcomes = await asyncio.gather(*(outcome_of(handlers, e) for e in (good, bad, late)))
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], RuntimeError)  # retried later, on its own
    assert good in store.applied and late in store.applied and bad not in store.applied


async def test_a_batch_waits_out_a_database_outage_without_spending_deliveries() -> None:
    store = FakeStore(outage_pings=2)
    story = VideoStory()
    handlers = batching(store)
    events = (story.requested(), story.started())
    outcomes = await asyncio.gather(*(outcome_of(handlers, e) for e in events))
    assert outcomes == [None, None]
    assert store.applied == list(events)
    assert store.pings >= 2


async def test_an_event_of_a_batch_without_its_row_waits_alone() -> None:
    store = FakeStore(outcome=Wait("video.stored before video.requested"))
    retry = await outcome_of(batching(store), VideoStory().stored(), 2)
    assert isinstance(retry, RetryLater)
    assert retry.delay == 2.0


async def test_a_new_row_is_announced_once_committed() -> None:
    announced: list[uuid.UUID] = []

    async def on_recorded(video_id: uuid.UUID) -> None:
        announced.append(video_id)

    story = VideoStory()
    inserting = CatalogHandlers(FakeStore(outcome=Insert({})), on_recorded=on_recorded)
    assert await outcome_of(inserting, story.requested()) is None
    unchanged = CatalogHandlers(FakeStore(), on_recorded=on_recorded)
    assert await outcome_of(unchanged, story.started()) is None
    assert announced == [story.video_id]  # only the insert, not the no-op


async def test_a_stored_video_has_its_organizations_storage_checked_after_the_commit() -> None:
    checked: list[str] = []

    async def on_stored(org: str) -> None:
        checked.append(org)
        if org == "globex":
            raise RuntimeError("the check failed")

    acme, globex = VideoStory(org="acme"), VideoStory(org="globex")
    writing = CatalogHandlers(FakeStore(outcome=Insert({})), on_stored=on_stored)
    for event in (acme.requested(), acme.started(), acme.stored(), globex.stored()):
        assert await outcome_of(writing, event) is None  # a failed check fails no event
    unchanged = CatalogHandlers(FakeStore(), on_stored=on_stored)
    assert await outcome_of(unchanged, acme.stored()) is None  # a redelivery: no new check
    assert checked == ["acme", "globex"]


# --- dead letters -------------------------------------------------------------------------------

@dataclass
class FakePublisher:
    published: list[Any] = field(default_factory=list)

    async def publish(self, event: Any) -> None:
        self.published.append(event)


def letter_for(event: VideoEvent, deliveries: int = 20) -> DeadLetter:
    return DeadLetter.of(consumer="ns-catalog-projection", subject=f"ns.{event.type}",
                         stream_sequence=7, deliveries=deliveries,
                         payload=event.model_dump_json().encode(), headers={},
                         error="DatabaseRefused: CheckViolationError: no", video_id=event.video_id)


async def test_a_dead_lettered_event_fails_its_video_as_dead_lettered() -> None:
    publisher = FakePublisher()
    consumer = consumer_for(handlers_for(FakeStore()), publisher)
    story = VideoStory()
    event = story.stored()
    await consumer.on_dead_letter(event, letter_for(event))
    [failed] = publisher.published
    assert isinstance(failed, VideoFailed)
    assert (failed.video_id, failed.correlation_id) == (story.video_id, story.correlation_id)
    assert (failed.stage, failed.code, failed.retryable) == ("archive", "dead_lettered", True)
    assert "gave up after 20 deliveries to ns-catalog-projection" in failed.message
    assert "CheckViolationError" in failed.message


async def test_a_dead_lettered_dead_letter_notice_is_not_announced_again() -> None:
    publisher = FakePublisher()
    hook = FailVideoOnDeadLetter(publisher)  # type: ignore[arg-type]
    story = VideoStory()
    notice = story.failed(stage="request", code="dead_lettered")
    await hook(notice, letter_for(notice))
    assert publisher.published == []


# --- request/reply ------------------------------------------------------------------------------

async def test_get_of_an_unknown_video_is_not_found() -> None:
    store = FakeStore()
    video_id = uuid.uuid4()
    reply = await handlers_for(store).answer_get(
        f'{{"org": "acme", "video_id": "{video_id}"}}'.encode())
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "not_found"
    assert store.reads == [("get", ("acme", video_id))]  # asked as the organization


async def test_list_asks_for_the_organizations_videos() -> None:
    store = FakeStore()
    reply = await handlers_for(store).answer_list(
        b'{"org": "acme", "status": "failed", "limit": 5}')
    assert reply.ok
    assert store.reads == [("list", ("acme", "failed", 5, None))]


async def test_list_with_a_bad_cursor_is_invalid_cursor() -> None:
    reply = await handlers_for(FakeStore()).answer_list(b'{"org": "acme", "cursor": "bad"}')
    assert reply.error is not None
    assert reply.error.code == "invalid_cursor"


@pytest.mark.parametrize(("answer", "payload"), [
    ("answer_get", f'{{"video_id": "{uuid.uuid4()}"}}'.encode()),  # no organization
    ("answer_get", f'{{"org": "No Such Slug", "video_id": "{uuid.uuid4()}"}}'.encode()),
    ("answer_list", b""),
    ("answer_list", b'{"org": "a"}'),
])
async def test_reads_without_a_valid_organization_are_invalid(answer: str, payload: bytes
                                                              ) -> None:
    store = FakeStore()
    reply = await getattr(handlers_for(store), answer)(payload)
    assert reply.error is not None
    assert reply.error.code == "invalid_request"
    assert store.reads == []


async def test_stats_accept_an_empty_body() -> None:
    stats = await handlers_for(FakeStore()).answer_stats(b"")
    assert stats.ok
    assert stats.stats is not None


async def test_ping_reports_a_dead_database_as_not_ok() -> None:
    assert (await handlers_for(FakeStore()).answer_ping(b"")).ok
    down = await handlers_for(FakeStore(alive=False)).answer_ping(b"")
    assert not down.ok
    assert down.error is not None
    assert down.error.code == "unavailable"
    hung = await handlers_for(FakeStore(slow_ping=True)).answer_ping(b"")
    assert not hung.ok


# --- pieces ---------------------------------------------------------------------------------------

async def test_keyed_locks_serialise_one_key_and_forget_it_afterwards() -> None:
    locks = KeyedLocks()
    order: list[str] = []

    async def work(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    await asyncio.gather(work("a", "first", 0.05), work("a", "second", 0), work("b", "other", 0))
    assert order.index("first-") < order.index("second+")  # same key: one after the other
    assert order.index("other+") < order.index("first-")  # another key: not held up
    assert len(locks) == 0


def test_the_projection_consumer_takes_every_lifecycle_event_with_bounded_deliveries() -> None:
    defaults = CatalogSettings().projection
    policy = projection_policy(Topology(namespace="acme"), defaults)
    assert policy.durable == "acme-catalog-projection"
    assert policy.filter_subjects == ("acme.events.*.video.>",)  # every org, videos only
    assert policy.max_deliver == 20
    config = policy.to_config()
    assert config.filter_subject == "acme.events.*.video.>"
    assert config.backoff is None  # naks carry their own delays
    assert (config.ack_wait, config.max_deliver, config.max_ack_pending) == (30.0, 20, 1000)
    tuned = projection_policy(Topology(namespace="acme"), ConsumerSettings(
        ack_wait_s=5, max_deliver=3, max_ack_pending=7)).to_config()
    assert (tuned.ack_wait, tuned.max_deliver, tuned.max_ack_pending) == (5, 3, 7)
    consumer = projection_consumer(Topology(namespace="acme"), defaults,
                                   handlers_for(FakeStore()), FakePublisher())  # type: ignore[arg-type]
    assert consumer.policy == policy  # the policy wait_for_nats reconciles is the one run
    assert consumer.workers == 64
    assert (consumer.retry.base_s, consumer.retry.max_s) == (1.0, 30.0)


@pytest.mark.parametrize(("event", "stage"), [
    (VideoStory().requested(), "request"),
    (VideoStory().started(), "generation"),
    (VideoStory().progressed(10), "generation"),
    (VideoStory().completed(), "archive"),
    (VideoStory().archive_requested(), "archive"),
    (VideoStory().stored(), "archive"),
    (VideoStory().failed(stage="generation"), "generation"),
    (VideoStory().failed(stage="request"), "request"),
    (VideoStory().failed(stage="archive"), "archive"),
])
def test_a_dead_lettered_event_fails_the_video_at_its_own_stage(
    event: VideoEvent, stage: str
) -> None:
    assert failure_stage(event) == stage
