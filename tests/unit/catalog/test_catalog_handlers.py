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
from reelvault_catalog.handlers import CatalogHandlers, KeyedLocks, projection_policy, wait_delay
from reelvault_catalog.projection import Insert, Unchanged, Wait
from reelvault_catalog.repository import Applied
from reelvault_common.contracts.catalog import CatalogStats, VideoPage
from reelvault_common.contracts.events import VideoEvent
from reelvault_common.topology import Topology
from sqlalchemy.exc import OperationalError

from tests.support.catalog_events import VideoStory


@dataclass
class FakeMessage:
    body: bytes
    delivered: int = 1
    settled: list[tuple[str, float | None]] = field(default_factory=list)

    @property
    def raw_message(self) -> Any:
        return SimpleNamespace(subject="ns.video.requested",
                               metadata=SimpleNamespace(num_delivered=self.delivered))

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

    async def apply(self, event: VideoEvent) -> Applied:
        if self.error is not None:
            raise self.error
        self.applied.append(event)
        return Applied(self.outcome, written=isinstance(self.outcome, Insert))

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
        if self.slow_ping:
            await asyncio.sleep(10)
        if not self.alive:
            raise OSError("connection refused")
        return True


def handlers_for(store: FakeStore) -> CatalogHandlers:
    return CatalogHandlers(store, ping_timeout_s=0.2)


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


async def test_a_database_outage_is_retried_with_backoff() -> None:
    store = FakeStore(error=OperationalError("SELECT", {}, Exception("connection lost")))
    msg = FakeMessage(VideoStory().requested().model_dump_json().encode())
    await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    [(verb, delay)] = msg.settled
    assert verb == "nack"
    assert delay is not None
    assert 0 < delay <= 1.0


async def test_an_unexpected_error_propagates_unsettled() -> None:
    store = FakeStore(error=RuntimeError("bug"))
    msg = FakeMessage(VideoStory().requested().model_dump_json().encode())
    with pytest.raises(RuntimeError, match="bug"):
        await handlers_for(store).handle_event(msg)  # type: ignore[arg-type]
    assert msg.settled == []


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


def test_the_projection_consumer_takes_every_lifecycle_event_forever() -> None:
    policy = projection_policy(Topology(namespace="acme"))
    assert policy.durable == "acme-catalog-projection"
    assert policy.filter_subjects == ("acme.video.>",)
    assert policy.max_deliver == -1
    config = policy.to_config()
    assert config.filter_subject == "acme.video.>"
    assert config.backoff is None
