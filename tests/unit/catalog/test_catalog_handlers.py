"""The catalog's handlers without a broker: how each message is settled and each request answered
(the store is a fake; the real one is exercised by the integration tests)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from reelvault_catalog.cursor import InvalidCursor
from reelvault_catalog.handlers import (
    CatalogHandlers,
    KeyedLocks,
    ProjectionRetry,
    failure_stage,
    projection_policy,
    wait_delay,
)
from reelvault_catalog.projection import Insert, Unchanged, Wait
from reelvault_catalog.repository import Applied
from reelvault_common.contracts.catalog import CatalogStats, VideoPage
from reelvault_common.contracts.events import VideoEvent
from reelvault_common.messaging.topology import Topology
from sqlalchemy.exc import OperationalError

from tests.support.catalog_events import VideoStory


@dataclass
class FakeMessage:
    body: bytes
    delivered: int = 1
    settled: list[tuple[str, float | None]] = field(default_factory=list)
    subject: str = "ns.video.requested"
    progress_reports: int = 0

    @property
    def raw_message(self) -> Any:
        return SimpleNamespace(subject=self.subject, data=self.body,
                               metadata=SimpleNamespace(num_delivered=self.delivered))

    async def in_progress(self) -> None:
        self.progress_reports += 1

    async def ack(self) -> None:
        self.settled.append(("ack", None))

    async def nack(self, delay: float | None = None) -> None:
        self.settled.append(("nack", delay))

    async def reject(self) -> None:
        self.settled.append(("reject", None))


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

    async def get(self, video_id: uuid.UUID) -> None:
        return None

    async def list(self, *, status: Any = None, limit: int = 20, cursor: str | None = None
                   ) -> VideoPage:
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
    return CatalogHandlers(store, ping_timeout_s=0.2,
                           retry=ProjectionRetry(base_s=1.0, max_s=30.0, outage_poll_s=0.01))


async def test_an_applied_event_is_acked() -> None:
    store = FakeStore()
    event = VideoStory().requested()
    msg = FakeMessage(event.model_dump_json().encode())
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == [("ack", None)]
    assert store.applied == [event]


@pytest.mark.parametrize("payload", [
    b"{not json", b"", b"\xff\xfe", b"[]", b'{"type": "video.exploded"}',
    b'{"type": "video.requested", "prompt": "p"}',
])
async def test_an_unreadable_payload_is_rejected_once_and_logged(
    payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = FakeStore()
    msg = FakeMessage(payload)
    with caplog.at_level(logging.ERROR, logger="reelvault_catalog"):
        await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == [("reject", None)]
    assert store.applied == []
    [record] = [r for r in caplog.records if "rejecting unreadable event" in r.getMessage()]
    assert "ns.video.requested" in record.getMessage()


async def test_a_rejection_log_does_not_echo_the_payload(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-live-should-not-be-logged"
    msg = FakeMessage(f'{{"type": "video.requested", "prompt": "{secret}"}}'.encode())
    with caplog.at_level(logging.ERROR, logger="reelvault_catalog"):
        await handlers_for(FakeStore()).handle_event(msg)  # type: ignore[arg-type]
    assert secret not in caplog.text


@pytest.mark.parametrize(("delivered", "delay"), [(1, 1.0), (3, 3.0), (100, 15.0)])
async def test_an_event_before_its_row_is_handed_back_with_a_delay(
    delivered: int, delay: float
) -> None:
    store = FakeStore(outcome=Wait("video.stored before video.requested"))
    msg = FakeMessage(VideoStory().stored().model_dump_json().encode(), delivered=delivered)
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == [("nack", delay)]
    assert wait_delay(delivered) == delay


async def test_a_transient_error_while_the_database_answers_is_retried_with_backoff() -> None:
    # The database answers its ping: the failure is this event's, and it costs a delivery.
    store = FakeStore(error=OperationalError("SELECT", {}, Exception("statement timeout")))
    msg = FakeMessage(VideoStory().requested().model_dump_json().encode())
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    [(verb, delay)] = msg.settled
    assert verb == "nack"
    assert delay is not None
    assert 0 < delay <= 1.0


async def test_a_database_outage_holds_the_event_instead_of_spending_deliveries() -> None:
    # Down for three tries: the event is held (in progress), never handed back, then applied.
    store = FakeStore(outage_pings=3)
    event = VideoStory().requested()
    msg = FakeMessage(event.model_dump_json().encode())
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == [("ack", None)]
    assert store.applied == [event]
    assert msg.progress_reports >= 2  # ack_wait kept from running out while held
    assert store.pings >= 2


async def test_an_event_the_database_refuses_is_retried_later_not_at_once() -> None:
    # e.g. a DataError (a NUL byte in a text): not transient, retried with a growing delay.
    store = FakeStore(error=RuntimeError("refused"))
    msg = FakeMessage(VideoStory().requested().model_dump_json().encode(), delivered=3)
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    [(verb, delay)] = msg.settled
    assert verb == "nack"
    assert delay is not None
    assert 2.0 <= delay <= 4.0  # full jitter of the third attempt: base * 2**2, halved at most


# --- batches ------------------------------------------------------------------------------------

def batching(store: FakeStore) -> CatalogHandlers:
    return CatalogHandlers(store, ping_timeout_s=0.2, batch_size=16,
                           retry=ProjectionRetry(base_s=1.0, max_s=30.0, outage_poll_s=0.01))


async def test_events_handled_at_once_share_a_transaction_and_settle_each() -> None:
    store = FakeStore()
    story = VideoStory()
    events = [story.requested(), story.started(), story.completed()]
    msgs = [FakeMessage(e.model_dump_json().encode()) for e in events]
    garbage = FakeMessage(b"{garbage")
    handlers = batching(store)
    await asyncio.gather(*(handlers.handle_event(m) for m in [*msgs, garbage]))  # type: ignore[arg-type]
    assert store.batches == [3]  # one transaction for the three readable events
    assert store.applied == events  # in the order they were handed in
    assert [m.settled for m in msgs] == [[("ack", None)]] * 3
    assert garbage.settled == [("reject", None)]


async def test_a_refused_batch_is_retried_one_by_one_so_only_the_poison_pays() -> None:
    store = FakeStore(poison="moderation text")
    story = VideoStory()
    good, bad, late = story.requested(), story.failed(message="moderation text"), story.completed()
    msgs = [FakeMessage(e.model_dump_json().encode()) for e in (good, bad, late)]
    await asyncio.gather(*(batching(store).handle_event(m) for m in msgs))  # type: ignore[arg-type]
    assert msgs[0].settled == [("ack", None)] and msgs[2].settled == [("ack", None)]
    [(verb, delay)] = msgs[1].settled
    assert verb == "nack" and delay is not None and delay > 0  # retried later, on its own
    assert good in store.applied and late in store.applied and bad not in store.applied


async def test_a_batch_waits_out_a_database_outage_without_spending_deliveries() -> None:
    store = FakeStore(outage_pings=2)
    story = VideoStory()
    msgs = [FakeMessage(e.model_dump_json().encode()) for e in (story.requested(),
                                                                story.started())]
    handlers = batching(store)
    await asyncio.gather(*(handlers.handle_event(m) for m in msgs))  # type: ignore[arg-type]
    assert [m.settled for m in msgs] == [[("ack", None)]] * 2
    assert all(m.progress_reports >= 1 for m in msgs)


async def test_an_event_of_a_batch_without_its_row_waits_alone() -> None:
    store = FakeStore(outcome=Wait("video.stored before video.requested"))
    msg = FakeMessage(VideoStory().stored().model_dump_json().encode(), delivered=2)
    await batching(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == [("nack", 2.0)]


# --- request/reply ------------------------------------------------------------------------------

async def test_get_of_an_unknown_video_is_not_found() -> None:
    reply = await handlers_for(FakeStore()).answer_get(
        f'{{"video_id": "{uuid.uuid4()}"}}'.encode())
    assert not reply.ok
    assert reply.error is not None
    assert reply.error.code == "not_found"


async def test_list_with_a_bad_cursor_is_invalid_cursor() -> None:
    reply = await handlers_for(FakeStore()).answer_list(b'{"cursor": "bad"}')
    assert reply.error is not None
    assert reply.error.code == "invalid_cursor"


async def test_list_and_stats_accept_an_empty_body() -> None:
    handlers = handlers_for(FakeStore())
    listed = await handlers.answer_list(b"")
    assert listed.ok
    assert listed.page is not None
    stats = await handlers.answer_stats(b"")
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
    policy = projection_policy(Topology(namespace="acme"))
    assert policy.durable == "acme-catalog-projection"
    assert policy.filter_subjects == ("acme.video.>",)
    assert policy.max_deliver == 20
    config = policy.to_config()
    assert config.filter_subject == "acme.video.>"
    assert config.backoff is None  # naks carry their own delays
    assert (config.ack_wait, config.max_deliver, config.max_ack_pending) == (30.0, 20, 1000)
    tuned = projection_policy(Topology(namespace="acme"), ack_wait_s=5, max_deliver=3,
                              max_ack_pending=7).to_config()
    assert (tuned.ack_wait, tuned.max_deliver, tuned.max_ack_pending) == (5, 3, 7)


@pytest.mark.parametrize(("subject", "body", "stage"), [
    ("acme.video.requested", b"{}", "request"),
    ("acme.video.generation.started", b"{}", "generation"),
    ("acme.video.generation.progress", b"{}", "generation"),
    ("acme.video.completed", b"{}", "archive"),
    ("acme.video.stored", b"{}", "archive"),
    ("acme.video.failed", b'{"stage": "generation"}', "generation"),
    ("acme.video.failed", b"not json", "archive"),
])
def test_a_dead_lettered_event_fails_the_video_at_its_own_stage(
    subject: str, body: bytes, stage: str
) -> None:
    msg = FakeMessage(body, subject=subject)
    assert failure_stage(msg) == stage  # type: ignore[arg-type]
